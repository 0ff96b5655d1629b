"""The video generator's SPADE backbone (model.backbone: spade): shapes and gradients, the composition rule,
warp_features starting as the plain model, the config key and its refusals, and training through the real
VideoTrainer whose export `vid2vid render` renders exactly as temporal.unroll does in memory."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from flow import backward_warp
from vid2vid import cli
from vid2vid.checkpoint import load_generator
from vid2vid.config import Config, from_dict, load_config, to_dict
from vid2vid.data.encoding import semantic_input
from vid2vid.errors import ConfigError
from vid2vid.imaging import to_uint8
from vid2vid.models.build import build_generator
from vid2vid.models.video import VideoGenerator
from vid2vid.models.video_spade import SpadeVideoGenerator
from vid2vid.temporal import start_history, unroll
from vid2vid.video_io import image_files, read_image

REPO = Path(__file__).resolve().parents[1]
LABEL_NC, FG = 4, [1, 2]  # 4 labels + an edge channel per frame, foreground ids 1 and 2


def _ids(folder: Path) -> torch.Tensor:
    """A folder of label / instance id PNGs -> [1,T,H,W] int64."""
    ids = np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in image_files(folder)]).astype(np.int64)
    return torch.from_numpy(ids)[None]


def _pngs(folder: Path) -> np.ndarray:
    return np.stack([read_image(p) for p in image_files(folder)])  # [T,H,W,3] uint8


def small_generator(**overrides) -> SpadeVideoGenerator:
    kwargs = dict(ngf=4, n_downsample=3, n_blocks=2, norm="instance", use_fg=True, fg_labels=FG, warp_features=True)
    return SpadeVideoGenerator(LABEL_NC + 1, 3, **(kwargs | overrides))


def random_semantics(batch: int, frames: int, size=(16, 16), seed=0) -> torch.Tensor:
    """[B,T,LABEL_NC+1,H,W] one-hot labels + instance edges from random blocky label maps."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, LABEL_NC, (batch, frames, size[0] // 4, size[1] // 4), generator=g)
    ids = ids.repeat_interleave(4, -2).repeat_interleave(4, -1)
    return semantic_input(ids, ids, LABEL_NC, use_instance=True)


