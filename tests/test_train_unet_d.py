"""Training with U-Net GAN's discriminator (discriminator.type: unet) and CutMix on the tiny synthetic dataset
(CPU): the image model trains and resumes exactly (CutMix draws included), two processes equal one, and the video
model takes it as its image D (temporal Ds stay PatchGANs)."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from test_train import TINY, assert_close, read_log, tiny, weights
from test_train_ddp import LAUNCHED
from test_train_video import step_rows, video

from vid2vid.models import MultiscaleDiscriminator
from vid2vid.models.unet_discriminator import UNetDiscriminator
from vid2vid.train import train

UNET = ["discriminator.type=unet", "discriminator.depth=3", "loss.cutmix=1"]


def cutmix_steps(rows: list[dict]) -> list[int]:
    return [r["step"] for r in rows if "D/cutmix" in r]


def test_image_model_trains_and_resumes_exactly(tmp_path, tiny_data):
    """5 steps uninterrupted == stop at 4, resume from the step-3 checkpoint: weights and every logged loss, so
    CutMix was drawn at the same steps with the same boxes. Its probability warms up from 0 (step 1: none)."""
    common = ["train.max_steps=5", "train.checkpoint_every=3", "train.sample_every=1000", "data.batch_size=1",
              "optim.decay_start=0.25", *UNET, "loss.cutmix_p=0.7", "loss.cutmix_warmup=0.4"]
    full = train(tiny(tmp_path / "full", tiny_data, *common))
    cut_dir = tmp_path / "cut"
    train(tiny(cut_dir, tiny_data, *common), stop_at=4)
    resumed = train(tiny(cut_dir, tiny_data, *common), resume=str(cut_dir / "checkpoints" / "step_0000003"))
    assert isinstance(full.discriminator, UNetDiscriminator) and resumed.step == 5
    assert_close(weights(full.checkpoint), weights(resumed.checkpoint), atol=1e-6)
    full_log, cut_log = read_log(tmp_path / "full"), read_log(cut_dir)
    assert cutmix_steps(full_log) == cutmix_steps(cut_log) == [3, 5]  # (the draws of this seed)
    for a, b in zip(full_log, cut_log, strict=True):
        assert a.keys() == b.keys()
        for key in (k for k in a if k.startswith(("D/", "G/"))):
            assert a[key] == pytest.approx(b[key], rel=1e-5), (a["step"], key)
    assert all(torch.isfinite(torch.tensor(r["D/total"])) and r["D/cons"] > 0 for r in full_log if "D/cons" in r)
    step3, step5 = weights(cut_dir / "checkpoints" / "step_0000003"), weights(full.checkpoint)
    assert max((step5[k] - step3[k]).abs().max() for k in step3 if k.startswith("D.")) > 1e-5  # D goes on learning


def test_two_processes_match_one(tmp_path, tiny_data):
    """torchrun with 2 processes x batch 1 == 1 process x batch 2, CutMix on every step: the same logged losses
    (the masks of the global batch are split between the processes) and identical weights on both ranks."""
    common = [f"data.root={tiny_data}", "train.max_steps=2", "train.checkpoint_every=2", "train.sample_every=1000",
              *UNET, "loss.cutmix_p=1", "loss.cutmix_warmup=0"]
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(TINY), str(tmp_path), f"train.out_dir={tmp_path / 'ddp'}", "data.batch_size=1", *common]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rank0, rank1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert rank0.keys() == rank1.keys() and all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    train(tiny(tmp_path / "one", tiny_data, "data.batch_size=2", *common))
    ddp_log, one_log = read_log(tmp_path / "ddp"), read_log(tmp_path / "one")
    assert cutmix_steps(ddp_log) == cutmix_steps(one_log) == [1, 2]
    for a, b in zip(ddp_log, one_log, strict=True):
        rel = 1e-5 if a["step"] == 1 else 2e-4  # after one Adam step, batch-2 vs 2 x batch-1 roundoff (~2e-5 seen)
        for key in ("D/real", "D/fake", "D/cutmix", "D/cons", "G/gan", "G/feat"):
            assert a[key] == pytest.approx(b[key], rel=rel), (a["step"], key)


@pytest.mark.parametrize("gan_mode", ["hinge", "wgan-gp"])
def test_video_model_takes_it_as_its_image_discriminator(tmp_path, tiny_data, gan_mode):
    """One step with CutMix; with wgan-gp the gradient penalty runs on the U-Net D too (its global logit is [B])
    over interpolations of the real frames with the final and the raw frames."""
    from vid2vid.data.synthetic import ensure_dataset

    cfg = video(tmp_path, tiny_data, "train.max_steps=1", "train.sample_every=1000", "train.checkpoint_every=1000",
                *UNET, "loss.cutmix_p=1", "loss.cutmix_warmup=0", f"loss.gan_mode={gan_mode}")
    ensure_dataset(cfg.data)
    result = train(cfg)
    assert isinstance(result.networks["D"], UNetDiscriminator)
    assert all(isinstance(result.networks[n], MultiscaleDiscriminator) for n in ("D_temporal0", "D_temporal1"))
    rows = step_rows(tmp_path)
    assert cutmix_steps(rows) == [1] and all("D/temporal_s0" in r and "G/tgan_s0" in r for r in rows)
    assert ("D/gp" in rows[0]) == (gan_mode == "wgan-gp")
    assert all(torch.isfinite(torch.tensor(list(r.values()))).all() for r in rows)
