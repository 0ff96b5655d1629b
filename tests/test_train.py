"""The trainer end to end on the tiny synthetic dataset (CPU): CLI run + export, learning, resume,
gradient accumulation, and the pieces (schedule, EMA, data order, config refusals)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vid2vid import checkpoint as ckpt
from vid2vid.config import load_config
from vid2vid.data.sampler import EpochSampler
from vid2vid.errors import ConfigError, UserError
from vid2vid.train import train
from vid2vid.train.checks import check_trainable
from vid2vid.train.logs import JsonlLog
from vid2vid.train.schedule import EMA, learning_rates, lr_factor

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"


def tiny(out_dir: Path, data_root: Path, *overrides: str):
    return load_config(TINY, [f"train.out_dir={out_dir}", f"data.root={data_root}", *overrides])


def read_log(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


def weights(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    """G (G.safetensors) and D (D.safetensors) of a checkpoint folder."""
    g, d = load_file(str(ckpt_dir / "G.safetensors")), load_file(str(ckpt_dir / "D.safetensors"))
    return {**{f"G.{k}": v for k, v in g.items()}, **{f"D.{k}": v for k, v in d.items()}}


def outputs(generator: torch.nn.Module, discriminator: torch.nn.Module, cfg) -> dict[str, torch.Tensor]:
    """What the trained networks compute on fixed inputs. Weights themselves are not compared across
    different batch layouts: conv biases in front of an instance norm have a zero gradient up to
    rounding noise, which Adam turns into +-lr steps of either sign, yet they cannot change an output."""
    from vid2vid.data.encoding import semantic_input

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, cfg.data.label_nc, (2, 64, 64), generator=g)
    inst = torch.randint(0, 3, (2, 64, 64), generator=g)
    sem = semantic_input(labels, inst, cfg.data.label_nc, cfg.data.use_instance)
    with torch.no_grad():
        fake = generator.eval()(sem)
        preds = discriminator.eval()(torch.cat([sem, fake], 1))
    return {"G": fake, **{f"D{i}.{j}": f for i, scale in enumerate(preds) for j, f in enumerate(scale)}}


def assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= atol, f"largest difference {worst}"


def test_cli_train_leaves_loadable_export(tmp_path, tiny_data):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "vid2vid", "train", "--config", str(TINY), "--set",
                           "train.max_steps=2", f"train.out_dir={out}", f"data.root={tiny_data}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    generator, cfg = ckpt.load_generator(out / "export")
    assert not generator.training and cfg.model.name == "pix2pixhd"
    labels = torch.zeros(1, 64, 64, dtype=torch.long)
    from vid2vid.data.encoding import semantic_input

    with torch.no_grad():
        fake = generator(semantic_input(labels, None, cfg.data.label_nc, cfg.data.use_instance))
    assert fake.shape == (1, 3, 64, 64) and fake.abs().max() <= 1
    assert [r["step"] for r in read_log(out)] == [1, 2]
    assert (out / "config.yaml").is_file() and (out / "samples" / "step_0000002.png").is_file()
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["step_0000002"]
    # the exported weights are the final generator's
    exported = load_file(str(out / "export" / ckpt.EXPORT_WEIGHTS))
    final = load_file(str(out / "checkpoints" / "step_0000002" / "G.safetensors"))
    assert_close(exported, final, atol=0)
    # the held-out evaluation tool runs on the export: 1 test sequence of 8 frames
    sys.path.insert(0, str(REPO / "tools"))
    from eval_image_model import class_mean_colours, evaluate

    report = evaluate(out / "export")
    assert report["frames"] == 8 and 0 < report["l1_class_mean_baseline"] < report["l1_model"] < 1
    means = class_mean_colours(tiny_data, cfg.data.load_size, cfg.data.label_nc)
    assert means.shape == (35, 3) and ((means >= 0) & (means <= 1)).all()
    # a second run into the same folder without --resume is refused (exit 2, names the key)
    again = subprocess.run([sys.executable, "-m", "vid2vid", "train", "--config", str(TINY), "--set",
                            "train.max_steps=2", f"train.out_dir={out}", f"data.root={tiny_data}"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "train.out_dir" in again.stderr and "--resume" in again.stderr


def test_generator_loss_falls(tmp_path, tiny_data):
    """The real loop on a fixed-content batch (no augmentation) with the L1 term on: G's loss falls."""
    cfg = tiny(tmp_path, tiny_data, "train.max_steps=30", "train.checkpoint_every=1000", "train.sample_every=1000",
               "data.flip=false", "loss.l1=20", "optim.lr=1e-3", "optim.decay_start=1.0")
    train(cfg)
    log = read_log(tmp_path)
    assert len(log) == 30
    first = sum(r["G/l1"] for r in log[:5]) / 5
    last = sum(r["G/l1"] for r in log[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert sum(r["G/total"] for r in log[-5:]) < sum(r["G/total"] for r in log[:5])


def test_resume_continues_exactly(tmp_path, tiny_data):
    """5 steps uninterrupted == 4 steps, stop, resume from the step-3 checkpoint (in the middle of an epoch)
    to 5: weights, EMA, LR schedule and log continue at the right step."""
    common = ["train.max_steps=5", "train.checkpoint_every=3", "train.sample_every=1000", "optim.ema=0.9",
              "optim.decay_start=0.25", "data.flip=true", "data.batch_size=1"]  # 2 batches per epoch
    full = train(tiny(tmp_path / "full", tiny_data, *common))
    cut_dir = tmp_path / "cut"
    train(tiny(cut_dir, tiny_data, *common), stop_at=4)  # its log holds step 4, after the step-3 checkpoint
    assert ckpt.read_trainer_state(cut_dir / "checkpoints" / "step_0000003")["samples_in_epoch"] == 1
    resumed = train(tiny(cut_dir, tiny_data, *common), resume=str(cut_dir / "checkpoints" / "step_0000003"))
    assert resumed.step == 5
    assert_close(weights(full.checkpoint), weights(resumed.checkpoint), atol=1e-6)
    assert_close(load_file(str(full.checkpoint / ckpt.EMA_FILE)), load_file(str(resumed.checkpoint / ckpt.EMA_FILE)),
                 atol=1e-6)
    full_log, cut_log = read_log(tmp_path / "full"), read_log(cut_dir)
    assert [r["step"] for r in cut_log] == [1, 2, 3, 4, 5]
    expected_lr = [2e-4 * lr_factor(s - 1, 5, 0.25) for s in range(1, 6)]
    assert [r["lr/G"] for r in cut_log] == pytest.approx(expected_lr)
    assert [r["lr/G"] for r in full_log] == pytest.approx(expected_lr)
    for a, b in zip(full_log, cut_log):
        assert a["G/total"] == pytest.approx(b["G/total"], rel=1e-5)
    # `latest` picks the newest checkpoint; at max_steps there is nothing left to do
    again = train(tiny(cut_dir, tiny_data, *common), resume="latest")
    assert again.step == 5 and [r["step"] for r in read_log(cut_dir)] == [1, 2, 3, 4, 5]


def test_gradient_accumulation_equals_larger_batch(tmp_path, tiny_data):
    """grad_accum 2 x batch 1 == batch 2: D's update holds D's loss gradients only (no G leak), G's the
    full-batch ones."""
    common = ["train.max_steps=2", "train.sample_every=1000", "train.checkpoint_every=2"]
    big = train(tiny(tmp_path / "big", tiny_data, *common, "data.batch_size=2"))
    acc = train(tiny(tmp_path / "acc", tiny_data, *common, "data.batch_size=1", "optim.grad_accum=2"))
    cfg = tiny(tmp_path, tiny_data)
    assert_close(outputs(big.generator, big.discriminator, cfg), outputs(acc.generator, acc.discriminator, cfg),
                 atol=5e-5)
    for a, b in zip(read_log(tmp_path / "big"), read_log(tmp_path / "acc")):
        for key in ("D/real", "D/fake", "G/gan", "G/feat"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), (a["step"], key)
    assert all(p.grad is None for p in acc.discriminator.parameters())
    assert all(p.requires_grad for p in acc.discriminator.parameters())


def test_d_update_has_no_generator_gradient(tmp_path, tiny_data):
    """At D's optimizer step, D's gradients are exactly those of D's loss (G's loss never reaches them)."""
    from accelerate import Accelerator

    from vid2vid.models.build import build_losses
    from vid2vid.train.image import ImageTrainer
    from vid2vid.train.loop import _build_data
    from vid2vid.train.trainer import build_groups

    cfg = tiny(tmp_path, tiny_data, "data.batch_size=1", "optim.grad_accum=2")
    acc = Accelerator(step_scheduler_with_optimizer=False)
    _, _, loader = _build_data(cfg, acc)
    torch.manual_seed(0)
    groups, _, loader = build_groups(cfg, acc, loader)
    trainer = ImageTrainer(cfg, acc, groups, build_losses(cfg), None)
    G, D, opt_D = trainer.G, trainer.D, groups["D"].optimizer
    micro = [{k: v for k, v in b.items()} for _, b in zip(range(2), loader)]
    seen = {}
    opt_D.optimizer.register_step_pre_hook(lambda *_: seen.update(
        {n: p.grad.clone() for n, p in D.named_parameters()}))
    D_before = {k: v.clone() for k, v in D.state_dict().items()}
    G_before = {k: v.clone() for k, v in G.state_dict().items()}
    trainer.step(micro)

    # D's loss alone, from the weights before the step
    G.load_state_dict(G_before)
    D.load_state_dict(D_before)
    D.zero_grad()
    for mb in micro:
        from vid2vid.train.trainer import frames_as_images

        images = frames_as_images(mb)
        sem = trainer.semantics(images)
        with torch.no_grad():
            fake = G(sem)
        (trainer.d_losses(sem, fake, images["frames"])["total"] / 2).backward()
    for n, p in D.named_parameters():
        torch.testing.assert_close(seen[n], p.grad, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Pieces
# ----------------------------------------------------------------------------------------------


def test_lr_factor_linear_decay():
    assert [lr_factor(s, 10, 0.5) for s in (0, 5, 6, 8, 10)] == pytest.approx([1, 1, 0.8, 0.4, 0])
    assert lr_factor(10, 10, 1.0) == 1.0 and lr_factor(0, 10, 0.0) == 1.0 and lr_factor(5, 10, 0.0) == 0.5


def test_learning_rates_ttur(tmp_path):
    cfg = load_config(TINY, ["optim.lr=2e-4"])
    assert learning_rates(cfg) == (2e-4, 2e-4, (0.5, 0.999))
    cfg = load_config(TINY, ["optim.lr=2e-4", "optim.ttur=true"])
    assert learning_rates(cfg) == (1e-4, 4e-4, (0.0, 0.9))
    cfg = load_config(TINY, ["optim.ttur=true", "optim.lr_D=1e-3"])
    assert learning_rates(cfg)[1] == 1e-3


def test_ema_update():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.75)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(4.0)
    ema.update(model, step=100)  # past the warm-up: decay 0.75
    torch.testing.assert_close(ema.model.weight, start + 1.0)
    assert not ema.model.weight.requires_grad
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(8) == pytest.approx(0.5)


def test_epoch_sampler_order_and_skip():
    a, b = EpochSampler(10, seed=1), EpochSampler(10, seed=1)
    a.set_epoch(3)
    b.set_epoch(3)
    order = list(a)
    assert sorted(order) == list(range(10)) and list(b) == order
    b.skip(4)
    assert list(b) == order[4:] and list(b) == order  # skip applies to one iteration only
    b.set_epoch(4)
    assert list(b) != order


def test_jsonl_log_truncates_on_resume(tmp_path):
    path = tmp_path / "log.jsonl"
    log = JsonlLog(path, resume_step=None)
    for step in (1, 2, 3):
        log.write({"step": step})
    JsonlLog(path, resume_step=2).write({"step": 3, "again": True})
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"step": 1}, {"step": 2},
                                                                       {"step": 3, "again": True}]
    JsonlLog(path, resume_step=None)
    assert not path.exists()