def test_shapes_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    g = small_generator()
    labels = random_semantics(2, 3)  # [2,3,5,16,16]
    prev = torch.rand(2, 2, 3, 16, 16) * 2 - 1
    first = g(labels, prev)
    with torch.no_grad():  # make the zero-initialised feature fusion visible to the gradient check below
        for conv in g.feature_fusion:
            conv.weight.normal_(0, 0.1)
    out = g(labels, prev, first.image_features)
    b, h, w = 2, 16, 16
    assert out.final.shape == out.raw.shape == out.warped.shape == out.foreground.shape == (b, 3, h, w)
    assert out.flow.shape == (b, 2, h, w) and out.weight.shape == out.fg_mask.shape == (b, 1, h, w)
    assert [f.shape for f in out.image_features] == [(b, 16, 4, 4), (b, 8, 8, 8), (b, 4, 16, 16)]
    assert out.flow_features.shape == (b, 4, h, w) and out.fg_features.shape == (b, 2, h, w)  # fg: ngf / 2
    assert 0 < out.weight.min() and out.weight.max() < 1 and out.final.abs().max() <= 1
    sum(t.square().mean() for t in (out.final, out.raw, out.flow, out.weight)).backward()
    missing = [n for n, p in g.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("warp_mode", ["bilinear", "bicubic", "nearest"])
def test_zero_weight_with_exact_flow_and_no_foreground_is_the_warped_previous_frame(warp_mode):
    g = small_generator(warp_features=False, warp_mode=warp_mode).eval()
    with torch.no_grad():
        g.to_weight[1].weight.zero_()
        g.to_weight[1].bias.fill_(-1e4)  # sigmoid -> exactly 0: all weight on the warped frame
        g.to_flow[1].weight.zero_()
        g.to_flow[1].bias.copy_(torch.tensor([1.5, -0.75]) / g.flow_scale)
    ids = torch.zeros(1, 3, 16, 16, dtype=torch.long)  # label 0 only: no foreground pixels
    labels = semantic_input(ids, ids, LABEL_NC, use_instance=True)
    prev = torch.rand(1, 2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        out = g(labels, prev)
    assert torch.equal(out.weight, torch.zeros_like(out.weight))
    assert torch.allclose(out.flow, torch.tensor([1.5, -0.75]).view(1, 2, 1, 1).expand(1, 2, 16, 16))
    assert torch.equal(out.fg_mask, torch.zeros_like(out.fg_mask))
    expected = backward_warp(prev[:, -1], out.flow, warp_mode)
    assert torch.equal(out.warped, expected) and torch.equal(out.final, expected)
    assert not torch.equal(out.raw, expected)  # the hallucinated frame is there, only weighted 0


def test_warp_features_start_as_the_plain_model_and_then_use_the_previous_features():
    torch.manual_seed(0)
    g = small_generator().eval()
    labels, prev = random_semantics(1, 3), torch.rand(1, 2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        plain = g(labels, prev)
        assert torch.equal(g(labels, prev, plain.image_features).final, plain.final)  # zero-initialised fusion
        g.feature_fusion[-1].bias.fill_(0.5)
        assert not torch.equal(g(labels, prev, plain.image_features).final, plain.final)
        assert torch.equal(g(labels, prev).final, plain.final)  # no previous features: nothing to fuse


def test_backbone_key_builds_the_right_generator_and_refuses_what_it_cannot_do():
    cfg = Config()
    assert cfg.model.backbone == "pix2pixhd"
    with torch.device("meta"):
        assert isinstance(build_generator(cfg), VideoGenerator)
        cfg.model.backbone = "spade"
        g = build_generator(cfg)
    assert isinstance(g, SpadeVideoGenerator)
    assert g.n_frames_G == cfg.model.n_frames_G and g.warp_features == cfg.model.warp_features
    assert g.warp_mode == cfg.model.warp_mode == "bicubic"
    base = to_dict(Config())
    refusals = {  # overrides -> words the message must hold (the key, the value and the fix)
        ("model.name=pix2pixhd", "model.backbone=spade"): ("model.backbone", "'spade'", "model.name: spade"),
        ("model.backbone=spade", "model.norm=none"): ("model.norm", "'none'", "spectralinstance"),
        ("model.backbone=spade", "model.n_downsample=1"): ("model.n_downsample", "1", ">= 2"),
        ("model.backbone=spad",): ("model.backbone", "did you mean spade?"),
    }
    for overrides, words in refusals.items():
        with pytest.raises(ConfigError) as error:
            from_dict(base, list(overrides))
        assert all(word in str(error.value) for word in words), str(error.value)
    cfg = from_dict(base, ["model.backbone=spade", "data.fg_labels=[]"])
    with pytest.raises(ConfigError, match=r"data.fg_labels.*model.use_fg: false"):
        build_generator(cfg)


def test_trains_through_the_video_trainer_and_renders_its_export(tmp_path, tiny_data):
    """configs/tiny_video.yaml with model.backbone=spade: 2 steps of the real trainer (losses finite, the weights
    move), then `vid2vid render` of the export equals temporal.unroll of the same generator in memory."""
    from vid2vid.train import train

    out = tmp_path / "run"
    cfg = load_config(REPO / "configs" / "tiny_video.yaml", [
        f"train.out_dir={out}", f"data.root={tiny_data}", "model.backbone=spade", "train.max_steps=2",
        "train.sample_every=1000", "train.checkpoint_every=1"])
    result = train(cfg)
    assert result.step == 2 and isinstance(result.generator, SpadeVideoGenerator)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    rows = [r for r in log if "G/total" in r]
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("G/total", "G/flow", "G/warp_flow", "G/warp_output", "G/tgan_s0", "D/temporal_s0"):
        assert all(np.isfinite(r[key]) for r in rows), key
    step1, step2 = (load_file(str(out / "checkpoints" / f"step_000000{i}" / "G.safetensors")) for i in (1, 2))
    assert step1.keys() == step2.keys() == result.generator.state_dict().keys()
    for key in ("ups.0.norm_0.mlp_gamma.weight", "ups.1.conv_0.weight", "to_flow.1.weight", "to_weight.1.weight"):
        assert not torch.equal(step1[key], step2[key]), key

    G, export_cfg = load_generator(result.export)
    assert isinstance(G, SpadeVideoGenerator) and export_cfg.model.backbone == "spade"
    seq = "seq_0000"
    frames_dir = tmp_path / "frames"
    assert cli.main(["render", str(tiny_data / "test_A" / seq), str(frames_dir), "-m", str(result.export),
                     "--frames-dir"]) == 0
    real = torch.from_numpy(_pngs(tiny_data / "test_B" / seq)).permute(0, 3, 1, 2)[None].float() / 127.5 - 1
    sem = semantic_input(_ids(tiny_data / "test_A" / seq), _ids(tiny_data / "test_inst" / seq),
                         export_cfg.data.label_nc, export_cfg.data.use_instance)  # [1,T,C,H,W]
    n = export_cfg.model.n_frames_G - 1
    with torch.no_grad():
        frames, _ = unroll(G, start_history("real", sem[:, :n], real[:, :n]), sem[:, n:])
    got = _pngs(frames_dir)
    assert len(got) == sem.shape[1] and np.array_equal(got[n:], to_uint8(frames.final[0]))

