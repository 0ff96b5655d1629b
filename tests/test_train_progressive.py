"""Progressive spatial scales in one run (model.n_scales_spatial 2, train.add_scale_every, train.fix_coarse_steps)
on the tiny synthetic dataset (CPU): the stage schedule; the G optimizer holds exactly the trainable parameters
at every stage and every optimizer's LR follows the schedule; a run grows, trains, resumes exactly at the growth
step and inside a stage, exports the active scales, and its export renders."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from vid2vid import checkpoint as ckpt
from vid2vid.config import load_config
from vid2vid.train import train
from vid2vid.train.loop import build_trainer
from vid2vid.train.schedule import learning_rates, lr_factor
from vid2vid.train.trainer import build_groups
from vid2vid.train.video import ScaleStage, scale_stage

REPO = Path(__file__).resolve().parents[1]
TINY_VIDEO = REPO / "configs" / "tiny_video.yaml"
# steps 0-1: scale 0 alone at 32x32; 2-3: scale 1 added, trains alone; 4-5: both train (64x64)
GROWTH = ["model.n_scales_spatial=2", "train.add_scale_every=2", "train.fix_coarse_steps=2", "train.max_steps=6",
          "optim.decay_start=0.5", "optim.ema=0.9", "train.checkpoint_every=1", "train.keep_last=10",
          "train.sample_every=1000", "data.batch_size=1", "data.n_frames=4"]


def step_rows(out_dir: Path) -> list[dict]:
    """The per-step loss lines of a run's log (speed left out)."""
    import json

    rows = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "it_s"} for r in rows if "lr/G" in r]


