"""The video generator's finer spatial scales (model.n_scales_spatial): the released G1 / G2 parameter counts, the
original G1 fixture (strict key map against an independent inverse; G1 alone on the stored coarse features and
the whole 2-scale pipeline, eval and train mode), per-scale histories in the one recurrence, active scales,
`vid2vid import` of several checkpoints, rendering a multi-scale export, and the config rules."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from einops import rearrange

from vid2vid import cli
from vid2vid.checkpoint import export_generator, load_generator
from vid2vid.config import load_config
from vid2vid.data.encoding import semantic_input
from vid2vid.errors import ConfigError
from vid2vid.interop.import_originals import generator_from_original, import_config, original_options
from vid2vid.interop.originals import vid2vid_local_name, vid2vid_name, vid2vid_state_dict
from vid2vid.models.build import build_generator
from vid2vid.models.image import use_batch_stats_at_inference
from vid2vid.models.video import VideoGenerator, pyramid
from vid2vid.temporal import start_history, step, unroll

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "vid2vid_G1.pt"
LABEL_NC, FG = 4, [1, 2]  # 4 labels + an edge channel per frame, foreground ids 1 and 2


@pytest.fixture(scope="module")
def fixture():
    if not FIXTURE.is_file():
        pytest.skip(f"{FIXTURE} not found (original-code fixtures of the development workspace)")
    return torch.load(FIXTURE, weights_only=True)


def small_generator(n_scales=2, **overrides) -> VideoGenerator:
    kwargs = dict(ngf=8, n_downsample=2, n_blocks=2, norm="instance", use_fg=True, fg_labels=FG,
                  warp_features=True, n_scales=n_scales, n_blocks_local=1)
    return VideoGenerator(LABEL_NC + 1, 3, **(kwargs | overrides))


def random_semantics(frames: int, size=(32, 32), seed=0) -> torch.Tensor:
    """[1,T,LABEL_NC+1,H,W] one-hot labels + instance edges from random blocky label maps."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, LABEL_NC, (1, frames, size[0] // 8, size[1] // 8), generator=g)
    ids = ids.repeat_interleave(8, -2).repeat_interleave(8, -1)
    return semantic_input(ids, ids, LABEL_NC, use_instance=True)


def by_original_name(out) -> dict:
    return {"img_final": out.final, "flow": out.flow, "weight": out.weight, "img_raw": out.raw,
            "img_feat": out.image_features[-1], "flow_feat": out.flow_features, "img_fg_feat": out.fg_features}


def assert_outputs(out, expected: dict, atol: float = 1e-4) -> None:
    for name, value in by_original_name(out).items():
        assert (value - expected[name]).abs().max() <= atol, name


def fixture_model(fixture) -> tuple[VideoGenerator, object]:
    """The 2-scale model the import builds from the fixture's options, holding its G0 and G1 weights (strict),
    with plain BatchNorm (the import sets batch statistics at inference: test.py's behaviour)."""
    state = vid2vid_state_dict([fixture["state_dict_G0"], fixture["state_dict"]])
    g, cfg = generator_from_original("vid2vid", fixture["options"], state)
    return use_batch_stats_at_inference(g, False), cfg


def fixture_inputs(fixture) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = fixture["inputs"]
    labels = rearrange(inputs["input"], "b (n c) h w -> b n c h w", n=3)  # [1,3,13,64,128]
    prev = rearrange(inputs["img_prev"], "b (n c) h w -> b n c h w", n=2)  # [1,2,3,64,128]
    return labels, prev


# ---------------------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(("preset", "counts"), [
    ("label2city_2048", [411_335_241, 2_880_489, 859_641]),
    ("label2city_1024_g1", [137_792_649, 3_830_217, 1_140_969])])
def test_released_finer_scales_have_the_reference_parameter_counts(preset, counts):
    cfg = import_config("vid2vid", original_options("vid2vid", preset=preset))
    assert cfg.model.n_scales_spatial == 3 and cfg.model.norm == "batch"
    with torch.device("meta"):
        g = build_generator(cfg)  # every scale is built
    assert [sum(p.numel() for p in s.parameters()) for s in g.scales] == counts
    assert [len(s.state_dict()) for s in g.scales[1:]] == [197, 197]  # the original's state-dict tensor counts