def test_jsonl_log_resume_survives_a_line_cut_by_a_crash(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "G/to')
    JsonlLog(path, resume_step=2).write({"step": 3})
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"step": 1}, {"step": 2}, {"step": 3}]


def test_refusals_name_the_key():
    with pytest.raises(ConfigError, match="model.first_frame.*no exported model.*real / zeros"):
        check_trainable(load_config(TINY, ["model.name=vid2vid", "model.first_frame=image-model:/nonexistent"]))
    with pytest.raises(ConfigError, match="loss.gan_mode"):
        check_trainable(load_config(TINY, ["loss.gan_mode=wgan-gp"]), num_processes=2)
    check_trainable(load_config(TINY, ["loss.gan_mode=wgan-gp"]), num_processes=1)
    with pytest.raises(ConfigError, match="data.contain_dontcare_label.*rendering imported"):
        check_trainable(load_config(TINY, ["model.name=spade", "data.contain_dontcare_label=true"]))
    with pytest.raises(ConfigError, match="data.contain_dontcare_label.*video model"):
        load_config(TINY, ["model.name=vid2vid", "data.contain_dontcare_label=true"])
    with pytest.raises(UserError, match="VGG19 weights not found.*loss.vgg: 0"):
        check_trainable(load_config(TINY, ["loss.vgg=10", "loss.vgg_weights=/nonexistent/vgg19.pth"]))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="train.mixed_precision"):
            check_trainable(load_config(TINY, ["train.mixed_precision=fp16"]))