def checkpoint_weights(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    """Every network and the EMA of a checkpoint folder, keys prefixed by file name."""
    return {f"{f.stem}.{k}": v for f in sorted(ckpt_dir.glob("*.safetensors")) if not f.stem.startswith("rng")
            for k, v in load_file(str(f)).items()}


def assert_same_weights(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= atol, f"largest difference {worst}"


def assert_same_logs(a: list[dict], b: list[dict], rel: float) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key] == pytest.approx(y[key], rel=rel, abs=1e-7), (x["step"], key)


def progressive(out_dir: Path, data_root: Path, *overrides: str):
    return load_config(TINY_VIDEO, [f"train.out_dir={out_dir}", f"data.root={data_root}", *GROWTH, *overrides])


@pytest.fixture(scope="module")
def video_data(tiny_data):
    from vid2vid.data.synthetic import ensure_dataset

    ensure_dataset(load_config(TINY_VIDEO, [f"data.root={tiny_data}"]).data)
    return tiny_data


def test_stage_schedule():
    cfg = load_config(TINY_VIDEO, ["model.n_scales_spatial=3", "train.add_scale_every=3", "train.fix_coarse_steps=1"])
    stages = [scale_stage(cfg, step) for step in range(8)]
    assert stages == [ScaleStage(1, True)] * 3 + [ScaleStage(2, False), ScaleStage(2, True), ScaleStage(2, True),
                                                  ScaleStage(3, False), ScaleStage(3, True)]
    assert scale_stage(load_config(TINY_VIDEO, ["model.n_scales_spatial=3"]), 0) == ScaleStage(3, True)


def test_optimizers_hold_exactly_the_trainable_parameters_at_every_stage(tmp_path, video_data):
    cfg = progressive(tmp_path, video_data)
    acc = Accelerator(cpu=True)
    groups, ema, _ = build_groups(cfg, acc, [])
    from vid2vid.models.build import build_losses

    trainer = build_trainer(cfg, acc, groups, build_losses(cfg), ema)
    G = trainer.net("G")
    d_params = {id(p) for p in groups["D"].parameters()}
    expected_scales = {0: [0], 1: [0], 2: [1], 3: [1], 4: [0, 1], 5: [0, 1]}
    for step, scales in expected_scales.items():
        trainer.set_stage(step)
        in_optimizer = [p for pg in trainer.groups["G"].optimizer.param_groups for p in pg["params"]]
        trainable = [p for p in G.parameters() if p.requires_grad]
        assert [id(p) for p in in_optimizer] == [id(p) for p in trainable], step
        assert {id(p) for p in trainable} == {id(p) for s in scales for p in G.scales[s].parameters()}, step
        assert {id(p) for pg in trainer.groups["D"].optimizer.param_groups for p in pg["params"]} == d_params
        assert G.active_scales == ema.model.active_scales == max(scales) + 1
        assert trainer.groups["G"].scheduler.optimizer is trainer.groups["G"].optimizer.optimizer


def test_a_two_scale_run_grows_resumes_exactly_and_renders(tmp_path, video_data, capsys):
    full = train(progressive(tmp_path / "full", video_data))
    assert "step 2: 2 of 2 spatial scales active (scale 1 trains alone)" in capsys.readouterr().out
    rows = step_rows(tmp_path / "full")
    lr_G, lr_D, _ = learning_rates(full_cfg := progressive(tmp_path / "full", video_data))
    for r in rows:  # every optimizer's LR follows the schedule through the rebuilds
        factor = lr_factor(r["step"] - 1, full_cfg.train.max_steps, full_cfg.optim.decay_start)
        assert r["lr/G"] == pytest.approx(lr_G * factor) and r["lr/D"] == pytest.approx(lr_D * factor)
    # the optimizer of each checkpoint holds the stage of its last step: scale 0 (step 2), scale 1 (3, 4), all (6)
    n_params = {s: len(list(full.generator.scales[s].parameters())) for s in (0, 1)}
    for step, count in ((2, n_params[0]), (3, n_params[1]), (4, n_params[1]), (6, n_params[0] + n_params[1])):
        state = ckpt.read_trainer_state(tmp_path / "full" / "checkpoints" / f"step_{step:07d}")
        assert len(state["optimizers"]["G"][0]["params"]) == count, step

    # stopped at the growth step and resumed; stopped inside scale 1's own stage and resumed
    cut = tmp_path / "cut"
    train(progressive(cut, video_data), stop_at=2)
    mid = tmp_path / "mid"
    resumed = train(progressive(cut, video_data), resume=str(cut / "checkpoints" / "step_0000002"))
    shutil.copytree(cut, mid)
    again = train(progressive(mid, video_data), resume=str(mid / "checkpoints" / "step_0000003"))
    for result in (resumed, again):
        assert result.step == 6
        assert_same_weights(checkpoint_weights(full.checkpoint), checkpoint_weights(result.checkpoint), atol=1e-6)
    assert_same_logs(rows, step_rows(cut), rel=1e-6)
    assert_same_logs(rows, step_rows(mid), rel=1e-6)

    # the export at step 2 is a 1-scale model at 32x32; the final one has both scales and renders at 64x64
    exported = load_file(str(cut / "checkpoints" / "step_0000002" / "G.safetensors"))
    assert any(k.startswith("scales.1.") for k in exported)  # checkpoints hold every scale
    final, cfg = ckpt.load_generator(tmp_path / "full" / "export")
    assert cfg.model.n_scales_spatial == 2 and len(final.scales) == 2
    from vid2vid.render import VideoRenderer

    renderer = VideoRenderer(tmp_path / "full" / "export", first_frame="zeros", device="cpu")
    ids = torch.randint(0, cfg.data.label_nc, (4, 64, 64), generator=torch.Generator().manual_seed(0))
    frames = np.stack([renderer.step(ids[t]) for t in range(4)])
    assert frames.shape == (4, 64, 64, 3) and frames[2:].std() > 0


def test_the_export_before_the_last_growth_is_a_model_of_the_active_scales(tmp_path, video_data):
    train(progressive(tmp_path, video_data, "train.max_steps=6"), stop_at=1)
    G, cfg = ckpt.load_generator(tmp_path / "export")
    assert cfg.model.n_scales_spatial == 1 and str(cfg.data.crop_size) == "32x32" and len(G.scales) == 1
    assert cfg.train.add_scale_every == 0
    from vid2vid.render import VideoRenderer

    frames = [VideoRenderer(tmp_path / "export", first_frame="zeros", device="cpu").step(np.zeros((32, 32), int))]
    assert frames[0].shape == (32, 32, 3)


def test_two_processes_grow_through_every_stage_with_identical_weights(tmp_path, video_data):
    """torchrun --nproc_per_node 2 (gloo): the run passes both growth stages (scale 1 alone, then all) with the
    optimizers and the DistributedDataParallel wrappers rebuilt, and both ranks end with the same weights."""
    import os
    import subprocess
    import sys

    from test_train_video import LAUNCHED

    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(TINY_VIDEO), str(tmp_path), f"train.out_dir={tmp_path / 'ddp'}", f"data.root={video_data}", *GROWTH]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "step 2: 2 of 2 spatial scales active (scale 1 trains alone)" in proc.stdout
    rank0, rank1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert rank0.keys() == rank1.keys() and any(k.startswith("G.scales.1.") for k in rank0)
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), k
    assert [r["step"] for r in step_rows(tmp_path / "ddp")] == [1, 2, 3, 4, 5, 6]