def test_fixture_g1_parameter_count_and_widths(fixture):
    g, cfg = fixture_model(fixture)
    assert sum(p.numel() for p in g.scales[1].parameters()) == fixture["param_count"] == 23_673
    assert sum(p.numel() for p in g.scales[0].parameters()) == fixture["param_count_G0"]
    # ngf 8 -> scale 1 width 4; the global n_downsample 3 > 2 halves its foreground branch: 2
    assert g.scales[1].fg_to_image[1].in_channels == 2 and g.scales[1].to_image[1].in_channels == 4
    assert g.scales[1].flow_scale == 40.0 and str(cfg.data.crop_size) == "64x128"


# ---------------------------------------------------------------------------------------------- originals

# Our FineVideoScale module names -> the original CompositeLocalGenerator's, written without vid2vid.interop.originals.
FINE_TO_ORIGINAL = {"label_encoder": "model_down_seg", "frame_encoder": "model_down_img",
                    "image_decoder": "model_up_img", "flow_decoder": "model_up_flow", "to_image": "model_final_img",
                    "to_flow": "model_final_flow", "to_weight": "model_final_w", "fg_encoder": "indv_down",
                    "fg_decoder": "indv_up", "fg_to_image": "indv_final"}


def fine_to_original(key: str) -> tuple[int, str]:
    match = re.fullmatch(r"scales\.(\d+)\.(\w+)\.(.+)", key)
    return int(match[1]), f"{FINE_TO_ORIGINAL[match[2]]}.{match[3]}"


def test_fine_key_map_is_the_inverse_of_an_independent_mapping(fixture):
    g, _ = fixture_model(fixture)
    fine = [k for k in g.state_dict() if not k.startswith("scales.0.")]
    assert sorted(fine_to_original(k)[1] for k in fine) == sorted(fixture["state_dict_keys"])
    assert all(vid2vid_local_name(fine_to_original(k)[1], 1) == k for k in fine)
    assert all(vid2vid_name(f"G1.{fine_to_original(k)[1]}") == k for k in fine)
    assert vid2vid_name("G0.model_up_img.3.weight") == vid2vid_name("model_up_img.3.weight")  # G0: either form
    with pytest.raises(KeyError):
        vid2vid_local_name("model_res_img.0.conv_block.1.weight", 1)  # a G0 module has no place in a finer scale


def test_converter_names_a_missing_finer_scale(fixture):
    with pytest.raises(ConfigError, match=r"scales\.1\.to_weight\.1\.bias \[1\] is not set"):
        generator_from_original("vid2vid", fixture["options"], vid2vid_state_dict([fixture["state_dict_G0"]]))


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_g1_alone_reproduces_the_fixture_on_the_stored_coarse_features(fixture, mode):
    g, _ = fixture_model(fixture)
    g.train(mode == "train")
    inputs = fixture["inputs" if mode == "eval" else "inputs_trainmode"]
    labels, prev = fixture_inputs(fixture)
    with torch.no_grad():
        out = g.scales[1](labels, prev, inputs["img_feat_coarse"], inputs["flow_feat_coarse"],
                          inputs["img_fg_feat_coarse"])
    expected = fixture["outputs" if mode == "eval" else "outputs_trainmode"]
    assert_outputs(out, expected)
    extra = fixture["extra"] if mode == "eval" else expected
    assert (out.warped - extra["img_warp"]).abs().max() <= 1e-4
    assert (out.foreground - extra["img_fg"]).abs().max() <= 1e-4
    assert torch.equal(out.fg_mask[:, 0], inputs["mask"])


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_the_two_scale_pipeline_reproduces_the_fixture(fixture, mode):
    """Our pyramid is the original's coarse input (fractional labels and mask), G0 runs on it, G1 on G0's
    features: both scales' outputs match."""
    g, _ = fixture_model(fixture)
    g.train(mode == "train")
    labels, prev = fixture_inputs(fixture)
    coarse_inputs = fixture["coarse_G0_inputs"]
    assert torch.equal(rearrange(pyramid(labels, 2)[0], "b n c h w -> b (n c) h w"), coarse_inputs["input"])
    assert torch.equal(rearrange(pyramid(prev, 2)[0], "b n c h w -> b (n c) h w"), coarse_inputs["img_prev"])
    with torch.no_grad():
        out = g(labels, prev)
    suffix = "" if mode == "eval" else "_trainmode"
    assert_outputs(out, fixture["outputs" + suffix])
    assert len(out.coarser) == 1 and out.coarser[0].final.shape[-2:] == (32, 64)
    assert_outputs(out.coarser[0], fixture["coarse_G0_outputs" + suffix])
    mask = out.coarser[0].fg_mask[:, 0]
    assert torch.allclose(mask, coarse_inputs["mask"]) and ((mask > 0) & (mask < 1)).any()  # fractional