@pytest.mark.parametrize("model", [["model.name=spade", "discriminator.norm=spectralinstance", "loss.gan_mode=hinge",
                                    "optim.ttur=true"],
                                   ["model.name=pix2pix", "model.unet_downs=6", "model.dropout=true", "loss.l1=100",
                                    "loss.feat=0", "loss.gan_mode=bce", "optim.grad_clip=1.0"]])
def test_other_image_models_train(tmp_path, tiny_data, model):
    result = train(tiny(tmp_path, tiny_data, "train.max_steps=1", "train.sample_every=1000", *model))
    generator, cfg = ckpt.load_generator(tmp_path / "export")
    assert result.step == 1 and cfg.model.name == model[0].split("=")[1]
    assert all(torch.isfinite(v).all() for v in generator.state_dict().values())


def test_checkpoint_files_are_named_by_network_and_other_architectures_are_refused(tmp_path, tiny_data):
    common = ["train.max_steps=1", "train.sample_every=1000", "train.checkpoint_every=1"]
    result = train(tiny(tmp_path, tiny_data, *common))
    names = sorted(p.name for p in result.checkpoint.iterdir())
    assert names == ["D.safetensors", "G.safetensors", "optimizer_D.safetensors", "optimizer_G.safetensors",
                     "rng_0.safetensors", "trainer_state.json"]
    state = ckpt.read_trainer_state(result.checkpoint)
    assert state["networks"] == {"G": "G", "D": "D"} and set(state["optimizers"]) == {"G", "D"}
    # the same run folder resumed with a config whose networks differ: named, exit-2 error, nothing changed
    saved = dict(state, networks={"G": "G", "D": "D", "D_temporal0": "D"})
    ckpt.write_trainer_state(result.checkpoint, saved)
    with pytest.raises(UserError, match=r"another architecture.*unexpected \['D_temporal0'\]"):
        train(tiny(tmp_path, tiny_data, "train.max_steps=2", "train.sample_every=1000"), resume="latest")
    ckpt.write_trainer_state(result.checkpoint, state)
    with pytest.raises(UserError, match=r"G.safetensors: weights do not match.*wrong shape"):
        train(tiny(tmp_path, tiny_data, "train.max_steps=2", "train.sample_every=1000", "model.ngf=16"),
              resume="latest")
