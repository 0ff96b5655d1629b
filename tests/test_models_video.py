"""The sequential video generator: reference parameter counts, shapes and gradients, the original G0 fixture
(strict key map checked against an independently written inverse, eval- and train-mode outputs), the blend
and foreground composition, and warp_features."""

import re
from pathlib import Path

import pytest
import torch
from einops import rearrange

from flow import backward_warp
from vid2vid.config import Config
from vid2vid.data.encoding import semantic_input
from vid2vid.errors import ConfigError
from vid2vid.interop.originals import convert_state_dict, vid2vid_g0_from_original, vid2vid_g0_kwargs, vid2vid_g0_name
from vid2vid.models.video import VideoGenerator, build_video_generator, resize_flow

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "vid2vid_G0.pt"
LABEL_NC, FG = 4, [1, 2]  # small test set-up: 4 labels + an edge channel per frame, foreground ids 1 and 2


def small_generator(**overrides) -> VideoGenerator:
    kwargs = dict(ngf=4, n_downsample=2, n_blocks=3, norm="instance", use_fg=True, fg_labels=FG,
                  warp_features=True)
    return VideoGenerator(LABEL_NC + 1, 3, **(kwargs | overrides))


def random_semantics(batch: int, frames: int, size=(16, 16), seed=0) -> torch.Tensor:
    """[B,T,LABEL_NC+1,H,W] one-hot labels + instance edges from random blocky label maps."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, LABEL_NC, (batch, frames, size[0] // 4, size[1] // 4), generator=g)
    ids = ids.repeat_interleave(4, -2).repeat_interleave(4, -1)
    return semantic_input(ids, ids, LABEL_NC, use_instance=True)


@pytest.fixture(scope="module")
def fixture():
    if not FIXTURE.is_file():
        pytest.skip(f"{FIXTURE} not found (original-code fixtures of the development workspace)")
    return torch.load(FIXTURE, weights_only=True)


# ---------------------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(("n_downsample", "params", "tensors"), [(3, 411_335_241, 533), (2, 137_792_649, 491)])
def test_parameter_counts_match_the_reference(n_downsample, params, tensors):
    with torch.device("meta"):
        g = VideoGenerator(36, 3, ngf=128, n_downsample=n_downsample, n_blocks=9, norm="batch", use_fg=True,
                           fg_labels=[26], warp_features=False)
    assert sum(p.numel() for p in g.parameters()) == params
    assert len(g.state_dict()) == tensors  # the original's state-dict tensor count, buffers included


def test_builder_from_config_builds_on_meta_and_checks_fg_labels():
    cfg = Config()
    with torch.device("meta"):
        g = build_video_generator(cfg)
    assert g.n_frames_G == cfg.model.n_frames_G and g.warp_features == cfg.model.warp_features
    assert next(g.parameters()).is_meta
    cfg.data.fg_labels = [cfg.data.label_nc]
    with pytest.raises(ConfigError, match="fg_labels"):
        build_video_generator(cfg)


# ---------------------------------------------------------------------------------------------- forward


def test_shapes_and_every_parameter_gets_a_gradient():
    g = small_generator()
    labels = random_semantics(2, 3)  # [2,3,5,16,16]
    prev = torch.rand(2, 2, 3, 16, 16) * 2 - 1
    first = g(labels, prev)
    out = g(labels, prev, first.image_features)  # second call: the feature fusion is used
    b, h, w = 2, 16, 16
    assert out.final.shape == out.raw.shape == out.warped.shape == out.foreground.shape == (b, 3, h, w)
    assert out.flow.shape == (b, 2, h, w) and out.weight.shape == out.fg_mask.shape == (b, 1, h, w)
    assert [f.shape for f in out.image_features] == [(b, 8, 8, 8), (b, 4, 16, 16)]
    assert out.flow_features.shape == (b, 4, h, w)
    assert out.fg_features.shape == (b, 4, h, w)  # n_downsample 2: fg width = ngf
    assert 0 < out.weight.min() and out.weight.max() < 1 and out.final.abs().max() <= 1
    loss = sum(t.square().mean() for t in (out.final, out.raw, out.flow, out.weight))
    loss.backward()
    missing = [n for n, p in g.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("warp_mode", ["bilinear", "bicubic", "nearest"])
def test_zero_weight_with_exact_flow_and_no_foreground_is_the_warped_previous_frame(warp_mode):
    g = small_generator(warp_features=False, warp_mode=warp_mode).eval()
    scale = g.scales[0]
    with torch.no_grad():
        scale.to_weight[1].weight.zero_()
        scale.to_weight[1].bias.fill_(-1e4)  # sigmoid -> exactly 0: all weight on the warped frame
        scale.to_flow[1].weight.zero_()
        scale.to_flow[1].bias.copy_(torch.tensor([1.5, -0.75]) / scale.flow_scale)
    ids = torch.zeros(1, 3, 16, 16, dtype=torch.long)  # label 0 only: no foreground pixels
    labels = semantic_input(ids, ids, LABEL_NC, use_instance=True)
    prev = torch.rand(1, 2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        out = g(labels, prev)
    assert torch.equal(out.weight, torch.zeros_like(out.weight))
    assert torch.allclose(out.flow, torch.tensor([1.5, -0.75]).view(1, 2, 1, 1).expand(1, 2, 16, 16))
    assert torch.equal(out.fg_mask, torch.zeros_like(out.fg_mask))
    assert torch.equal(out.final, backward_warp(prev[:, -1], out.flow, warp_mode))


def test_the_config_warps_bicubic_and_the_original_import_bilinear(fixture):
    """Ours: bicubic (a render that warps its own output every frame stays sharp); the reference's
    network (parity, imports): bilinear."""
    from vid2vid.config import load_config
    from vid2vid.interop.originals import vid2vid_config
    from vid2vid.models.build import build_generator

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "tiny_video.yaml")
    assert cfg.model.warp_mode == "bicubic" and build_generator(cfg).scales[0].warp_mode == "bicubic"
    assert vid2vid_config(fixture["options"])["model"]["warp_mode"] == "bilinear"


def test_foreground_mask_comes_from_the_current_frames_label_ids():
    g = small_generator().eval()
    ids = torch.randint(0, LABEL_NC, (1, 3, 16, 16), generator=torch.Generator().manual_seed(1))
    labels = semantic_input(ids, ids, LABEL_NC, use_instance=True)
    with torch.no_grad():
        out = g(labels, torch.zeros(1, 2, 3, 16, 16))
    expected = torch.isin(ids[:, -1], torch.tensor(FG)).float()[:, None]  # current frame only
    assert torch.equal(out.fg_mask, expected)
    inside = expected.bool().expand(1, 3, 16, 16)
    assert torch.equal(out.final[inside], out.foreground[inside])
    assert torch.equal(out.raw[inside], out.foreground[inside])
    with torch.no_grad():  # all foreground: final and raw are the foreground image
        all_fg = g(semantic_input(torch.ones_like(ids), ids, LABEL_NC, use_instance=True), torch.zeros(1, 2, 3, 16, 16))
    assert torch.equal(all_fg.final, all_fg.foreground) and torch.equal(all_fg.raw, all_fg.foreground)


def test_raw_only_returns_the_raw_frame():
    g = small_generator().eval()
    with torch.no_grad():
        out = g(random_semantics(1, 3), torch.rand(1, 2, 3, 16, 16), raw_only=True)
    assert torch.equal(out.final, out.raw)


def test_warp_features_start_as_the_plain_model_and_then_act():
    plain = small_generator(warp_features=False).eval()
    fused = small_generator(warp_features=True).eval()
    assert not hasattr(plain.scales[0], "feature_fusion")
    missing, unexpected = fused.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and all(".feature_fusion." in k for k in missing)
    labels, prev = random_semantics(1, 3), torch.rand(1, 2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        first = fused(labels, prev)
        a = plain(labels, prev, first.image_features)
        b = fused(labels, prev, first.image_features)
        assert torch.equal(a.final, b.final) and torch.equal(a.raw, b.raw)
        for conv in fused.scales[0].feature_fusion:
            conv.weight.normal_(0, 0.5)
        c = fused(labels, prev, first.image_features)
    assert not torch.allclose(c.raw, a.raw)


def test_resize_flow_keeps_a_constant_motion_in_pixels_of_the_new_grid():
    flow = torch.tensor([4.0, -2.0]).view(1, 2, 1, 1).expand(1, 2, 16, 32)
    small = resize_flow(flow, (4, 8))
    assert torch.allclose(small, torch.tensor([1.0, -0.5]).view(1, 2, 1, 1).expand(1, 2, 4, 8))


# ---------------------------------------------------------------------------------------------- originals

# Our names -> the original's, written independently of vid2vid.interop.originals (its inverse).
OURS_TO_ORIGINAL = {
    "label_encoder": "model_down_seg", "frame_encoder": "model_down_img", "fg_encoder": "indv_down",
    "image_decoder.blocks": "model_res_img", "flow_decoder.blocks": "model_res_flow", "fg_decoder.blocks": "indv_res",
    "to_image": "model_final_img", "to_flow": "model_final_flow", "to_weight": "model_final_w",
    "fg_to_image": "indv_final",
}
OURS_UP_TO_ORIGINAL = {"image_decoder.ups": "model_up_img", "flow_decoder.ups": "model_up_flow",
                       "fg_decoder.ups": "indv_up"}


def to_original(key: str) -> str:
    key = key.removeprefix("scales.0.")
    for ours, theirs in OURS_UP_TO_ORIGINAL.items():
        match = re.fullmatch(re.escape(ours) + r"\.(\d+)\.(\d+)\.(.+)", key)
        if match:  # level l, layer i of our per-level Sequential -> flat index 3l + i
            return f"{theirs}.{3 * int(match[1]) + int(match[2])}.{match[3]}"
    for ours, theirs in OURS_TO_ORIGINAL.items():
        if key.startswith(ours + "."):
            return theirs + key[len(ours):]
    raise AssertionError(f"no original name for {key}")


def test_key_map_is_the_inverse_of_an_independent_mapping(fixture):
    g = VideoGenerator(**vid2vid_g0_kwargs(fixture["options"]))
    ours = list(g.state_dict())
    assert sorted(to_original(k) for k in ours) == sorted(fixture["state_dict_keys"])
    assert all(vid2vid_g0_name(to_original(k)) == k for k in ours)
    with torch.device("meta"):  # the released label2city_2048 layout maps the same way
        big = VideoGenerator(36, 3, ngf=128, n_downsample=3, n_blocks=9, norm="batch", fg_labels=[26],
                             warp_features=False)
    assert all(vid2vid_g0_name(to_original(k)) == k for k in big.state_dict())


def test_converter_is_strict_and_names_every_mismatch(fixture):
    state = dict(fixture["state_dict"])
    g = VideoGenerator(**vid2vid_g0_kwargs(fixture["options"]))
    assert len(convert_state_dict("vid2vid_G0", state, g)) == len(g.state_dict())
    broken = dict(state)
    del broken["model_final_w.1.bias"]
    broken["model_extra.0.weight"] = torch.zeros(1)
    broken["indv_final.1.weight"] = torch.zeros(3, 5, 7, 7)
    with pytest.raises(ConfigError) as error:
        convert_state_dict("vid2vid_G0", broken, g, source="G0.pth")
    message = str(error.value)
    assert "G0.pth" in message and "3 problems" in message
    assert "scales.0.to_weight.1.bias [1] is not set" in message
    assert "model_extra.0.weight [1] has no place" in message
    assert "indv_final.1.weight [3, 5, 7, 7] -> scales.0.fg_to_image.1.weight [3, 4, 7, 7]" in message
    with pytest.raises(ConfigError, match="not set"):  # our extra layers (warp_features) are not silently kept
        convert_state_dict("vid2vid_G0", state, VideoGenerator(**(vid2vid_g0_kwargs(fixture["options"])
                                                                   | {"warp_features": True})))


def outputs_by_original_name(out) -> dict:
    return {"img_final": out.final, "flow": out.flow, "weight": out.weight, "img_raw": out.raw,
            "img_feat": out.image_features[-1], "flow_feat": out.flow_features, "img_fg_feat": out.fg_features}


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_fixture_outputs_are_reproduced(fixture, mode):
    g = vid2vid_g0_from_original(fixture["options"], fixture["state_dict"]).train(mode == "train")
    inputs = fixture["inputs"]
    labels = rearrange(inputs["input"], "b (n c) h w -> b n c h w", n=3)
    prev = rearrange(inputs["img_prev"], "b (n c) h w -> b n c h w", n=2)
    with torch.no_grad():
        out = g(labels, prev)
    expected = fixture["outputs"] if mode == "eval" else fixture["outputs_trainmode"]
    for name, value in outputs_by_original_name(out).items():
        assert (value - expected[name]).abs().max() <= 1e-4, name
    if mode == "eval":
        extra = fixture["extra"]
        assert (out.warped - extra["img_warp"]).abs().max() <= 1e-4
        assert (out.foreground - extra["img_fg"]).abs().max() <= 1e-4
        assert torch.equal(out.fg_mask[:, 0], inputs["mask"])


def test_fixture_semantics_match_our_encoding(fixture):
    inputs = fixture["inputs"]
    ids, inst = inputs["A_label_ids"][:, :, 0].long(), inputs["inst_ids"][:, :, 0].long()  # [1,3,H,W]
    ours = semantic_input(ids, inst, 12, use_instance=True)  # [1,3,13,H,W]
    assert torch.equal(rearrange(ours, "b n c h w -> b (n c) h w"), inputs["input"])


def test_blend_init_sets_every_scales_blend_weight_everywhere():
    """model.blend_init: after init_blend_weight every scale's weight head gives w at every pixel whatever the
    input (the head's conv is zero, its bias logit(w)), and the head still learns (its weights get gradients);
    the config refuses a w outside (0, 1) and other model families."""
    from vid2vid.config import load_config
    from vid2vid.models.video import init_blend_weight

    g = VideoGenerator(LABEL_NC + 1, 3, ngf=8, n_downsample=2, n_blocks=2, use_fg=False, n_scales=2)
    assert init_blend_weight(g, 0.02) == 2
    out = g(random_semantics(2, 3, size=(32, 32)), torch.rand(2, 2, 3, 32, 32) * 2 - 1)
    for o in (out, *out.coarser):
        torch.testing.assert_close(o.weight, torch.full_like(o.weight, 0.02))
    sum(o.final.square().mean() for o in (out, *out.coarser)).backward()
    assert all(s.to_weight[1].weight.grad.abs().sum() > 0 for s in g.scales)
    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny_video.yaml"
    for bad in (["model.blend_init=1"], ["model.blend_init=0.1", "model.name=pix2pixhd"]):
        with pytest.raises(ConfigError, match="model.blend_init"):
            load_config(tiny, bad)


def test_a_new_generator_starts_at_zero_flow_and_its_flow_head_learns():
    """Every scale's flow head is zero-initialised: a new model warps with the identity (PyTorch's default init
    gave random flows of ~6 px mean), and the head still gets gradients."""
    g = VideoGenerator(LABEL_NC + 1, 3, ngf=8, n_downsample=2, n_blocks=2, use_fg=False, n_scales=2)
    prev = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    out = g(random_semantics(2, 3, size=(32, 32)), prev)
    for o in (out, *out.coarser):
        assert torch.equal(o.flow, torch.zeros_like(o.flow))
    torch.testing.assert_close(out.warped, prev[:, -1])
    sum(o.final.square().mean() for o in (out, *out.coarser)).backward()
    assert all(s.to_flow[1].weight.grad.abs().sum() > 0 for s in g.scales)


@pytest.mark.parametrize("trained_by", ["all", "flow_terms"])
def test_flow_trained_by_flow_terms_keeps_image_gradients_out_of_the_flow_head(trained_by):
    """model.flow_trained_by: with flow_terms the composition warps with the detached flow, so a loss on the final
    frame gives the flow head no gradient while a loss on the flow itself still does; with all (the reference's)
    the final frame's loss reaches it through the warp. The outputs are the same either way."""
    from vid2vid.models.video import set_flow_options

    torch.manual_seed(0)
    g = VideoGenerator(LABEL_NC + 1, 3, ngf=8, n_downsample=2, n_blocks=2, use_fg=False, n_scales=2)
    for scale in g.scales:  # a flow head that moves pixels (a new one predicts zero flow)
        torch.nn.init.normal_(scale.to_flow[1].weight, std=0.01)
    labels, prev = random_semantics(2, 3, size=(32, 32)), torch.rand(2, 2, 3, 32, 32) * 2 - 1
    reference = g(labels, prev, g(labels, prev).coarser[0].image_features)  # scale 0's features
    assert set_flow_options(g, trained_by=trained_by) == 2
    first = g(labels, prev)
    out = g(labels, prev, first.coarser[0].image_features)
    torch.testing.assert_close(out.final, reference.final, rtol=0, atol=0)
    sum(o.final.square().mean() for o in (out, *out.coarser)).backward()  # every scale's final frame
    reached = [bool(s.to_flow[1].weight.grad is not None and s.to_flow[1].weight.grad.abs().sum() > 0)
               for s in g.scales]
    assert reached == [trained_by == "all"] * 2
    g.zero_grad()
    g(labels, prev).flow.square().mean().backward()
    assert g.scales[-1].to_flow[1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="flow_trained_by"):
        set_flow_options(g, trained_by="image")


def _shifted_label_maps(shift: int, size=(64, 96), classes=LABEL_NC, seed=0) -> torch.Tensor:
    """Semantics [1,2,C+1,H,W] of a blobby random label map (frame t-1) and the same map moved `shift` px right
    (frame t); the last channel is an empty edge channel."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, classes, (1, 1, size[0] // 8, size[1] // 8 + 2), generator=g).float()
    ids = torch.nn.functional.interpolate(coarse, scale_factor=8, mode="nearest")[0, 0].long()  # [H, W+16]
    frames = torch.stack([ids[:, 8:8 + size[1]], ids[:, 8 - shift:8 - shift + size[1]]])  # t-1, t
    onehot = torch.nn.functional.one_hot(frames, classes + 1).permute(0, 3, 1, 2).float()
    onehot[:, classes] = 0
    return onehot[None]


def test_label_flow_finds_the_motion_of_the_label_maps():
    """model.flow_prior labels: DIS between grey renderings of frames t and t-1 recovers a 3 px shift of a blobby
    label map (frame t -> t-1: u = -3) away from the borders."""
    from vid2vid.models.video import label_flow

    flow = label_flow(_shifted_label_maps(3))  # [1,2,H,W]
    inner = flow[0, :, 8:-8, 16:-16]
    assert inner.shape[0] == 2 and abs(inner[0].median().item() + 3) < 0.5 and inner[1].abs().median() < 0.5


def test_flow_prior_labels_is_the_new_models_flow_and_the_config_checks_it():
    """With model.flow_prior labels a new generator's flow is exactly label_flow (its head starts at zero); other
    model families and the spade backbone refuse the key."""
    from vid2vid.config import load_config
    from vid2vid.models.video import label_flow, set_flow_options

    g = VideoGenerator(LABEL_NC + 1, 2, ngf=8, n_downsample=2, n_blocks=2, use_fg=False)
    labels = _shifted_label_maps(2, size=(32, 48))
    assert set_flow_options(g, prior="labels") == 1
    out = g(labels, torch.rand(1, 1, 3, 32, 48) * 2 - 1)
    assert torch.equal(out.flow, label_flow(labels)) and out.flow.abs().max() > 0
    set_flow_options(g, prior="none")
    assert torch.equal(g(labels, torch.zeros(1, 1, 3, 32, 48)).flow, torch.zeros(1, 2, 32, 48))
    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny_video.yaml"
    assert load_config(tiny, ["model.flow_prior=labels"]).model.flow_prior == "labels"
    for bad in (["model.flow_prior=labels", "model.name=pix2pixhd"],
                ["model.flow_prior=labels", "model.backbone=spade"]):
        with pytest.raises(ConfigError, match="model.flow_prior"):
            load_config(tiny, bad)


def test_label_agreement_is_one_where_the_flow_aligns_the_labels_and_zero_where_it_does_not():
    """label_agreement per pixel (window 1): frame t-1's channels warped by the true motion (t -> t-1: u = -3)
    agree with frame t's everywhere away from the left border; warped by zero flow they disagree exactly where the
    shift changed the class (0 there, 1 elsewhere); both up to the sampling positions' roundoff."""
    from vid2vid.models.video import label_agreement

    labels = _shifted_label_maps(3)  # [1,2,C+1,H,W]
    true_flow = torch.zeros(1, 2, 64, 96)
    true_flow[:, 0] = -3
    torch.testing.assert_close(label_agreement(labels, true_flow, window=1)[..., 3:], torch.ones(1, 1, 64, 93))
    changed = (labels[:, 0] != labels[:, 1]).any(1, keepdim=True)  # [1,1,H,W]
    assert changed.any()
    torch.testing.assert_close(label_agreement(labels, torch.zeros(1, 2, 64, 96), window=1), (~changed).float())


def test_label_agreement_over_its_window_ignores_pixel_noise_but_not_a_displaced_region():
    """A window of 5 px: a label map whose classes flip at 2% of the pixels between frames (the labels of
    a noisy clip) still agrees at >= 0.8 everywhere under zero flow (0.96 for one flip in a whole window), where
    per pixel it is 0 at every flip; a region displaced by 8 px (zero flow: the wrong flow) disagrees completely (0)
    inside its cells."""
    from vid2vid.models.video import label_agreement

    labels = _shifted_label_maps(0)  # [1,2,C+1,H,W], frames t-1 = t
    flips = torch.rand(64, 96, generator=torch.Generator().manual_seed(1)) < 0.02
    noisy = labels[0, 1].argmax(0).masked_fill(flips, LABEL_NC - 1)  # [H,W] class ids, 2% set to the last class
    labels[0, 1, :LABEL_NC] = torch.nn.functional.one_hot(noisy, LABEL_NC).permute(2, 0, 1).float()
    zero = torch.zeros(1, 2, 64, 96)
    pooled = label_agreement(labels, zero, window=5)
    assert label_agreement(labels, zero).min() == 0 and pooled.min() >= 0.8 and pooled.mean() > 0.97
    assert label_agreement(_shifted_label_maps(8), zero, window=5).min() == 0


def test_label_agreement_with_a_tolerance_passes_pixel_noise_whole_and_still_refuses_a_moved_region():
    """model.warp_gate_tolerance t: the windowed agreement / (1 - t), at most 1: from 1 - t up it counts as 1.
    With one flipped pixel in every 5x5 window (2/25 = 0.08 of disagreement) the plain gate mixes the hallucinated
    frame in almost everywhere; with t 0.1 nowhere; a region moved 8 px with zero flow is still refused; the
    rest is the plain agreement / (1 - t)."""
    from vid2vid.models.video import label_agreement

    labels = _shifted_label_maps(0)  # [1,2,C+1,H,W], frames t-1 = t
    noisy = labels[0, 1].argmax(0)  # [H,W]
    noisy[2::5, 2::5] = (noisy[2::5, 2::5] + 1) % LABEL_NC  # one flipped pixel in every 5x5 block
    labels[0, 1, :LABEL_NC] = torch.nn.functional.one_hot(noisy, LABEL_NC).permute(2, 0, 1).float()
    zero = torch.zeros(1, 2, 64, 96)
    plain = label_agreement(labels, zero, window=5)
    assert plain.min() < 0.95 and (plain < 1).float().mean() > 0.9  # a few per cent mixed in almost everywhere
    inside = (..., slice(2, -2), slice(2, -2))  # full 5x5 windows (at the border fewer pixels share the cost)
    assert label_agreement(labels, zero, window=5, tolerance=0.1)[inside].min() == 1
    moved = _shifted_label_maps(8)
    assert label_agreement(moved, zero, window=5, tolerance=0.1).min() == 0
    soft = label_agreement(moved, zero, window=5)
    torch.testing.assert_close(label_agreement(moved, zero, window=5, tolerance=0.2), (soft / 0.8).clamp(max=1))



def test_label_agreement_with_a_margin_is_hard_and_refuses_the_pixels_next_to_a_disagreement():
    """model.warp_gate_margin m: agreement is 0 or 1, 1 only where the maps agree (to 1e-3) at every pixel within m
    px. A half-pixel flow error makes every class boundary agree partly per pixel (bilinear sampling: 0.5, which
    would pass half the other class's colour on); with a margin of 1 those pixels and their neighbours get 0, the
    rest 1."""
    import torch.nn.functional as F

    from vid2vid.models.video import label_agreement

    labels = _shifted_label_maps(3)  # [1,2,C+1,H,W]
    flow = torch.zeros(1, 2, 64, 96)
    flow[:, 0] = -2.5  # the true motion is -3
    soft = label_agreement(labels, flow)
    partial = (soft > 1e-3) & (soft < 1 - 1e-3)
    assert partial.any()
    hard = label_agreement(labels, flow, margin=1)
    assert set(hard.unique().tolist()) == {0.0, 1.0}
    near = F.max_pool2d((soft < 1 - 1e-3).float(), 3, stride=1, padding=1).bool()  # within 1 px of a disagreement
    torch.testing.assert_close(hard, (~near).float())
    assert torch.equal(label_agreement(labels, flow, margin=0), soft)


def test_label_agreement_of_a_nearest_warping_scale_warps_the_labels_as_its_frames():
    """A scale with warp_mode nearest copies whole pixels, so its gate compares the labels moved the same way: a
    flow 0.3 px off the true motion agrees exactly (the copy is the true one), where bilinear labels disagree in
    part at every boundary; gated_weight picks the mode from the scale."""
    from vid2vid.models.video import gated_weight, label_agreement, set_flow_options

    labels = _shifted_label_maps(3)  # [1,2,C+1,H,W]
    flow = torch.zeros(1, 2, 64, 96)
    flow[:, 0] = -2.7  # the true motion is -3
    assert label_agreement(labels, flow, mode="nearest")[..., 3:].min() == 1
    assert label_agreement(labels, flow)[..., 3:].min() < 0.9
    g = VideoGenerator(LABEL_NC + 1, 2, ngf=8, n_downsample=2, n_blocks=2, use_fg=False, warp_mode="nearest")
    set_flow_options(g, gate="labels")
    weight = torch.full((1, 1, 64, 96), 0.25)
    torch.testing.assert_close(gated_weight(g.scales[0], weight, labels, flow),
                               1 - 0.75 * label_agreement(labels, flow, mode="nearest"))


def test_flow_deadzone_warps_with_the_short_vectors_zeroed():
    """model.flow_deadzone d: the previous frame is warped (and gated) with the flow's vectors shorter than d px set to
    zero, the longer ones as they are; the output flow (what the flow terms train) is unchanged. A deadzone longer
    than every vector carries the previous frame as it is."""
    from vid2vid.config import load_config
    from vid2vid.models.video import set_flow_options

    torch.manual_seed(0)
    g = VideoGenerator(LABEL_NC + 1, 2, ngf=8, n_downsample=2, n_blocks=2, use_fg=False, warp_features=False).eval()
    labels, prev = _shifted_label_maps(3, size=(32, 48)), torch.rand(1, 1, 3, 32, 48) * 2 - 1
    labels[:, 1, :, 16:] = labels[:, 0, :, 16:]  # the top half moves 3 px, the bottom half stays
    set_flow_options(g, prior="labels")
    plain = g(labels, prev)
    length = plain.flow.detach().norm(dim=1, keepdim=True)
    assert (length < 1).any() and (length > 2).any()
    set_flow_options(g, prior="labels", deadzone=1.0)
    out = g(labels, prev)
    assert torch.equal(out.flow, plain.flow)
    torch.testing.assert_close(out.warped, backward_warp(prev[:, -1], plain.flow * (length >= 1)))
    set_flow_options(g, prior="labels", deadzone=float(length.max()) + 1)
    torch.testing.assert_close(g(labels, prev).warped, prev[:, -1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="flow_deadzone"):
        set_flow_options(g, deadzone=-1)
    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny_video.yaml"
    assert build_video_generator(load_config(tiny, ["model.flow_deadzone=0.5"])).scales[0].flow_deadzone == 0.5
    for bad in (["model.flow_deadzone=-1"], ["model.flow_deadzone=0.5", "model.name=pix2pixhd"]):
        with pytest.raises(ConfigError, match="model.flow_deadzone"):
            load_config(tiny, bad)


def test_warp_gate_labels_uses_the_hallucinated_frame_where_the_warped_labels_disagree():
    """model.warp_gate labels: the blend weight becomes 1 (final = raw) where the warped previous labels disagree
    with the current ones and stays the weight head's where they agree; off it is the head's everywhere. Other
    model families and the spade backbone refuse the key."""
    from vid2vid.config import load_config
    from vid2vid.models.video import label_agreement, set_flow_options

    torch.manual_seed(0)
    g = VideoGenerator(LABEL_NC + 1, 2, ngf=8, n_downsample=2, n_blocks=2, use_fg=False)
    labels, prev = _shifted_label_maps(8, size=(32, 48)), torch.rand(1, 1, 3, 32, 48) * 2 - 1
    plain = g(labels, prev)
    assert set_flow_options(g, gate="labels") == 1
    gated = g(labels, prev)
    agreement = label_agreement(labels, plain.flow)
    assert 0 < agreement.mean() < 1
    torch.testing.assert_close(gated.weight, 1 - (1 - plain.weight) * agreement)
    disagree = agreement[0, 0] == 0
    torch.testing.assert_close(gated.final[0][:, disagree], gated.raw[0][:, disagree])
    set_flow_options(g, gate="labels", gate_window=5)  # model.warp_gate_window
    torch.testing.assert_close(g(labels, prev).weight, 1 - (1 - plain.weight) * label_agreement(labels, plain.flow, 5))
    with pytest.raises(ValueError, match="warp_gate"):
        set_flow_options(g, gate="flow")
    with pytest.raises(ValueError, match="warp_gate_window"):
        set_flow_options(g, gate="labels", gate_window=4)
    set_flow_options(g, gate="labels", gate_margin=1)  # model.warp_gate_margin
    torch.testing.assert_close(g(labels, prev).weight,
                               1 - (1 - plain.weight) * label_agreement(labels, plain.flow, margin=1))
    with pytest.raises(ValueError, match="warp_gate_margin"):
        set_flow_options(g, gate="labels", gate_margin=-1)
    set_flow_options(g, gate="labels", gate_window=5, gate_tolerance=0.1)  # model.warp_gate_tolerance
    torch.testing.assert_close(g(labels, prev).weight,
                               1 - (1 - plain.weight) * label_agreement(labels, plain.flow, 5, tolerance=0.1))
    with pytest.raises(ValueError, match="warp_gate_tolerance"):
        set_flow_options(g, gate="labels", gate_tolerance=0.5)
    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny_video.yaml"
    assert load_config(tiny, ["model.warp_gate=labels"]).model.warp_gate == "labels"
    for bad in (["model.warp_gate=labels", "model.name=pix2pixhd"], ["model.warp_gate=labels", "model.backbone=spade"],
                ["model.warp_gate_window=0"], ["model.warp_gate_window=4"], ["model.warp_gate_margin=-1"],
                ["model.warp_gate=labels", "model.warp_gate_tolerance=0.5"], ["model.warp_gate_tolerance=0.1"]):
        with pytest.raises(ConfigError, match="model.warp_gate"):
            load_config(tiny, bad)


def test_label_flow_of_edge_maps_follows_their_motion():
    """model.flow_prior edges: DIS between the first input channel (an edge map, as the face input's) x 255 of frames
    t and t-1 recovers the 3 px shift of the blob boundaries; the other channels do not matter."""
    from vid2vid.models.video import label_flow

    ids = _shifted_label_maps(3).argmax(2)  # [1,2,H,W]
    edges = ((ids[..., 1:, :] != ids[..., :-1, :])[..., :, 1:] | (ids[..., :, 1:] != ids[..., :, :-1])[..., 1:, :])
    edge_map = torch.nn.functional.pad(edges.float(), (1, 0, 1, 0))[:, :, None]  # [1,2,1,H,W]
    noise = torch.rand(1, 2, 4, 64, 96, generator=torch.Generator().manual_seed(2))
    flow = label_flow(torch.cat([edge_map, noise], 2), "edges")[0, :, 8:-8, 16:-16]
    assert abs(flow[0].median().item() + 3) < 0.5 and flow[1].abs().median() < 0.5


def test_two_band_blend_keeps_the_carried_fine_texture_where_the_weight_is_small():
    """model.blend two_band: w 0 -> the warped frame, w 1 -> the hallucinated one, exactly; at a small w every frame
    (30 frames of w 0.05, a new unrelated texture each frame) the linear blend fades the carried fine texture to well
    under half its energy while two_band keeps nearly all of it, and both let the hallucinated frame's colour (its
    coarse band) in alike; the choice is read from the config and refused for the SPADE backbone."""
    from vid2vid.config import load_config
    from vid2vid.models.video import blend, low_pass

    g = torch.Generator().manual_seed(0)
    carried = torch.rand(1, 3, 48, 48, generator=g) * 2 - 1
    raw = torch.rand(1, 3, 48, 48, generator=g) * 2 - 1
    zero, one = torch.zeros(1, 1, 48, 48), torch.ones(1, 1, 48, 48)
    for power in (None, 4.0):
        torch.testing.assert_close(blend(raw, carried, zero, power), carried)
        torch.testing.assert_close(blend(raw, carried, one, power), raw)

    def fine_energy(x):
        return (x - low_pass(x)).abs().mean().item()

    start, w = fine_energy(carried), torch.full((1, 1, 48, 48), 0.05)
    finals = {}
    for mode, power in (("linear", None), ("two_band", 4.0)):
        frame, gen = carried, torch.Generator().manual_seed(1)
        for _ in range(30):
            new = torch.rand(1, 3, 48, 48, generator=gen) * 2 - 1 + 0.5  # unrelated texture, brighter
            frame = blend(new, frame, w, power)
        finals[mode] = frame
    assert fine_energy(finals["linear"]) < 0.5 * start and fine_energy(finals["two_band"]) > 0.9 * start
    assert abs(finals["linear"].mean() - finals["two_band"].mean()) < 0.02  # the same colour came in

    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny_video.yaml"
    assert build_video_generator(load_config(tiny, ["model.blend=two_band"])).scales[0].blend_fine_power == 4
    G = build_video_generator(load_config(tiny, ["model.blend=two_band", "model.blend_fine_power=2",
                                                 "model.use_fg=false"]))
    assert G.scales[0].blend_fine_power == 2
    assert build_video_generator(load_config(tiny)).scales[0].blend_fine_power is None
    labels, prev = torch.rand(1, 3, G.scales[0].label_encoder[1].in_channels // 3, 32, 32), torch.rand(1, 2, 3, 32, 32)
    with torch.no_grad():  # the generator composes with it: its final frame is blend(raw, warped, w, 2)
        out = G.eval()(labels, prev)
    torch.testing.assert_close(out.final, blend(out.raw, out.warped, out.weight, 2.0))
    for bad in (["model.blend=two_band", "model.backbone=spade"], ["model.blend=two_band", "model.name=pix2pixhd"],
                ["model.blend=two_band", "model.blend_fine_power=0.5"]):
        with pytest.raises(ConfigError, match="model.blend"):
            load_config(tiny, bad)


def test_the_shown_gate_compares_what_the_previous_output_shows():
    """model.warp_gate shown: where frames t-1 and t have the same labels but the previous output still shows the
    region's old content (a lag the blend left), the labels gate passes the warped frame and the shown gate opens;
    the output carries what it shows (w * labels_t + (1 - w) * the previous shown map, warped), and the History
    hands it to the next step; with the labels gate nothing is carried."""
    from vid2vid.config import load_config
    from vid2vid.models.video import gated_weight, set_flow_options
    from vid2vid.temporal import start_history, step

    labels = _shifted_label_maps(0)  # [1,2,C+1,H,W]: frames t-1 = t
    lagging = _shifted_label_maps(8)[:, 1]  # what the output still shows: the region 8 px away
    zero, weight = torch.zeros(1, 2, 64, 96), torch.full((1, 1, 64, 96), 0.05)
    g = VideoGenerator(LABEL_NC + 1, 2, ngf=8, n_downsample=2, n_blocks=2, use_fg=False)
    set_flow_options(g, gate="labels", gate_window=5)
    torch.testing.assert_close(gated_weight(g.scales[0], weight, labels, zero, lagging), weight)
    set_flow_options(g, gate="shown")  # per pixel
    opened = gated_weight(g.scales[0], weight, labels, zero, lagging)
    differs = (lagging != labels[:, 1]).any(1, keepdim=True)
    assert differs.any() and opened[differs].min() > 0.999
    torch.testing.assert_close(opened[~differs], weight[~differs])

    g.eval()
    history = start_history("real", labels[:, :1], torch.rand(1, 1, 3, 64, 96))
    with torch.no_grad():
        first, history = step(g, history, labels[:, 1])  # no shown map yet: frame t-1's labels stand in
        assert history.shown is first.shown
        previous = backward_warp(labels[:, 0], first.flow, "bilinear")
        torch.testing.assert_close(first.shown, first.weight * labels[:, 1] + (1 - first.weight) * previous)
        second, history = step(g, history, lagging)
        torch.testing.assert_close(second.shown, second.weight * lagging + (1 - second.weight)
                                   * backward_warp(first.shown, second.flow, "bilinear"))
    set_flow_options(g, gate="labels", gate_window=5)
    with torch.no_grad():
        assert step(g, start_history("real", labels[:, :1], torch.rand(1, 1, 3, 64, 96)), labels[:, 1])[1].shown is None
    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny_video.yaml"
    assert build_video_generator(load_config(tiny, ["model.warp_gate=shown"])).scales[0].warp_gate_shown
    with pytest.raises(ConfigError, match="model.warp_gate"):
        load_config(tiny, ["model.warp_gate=shown", "model.n_scales_spatial=2"])


def test_binary_opening_removes_the_parts_narrower_than_its_square_and_keeps_the_rest_exactly():
    """binary_opening(mask, k): a part at least k px wide in both directions stays exactly (corners included, at the
    frame's border too), one narrower (a noisy pixel, a 1-px strip, a 2-px block against the border) goes; k 1 is
    the mask itself."""
    from vid2vid.models.video import binary_opening

    mask = torch.zeros(1, 1, 12, 12)
    mask[..., 1:5, 1:4] = 1  # 4 x 3 block
    mask[..., 8, 8] = 1  # one pixel
    mask[..., 6:12, 0] = 1  # a 1-px strip on the border
    mask[..., 10:12, 9:12] = 1  # 2 x 3 block in the corner
    assert torch.equal(binary_opening(mask, 1), mask)
    two = torch.zeros_like(mask)
    two[..., 1:5, 1:4] = 1
    two[..., 10:12, 9:12] = 1
    assert torch.equal(binary_opening(mask, 2), two)
    three = torch.zeros_like(mask)
    three[..., 1:5, 1:4] = 1
    assert torch.equal(binary_opening(mask, 3), three)
    assert not binary_opening(mask, 5).any()


def test_the_opened_gate_ignores_noisy_pixels_and_redraws_a_changed_region_whole():
    """model.warp_gate_opening k: the gate is 0 (re-draw) where the labels disagree in a part at least k px wide and
    1 elsewhere: 2 % of noisy pixels leave the warped frame whole everywhere (the plain per-pixel gate opens at each),
    a region moved 8 px is re-drawn whole, fine band included under blend two_band (final = raw there); a 1-px move
    is left alone by the labels gate, and the shown gate re-draws it once the output lags 2 px."""
    from vid2vid.config import load_config
    from vid2vid.models.video import label_agreement, set_flow_options

    labels = _shifted_label_maps(0)  # [1,2,C+1,H,W], frames t-1 = t
    flips = torch.rand(64, 96, generator=torch.Generator().manual_seed(1)) < 0.02
    noisy = labels[0, 1].argmax(0).masked_fill(flips, LABEL_NC - 1)
    labels[0, 1, :LABEL_NC] = torch.nn.functional.one_hot(noisy, LABEL_NC).permute(2, 0, 1).float()
    zero = torch.zeros(1, 2, 64, 96)
    assert label_agreement(labels, zero).min() == 0 and label_agreement(labels, zero, opening=2).min() == 1
    moved = _shifted_label_maps(8)
    opened = label_agreement(moved, zero, opening=2)
    differs = (moved[:, 0] != moved[:, 1]).any(1, keepdim=True)
    assert set(opened.unique().tolist()) == {0.0, 1.0} and torch.equal(opened == 0, differs)

    torch.manual_seed(0)
    g = VideoGenerator(LABEL_NC + 1, 2, ngf=8, n_downsample=2, n_blocks=2, use_fg=False, warp_features=False).eval()
    prev = torch.rand(1, 1, 3, 64, 96) * 2 - 1
    set_flow_options(g, blend="two_band", deadzone=100.0)  # the deadzone makes the flow zero
    head = g(moved, prev).weight
    set_flow_options(g, gate="labels", gate_opening=2, blend="two_band", deadzone=100.0)
    out = g(moved, prev)
    torch.testing.assert_close(out.weight, torch.where(differs, 1.0, head))
    torch.testing.assert_close(out.final[0][:, differs[0, 0]], out.raw[0][:, differs[0, 0]])

    one_px = _shifted_label_maps(1)
    assert label_agreement(one_px, zero, opening=2).min() == 1  # as noise: the labels gate lets it lag
    lagging = _shifted_label_maps(1)[:, 0]  # the output still shows frame t-1's content ...
    lagging = torch.roll(lagging, -1, dims=-1)  # ... and frame t is 1 px further on: it lags 2 px now
    frames = torch.stack([lagging, one_px[:, 1]], 1)
    redrawn = label_agreement(one_px, zero, shown=lagging, opening=2) == 0
    assert redrawn.any() and torch.equal(redrawn, label_agreement(frames, zero, opening=2) == 0)
    # the carried shown map stays one class per pixel (nearest warps; the current labels only where it re-drew),
    # where a bilinear one, moved by sub-pixel flows frame after frame, blurs below the gate's one-half threshold
    from vid2vid.temporal import start_history, step

    set_flow_options(g, prior="labels", gate="shown", gate_opening=2, blend="two_band")
    maps = torch.cat([_shifted_label_maps(s)[:, 1:] for s in range(0, 8, 2)], 1)  # [1,4,C+1,H,W]: 2 px a frame
    ids = maps[0, :, :LABEL_NC].argmax(1) % (LABEL_NC - 1)  # [4,H,W], without the last class ...
    ids[2:, 24:40, 40:56] = LABEL_NC - 1  # ... which from frame 2 on fills a square: new content
    maps[0, :, :LABEL_NC] = torch.nn.functional.one_hot(ids, LABEL_NC).permute(0, 3, 1, 2).float()
    history = start_history("real", maps[:, :1], torch.rand(1, 1, 3, 64, 96))
    with torch.no_grad():
        for t in range(1, 4):
            out, history = step(g, history, maps[:, t])
            assert out.flow.abs().max() > 0.5 and set(out.shown.unique().tolist()) <= {0.0, 1.0}
            redrawn = (out.weight >= 1).expand_as(out.shown)
            assert torch.equal(out.shown[redrawn], maps[:, t][redrawn])
            assert (out.weight[0, 0, 26:38, 42:54].min() == 1) == (t == 2)  # the new square, re-drawn once
    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny_video.yaml"
    cfg = load_config(tiny, ["model.warp_gate=shown", "model.warp_gate_opening=2"])
    assert build_video_generator(cfg).scales[0].warp_gate_opening == 2
    for bad in (["model.warp_gate_opening=2"], ["model.warp_gate=labels", "model.warp_gate_opening=-1"],
                ["model.warp_gate=labels", "model.warp_gate_window=5", "model.warp_gate_opening=2"]):
        with pytest.raises(ConfigError, match="model.warp_gate_opening"):
            load_config(tiny, bad)
    with pytest.raises(ValueError, match="warp_gate_opening"):
        set_flow_options(g, gate="labels", gate_opening=-1)