def test_import_of_g0_and_g1_files_reproduces_the_released_behaviour(fixture, tmp_path, capsys):
    """`vid2vid import vid2vid G0.pth G1.pth OUT` with the original's options: the export renders as the
    original's test.py does (batch statistics)."""
    torch.save(fixture["state_dict_G0"], tmp_path / "latest_net_G0.pth")
    torch.save(fixture["state_dict"], tmp_path / "latest_net_G1.pth")
    known = original_options("vid2vid")
    options = [f"{k}={v}" for k, v in fixture["options"].items() if k in known and k != "fg_labels"]
    options.append("fg_labels=" + ",".join(str(i) for i in fixture["options"]["fg_labels"]))
    files = [str(tmp_path / f"latest_net_G{s}.pth") for s in (0, 1)]
    assert cli.main(["import", "vid2vid", *files, str(tmp_path / "export"), "--option", *options]) == 0
    assert f"{23_673 + 638_961:,} parameters" in capsys.readouterr().out
    g, cfg = load_generator(tmp_path / "export")
    assert cfg.model.n_scales_spatial == 2 and cfg.model.norm_at_inference == "batch_stats"
    with torch.no_grad():
        out = g(*fixture_inputs(fixture))
    assert (out.final - fixture["outputs_trainmode"]["img_final"]).abs().max() <= 1e-4
    # one file for two scales: refused, naming the files expected and the option
    status = cli.main(["import", "vid2vid", files[0], str(tmp_path / "export1"), "--option", *options])
    err = capsys.readouterr().err
    assert status == 2 and "expected 2 generator checkpoints" in err and "n_scales_spatial" in err
    assert "Traceback" not in err and not (tmp_path / "export1").exists()


# ---------------------------------------------------------------------------------------------- the recurrence


