"""The image models' encoders train with G (network "E" of the G group) and travel with the export:
pix2pixHD's instance-wise feature encoder with its k-means feature bank, SPADE's VAE encoder. The exported
model generates with features / z from the bank, N(0, I) or a style image; the same choice gives the
same frames, another choice other frames."""

import logging
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train import REPO, read_log, tiny

from vid2vid import checkpoint as ckpt
from vid2vid.config import load_config
from vid2vid.errors import ConfigError, UserError
from vid2vid.train import train
from vid2vid.train.checks import check_trainable

TINY = REPO / "configs" / "tiny.yaml"
QUIET = ("train.checkpoint_every=1000", "train.sample_every=1000")
PIX2PIXHD_FEATURES = ("model.feat_num=3", "model.nef=4", "model.n_downsample_E=2", "model.n_clusters=2")
SPADE_VAE = ("model.name=spade", "model.use_vae=true", "model.z_dim=8", "loss.gan_mode=hinge")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _test_frames(root: Path, cfg, n: int = 2) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """labels [n,H,W], inst [n,H,W] and frames [n,3,H,W] in [-1,1] of the test phase."""
    sys.path.insert(0, str(REPO / "tools"))
    from eval_image_model import iter_labelled_frames

    items = [x for _, x in zip(range(n), iter_labelled_frames(root, "test", cfg.data.load_size, cfg.data.label_nc))]
    labels = torch.stack([torch.from_numpy(lab) for lab, _, _ in items])
    inst = torch.stack([torch.from_numpy(i) for _, i, _ in items]) if items[0][1] is not None else None
    frames = torch.stack([torch.from_numpy(f).permute(2, 0, 1) for _, _, f in items]) * 2 - 1
    return labels, inst, frames


def _optimised_with_g(run_dir: Path) -> None:
    """E's parameters have Adam moments in the G group's optimizer (after G's), and moved."""
    step_dir = ckpt.list_checkpoints(run_dir / "checkpoints")[-1]
    n_g, n_e = len(load_file(str(step_dir / "G.safetensors"))), len(load_file(str(step_dir / "E.safetensors")))
    moments = load_file(str(step_dir / "optimizer_G.safetensors"))
    indices = {int(k.split(".")[0]) for k in moments}
    assert max(indices) >= n_g and len(indices) <= n_g + n_e  # parameters only (buffers are not optimised)
    assert any(v.abs().sum() > 0 for k, v in moments.items() if k.endswith("exp_avg") and int(k.split(".")[0]) >= n_g)


def test_check_trainable_refuses_an_encoder_of_another_model():
    with pytest.raises(ConfigError, match="model.feat_num.*pix2pixhd"):
        check_trainable(load_config(TINY, ["model.name=spade", "model.feat_num=3"]))
    with pytest.raises(ConfigError, match="model.use_vae.*spade"):
        check_trainable(load_config(TINY, ["model.use_vae=true"]))
    check_trainable(load_config(TINY, list(PIX2PIXHD_FEATURES)))
    check_trainable(load_config(TINY, list(SPADE_VAE)))


def test_pix2pixhd_features_train_and_generate_from_the_bank(tmp_path, tiny_data, caplog):
    result = train(tiny(tmp_path, tiny_data, "train.max_steps=2", *PIX2PIXHD_FEATURES, *QUIET))
    assert set(result.networks) == {"G", "E", "D"}
    _optimised_with_g(tmp_path)
    export = ckpt.load_export(result.export)  # the round trip: the export alone generates
    assert {p.name for p in result.export.iterdir()} >= {ckpt.EXPORT_ENCODER, ckpt.EXPORT_FEATURE_BANK}
    bank = export.feature_bank
    assert bank.counts.max() == 2 and (bank.counts == 0).any()  # n_clusters centres; unseen classes none
    labels, inst, frames = _test_frames(tiny_data, export.cfg)

    by_cluster = [export.generate(labels, inst, cluster=c) for c in (0, 1)]
    assert torch.equal(by_cluster[0], export.generate(labels, inst, cluster=0))
    assert (by_cluster[0] - by_cluster[1]).abs().max() > 1e-4
    by_seed = [export.generate(labels, inst, seed=s) for s in range(4)]
    assert torch.equal(by_seed[0], export.generate(labels, inst, seed=0))
    assert any((by_seed[0] - other).abs().max() > 1e-4 for other in by_seed[1:])
    by_style = [export.generate(labels, inst, style=frames[i:i + 1]) for i in (0, 1)]
    assert torch.equal(by_style[0], export.generate(labels, inst, style=frames[:1]))
    assert (by_style[0] - by_style[1]).abs().max() > 1e-4

    unseen = int(torch.nonzero(bank.counts == 0)[0])  # a class never seen in training: zero features, a note
    other = torch.full_like(labels[:1], unseen)
    with caplog.at_level(logging.WARNING, logger="vid2vid"):
        export.generate(other, None, seed=0)
    assert f"[{unseen}]" in caplog.text and "never seen" in caplog.text
    assert (bank.sample(other, other, cluster=1) == 0).all()


def test_eval_tool_takes_the_generation_options(tmp_path, tiny_data):
    result = train(tiny(tmp_path, tiny_data, "train.max_steps=1", *PIX2PIXHD_FEATURES, *QUIET))
    sys.path.insert(0, str(REPO / "tools"))
    from eval_image_model import evaluate, main

    one = evaluate(result.export, cluster=1)
    assert one["frames"] == 8 and one == evaluate(result.export, cluster=1)
    assert evaluate(result.export, seed=3)["l1_model"] != one["l1_model"]
    style = next((tiny_data / "train_B").glob("*/*.png"))
    assert main([str(result.export), "--style", str(style)]) == 0
    assert main([str(result.export), "--style", str(tmp_path / "missing.png")]) == 2


def test_resumed_run_that_finishes_writes_the_feature_bank(tmp_path, tiny_data):
    cfg = tiny(tmp_path, tiny_data, "train.max_steps=1", *PIX2PIXHD_FEATURES, *QUIET)
    train(cfg)
    (tmp_path / "export" / ckpt.EXPORT_FEATURE_BANK).unlink()  # e.g. cut short by a crash
    train(cfg, resume="latest")  # nothing left to train: the export is completed
    assert ckpt.load_export(tmp_path / "export").feature_bank.counts.max() > 0


def test_spade_vae_trains_with_kl_and_generates_from_z(tmp_path, tiny_data):
    result = train(tiny(tmp_path, tiny_data, "train.max_steps=2", *SPADE_VAE, *QUIET))
    assert all(r["G/kl"] > 0 for r in read_log(tmp_path))
    _optimised_with_g(tmp_path)
    assert not (result.export / ckpt.EXPORT_FEATURE_BANK).exists()
    export = ckpt.load_export(result.export)
    assert export.feature_bank is None and export.encoder is not None
    labels, inst, frames = _test_frames(tiny_data, export.cfg)

    by_seed = [export.generate(labels, inst, seed=s) for s in (0, 1)]
    assert torch.equal(by_seed[0], export.generate(labels, inst, seed=0))
    assert (by_seed[0] - by_seed[1]).abs().max() > 1e-4
    by_style = [export.generate(labels, inst, style=frames[i:i + 1], seed=None) for i in (0, 1)]
    assert torch.equal(by_style[0], export.generate(labels, inst, style=frames[:1], seed=None))
    assert (by_style[0] - by_style[1]).abs().max() > 1e-4
    with pytest.raises(UserError, match="feature cluster"):
        export.generate(labels, inst, cluster=0)