def test_one_active_scale_is_the_scale_0_model():
    """A 2-scale generator with one active scale computes exactly what a 1-scale generator with the same scale-0
    weights does (n_scales_spatial 1 is unchanged)."""
    torch.manual_seed(0)
    two = small_generator(2).eval()
    one = small_generator(1).eval()
    one.load_state_dict({k: v for k, v in two.state_dict().items() if k.startswith("scales.0.")})
    assert all(k.startswith("scales.0.") for k in one.state_dict())
    two.set_active_scales(1)
    sem = random_semantics(5, (16, 16))
    frames = torch.rand(1, 2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        a, _ = unroll(two, start_history("real", sem[:, :2], frames), sem[:, 2:])
        b, _ = unroll(one, start_history("real", sem[:, :2], frames), sem[:, 2:])
    assert torch.equal(a.final, b.final) and torch.equal(a.flow, b.flow)
    with pytest.raises(ValueError, match="active scales"):
        two.set_active_scales(3)


def test_every_scale_keeps_its_own_history():
    """The first step seeds the coarse history with the pyramid of the seed frames; afterwards each scale appends
    its own output (not a pooled finer one); unroll equals step by step."""
    torch.manual_seed(0)
    g = small_generator(3).eval()
    sem = random_semantics(5, (32, 32))
    seeds = torch.rand(1, 2, 3, 32, 32) * 2 - 1
    history = start_history("real", sem[:, :2], seeds)
    assert history.coarse_frames is None
    outputs, histories = [], []
    with torch.no_grad():
        for t in range(2, 5):
            out, history = step(g, history, sem[:, t])
            outputs.append(out)
            histories.append(history)
        stacked, after = unroll(g, start_history("real", sem[:, :2], seeds), sem[:, 2:])
    seeded = pyramid(seeds, 3)  # [1,2,3,8,8], [1,2,3,16,16], seeds
    for s in range(2):  # after the first step: the newer pooled seed, then the scale's own output
        assert torch.equal(histories[0].coarse_frames[s][:, 0], seeded[s][:, 1])
        assert torch.equal(histories[0].coarse_frames[s][:, 1], outputs[0].coarser[s].final)
    assert [f.shape[-1] for f in history.coarse_frames] == [8, 16]
    for s in range(2):  # at the end: the scale's own last two outputs, oldest first
        assert torch.equal(history.coarse_frames[s][:, 0], outputs[-2].coarser[s].final)
        assert torch.equal(history.coarse_frames[s][:, 1], outputs[-1].coarser[s].final)
    assert not torch.allclose(history.coarse_frames[1][:, 1], pyramid(outputs[-1].final[:, None], 2)[0][:, 0])
    assert torch.equal(stacked.final[:, -1], outputs[-1].final)
    assert all(torch.equal(a, b) for a, b in zip(after.coarse_frames, history.coarse_frames, strict=True))
    assert torch.equal(history.features[0], outputs[-1].coarser[0].image_features[0])  # scale 0's (warp_features)
    detached = history.detach()
    assert len(detached.coarse_frames) == 2 and not detached.coarse_frames[0].requires_grad


def test_resolution_follows_the_active_scales_and_gradients_reach_them():
    torch.manual_seed(0)
    g = small_generator(2)
    for k, size in ((1, 16), (2, 32)):
        g.set_active_scales(k)
        sem = random_semantics(3, (size, size))
        out = g(sem, torch.rand(1, 2, 3, size, size))
        assert out.final.shape == (1, 3, size, size) and len(out.coarser) == k - 1
        g.zero_grad()
        (out.final.mean() + out.flow.mean()).backward()
        for s, scale in enumerate(g.scales):
            got = {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in scale.named_parameters()
                   if "feature_fusion" not in n}  # warp_features' convs see no previous features here
            if s == k - 1:  # the finest active scale: every parameter
                assert all(got.values()), (k, s)
            elif s < k - 1:  # a coarser one: its trunk (its own image / flow heads act through the history only)
                assert all(v for n, v in got.items() if not n.startswith(("to_", "fg_to_image"))), (k, s)
            else:
                assert not any(got.values()), (k, s)


# ---------------------------------------------------------------------------------------------- render, config


def test_a_multi_scale_export_renders(tmp_path):
    """configs/tiny_video.yaml with 2 scales (random weights): the renderer pads to 2^(n_downsample+1) and runs
    the one recurrence; its frames equal unroll in memory."""
    from vid2vid.imaging import to_uint8
    from vid2vid.render import VideoRenderer

    cfg = load_config(ROOT / "configs" / "tiny_video.yaml", ["model.n_scales_spatial=2", "model.first_frame=zeros"])
    torch.manual_seed(0)
    export = export_generator(build_generator(cfg).state_dict(), cfg, tmp_path / "export")
    renderer = VideoRenderer(export, device="cpu")
    assert renderer.stride == 8
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.data.label_nc, (5, 6, 5), generator=g).repeat_interleave(6, 1).repeat_interleave(6, 2)
    frames = np.stack([renderer.step(ids[t]) for t in range(5)])  # 36x30 -> padded to 40x32
    assert frames.shape == (5, 36, 30, 3)
    G, _ = load_generator(export)
    padded = ids[:, torch.arange(40).clamp(max=35)][:, :, torch.arange(32).clamp(max=29)]  # edge rows repeated
    sem = semantic_input(padded[None], None, cfg.data.label_nc, cfg.data.use_instance)
    with torch.no_grad():
        out, _ = unroll(G, start_history("zeros", sem[:, :2]), sem[:, 2:])
    assert np.array_equal(frames[2:], to_uint8(out.final[0, :, :, :36, :30]))


@pytest.mark.parametrize(("overrides", "words"), [
    (["model.n_scales_spatial=3", "model.ngf=6"], ("model.ngf", "multiple of 4")),
    (["model.n_scales_spatial=2", "data.crop_size=36x36", "data.load_size=36x36"], ("data.crop_size", "8")),
    (["model.n_scales_spatial=0"], ("model.n_scales_spatial", "> 0")),
    (["model.n_scales_spatial=2", "model.name=pix2pixhd"], ("model.n_scales_spatial", "vid2vid")),
    (["train.fix_coarse_steps=2"], ("train.fix_coarse_steps", "train.add_scale_every")),
    (["train.fix_coarse_steps=5", "train.add_scale_every=4"], ("train.fix_coarse_steps", "<=")),
])
def test_config_rules_name_the_key(overrides, words):
    with pytest.raises(ConfigError) as error:
        load_config(ROOT / "configs" / "tiny_video.yaml", overrides)
    assert all(w in str(error.value) for w in words), str(error.value)
