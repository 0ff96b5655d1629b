"""flow.warp: the project's backward warp, occlusion / boundary / out-of-frame masks, padding."""

import pytest
import torch

from flow.errors import FlowError
from flow.warp import (
    backward_warp,
    crop,
    fb_occlusion_mask,
    motion_boundary_mask,
    out_of_frame_mask,
    pad_image,
    padding_for,
    valid_mask,
)


def texture(b=1, c=3, h=24, w=32, seed=0):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def constant_flow(u, v, b=1, h=24, w=32):
    flow = torch.empty(b, 2, h, w)
    flow[:, 0], flow[:, 1] = u, v
    return flow


# Coordinates are normalised for grid_sample in float32, so "exact" means within float32 rounding (1e-5).


def test_zero_flow_is_identity():
    image = texture(b=2)
    torch.testing.assert_close(backward_warp(image, torch.zeros(2, 2, 24, 32)), image, rtol=0, atol=1e-5)


def test_integer_shift_moves_pixels_exactly_and_clamps_at_the_border():
    image = texture()
    warped = backward_warp(image, constant_flow(3, -2))
    # output(x, y) = image(x + 3, y - 2)
    torch.testing.assert_close(warped[..., 2:, :-3], image[..., :-2, 3:], rtol=0, atol=1e-5)
    torch.testing.assert_close(warped[..., 0, :-3], image[..., 0, 3:], rtol=0, atol=1e-5)  # clamped row
    torch.testing.assert_close(warped[..., 5, -1], image[..., 3, -1], rtol=0, atol=1e-5)  # clamped column


def test_sign_convention_on_a_translated_texture():
    """Frame 2 = frame 1 moved right by 4 px: flow 1->2 is +4 in x, and warping frame 2 by it gives frame 1."""
    base = texture(h=20, w=40)
    frame1, frame2 = base[..., 4:36], base[..., 0:32]  # content at column c of frame1 is at c+4 in frame2
    inner = (..., slice(None), slice(0, 28))
    correct = backward_warp(frame2, constant_flow(4, 0, h=20))
    wrong = backward_warp(frame2, constant_flow(-4, 0, h=20))
    torch.testing.assert_close(correct[inner], frame1[inner], rtol=0, atol=1e-5)
    assert (wrong[inner] - frame1[inner]).abs().mean() > 0.1


def test_sub_pixel_warp_is_bilinear():
    image = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 3, 5).contiguous()
    warped = backward_warp(image, constant_flow(0.25, 0, h=3, w=5))
    torch.testing.assert_close(warped[0, 0, 1, :4], torch.tensor([0.25, 1.25, 2.25, 3.25]))


def test_half_precision_image_keeps_its_dtype():
    image = texture().half()
    warped = backward_warp(image, constant_flow(1.5, 0.5))
    assert warped.dtype == torch.float16
    reference = backward_warp(image.float(), constant_flow(1.5, 0.5))
    torch.testing.assert_close(warped.float(), reference, rtol=0, atol=2e-3)


def test_occlusion_mask_empty_for_consistent_flows_and_flags_an_inconsistent_patch():
    fw, bw = constant_flow(2.5, -1.0, b=2), constant_flow(-2.5, 1.0, b=2)
    assert not fb_occlusion_mask(fw, bw).any()
    assert not motion_boundary_mask(fw).any()
    bw[1, :, 10:16, 10:18] = torch.tensor([6.0, 5.0]).view(2, 1, 1)  # inconsistent patch in frame t+1
    occluded = fb_occlusion_mask(fw, bw)
    assert not occluded[0].any()
    # pixels x of frame t whose target x + (2.5, -1) falls in the patch (bilinear blending widens it by 1)
    assert occluded[1, 0, 12:16, 8:15].all()
    assert occluded[1].sum() < 8 * 10
    assert not occluded[1, 0, :9].any() and not occluded[1, 0, :, :6].any()


def test_motion_boundary_marks_flow_edges_with_forward_differences():
    flow = torch.zeros(1, 2, 8, 8)
    flow[:, 0, :, 4:] = 3.0  # u jumps between columns 3 and 4
    boundary = motion_boundary_mask(flow)[0, 0]
    assert boundary[:, 3].all() and boundary.sum() == 8


def test_out_of_frame_mask_follows_the_pixel_range():
    flow = constant_flow(2.0, 0.0, h=4, w=6)
    mask = out_of_frame_mask(flow)[0, 0]
    assert mask[:, 4:].all() and not mask[:, :4].any()  # x + 2 <= 5 is inside for x <= 3
    mask = out_of_frame_mask(constant_flow(0.0, -0.5, h=4, w=6))[0, 0]
    assert mask[0].all() and not mask[1:].any()
    assert not valid_mask(flow, -flow)[0, 0, :, 4:].any()
    assert valid_mask(flow, -flow, mask_out_of_frame=False).all()


def test_tiny_and_odd_inputs_give_finite_results():
    for h, w in [(1, 1), (1, 7), (5, 1), (3, 5)]:
        image, flow = texture(h=h, w=w), torch.randn(1, 2, h, w)
        assert torch.isfinite(backward_warp(image, flow)).all()
        assert valid_mask(flow, -flow).shape == (1, 1, h, w)
    torch.testing.assert_close(backward_warp(texture(h=1, w=1), torch.zeros(1, 2, 1, 1)), texture(h=1, w=1))


def test_warp_is_differentiable_in_image_and_flow():
    image, flow = texture().requires_grad_(), (torch.rand(1, 2, 24, 32) * 3).requires_grad_()
    backward_warp(image, flow).sum().backward()
    assert image.grad.abs().sum() > 0 and flow.grad.abs().sum() > 0


def test_padding_to_multiple_and_minimum_size_round_trips():
    assert padding_for(16, 24) == (0, 0, 0, 0)
    assert padding_for(13, 21) == (1, 2, 1, 2)
    assert padding_for(10, 100, multiple=8, min_size=(128, 128)) == (14, 14, 59, 59)
    x = texture(h=13, w=21)
    padded, padding = pad_image(x)
    assert padded.shape[-2:] == (16, 24)
    torch.testing.assert_close(padded[..., 0, :], padded[..., 1, :])  # replicate
    torch.testing.assert_close(crop(padded, padding), x)
    same, none = pad_image(texture(h=16, w=24))
    assert crop(same, none).shape == (1, 3, 16, 24)


def test_shape_errors_are_flow_errors():
    with pytest.raises(FlowError, match=r"\[B,2,H,W\]"):
        backward_warp(texture(), torch.zeros(1, 3, 24, 32))
    with pytest.raises(FlowError, match="same B, H and W"):
        backward_warp(texture(), torch.zeros(1, 2, 24, 30))


def test_bicubic_warp_is_exact_for_integer_shifts_and_sharper_for_sub_pixel_ones():
    """Both modes move an image by whole pixels exactly; over 20 sub-pixel warps of its own output (what the
    video generator does every frame) bilinear blurs much more than bicubic."""
    from flow import backward_warp

    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 24, 24, generator=g)
    shift = torch.tensor([2.0, -1.0]).view(1, 2, 1, 1).expand(1, 2, 24, 24)
    for mode in ("bilinear", "bicubic"):
        moved = backward_warp(image, shift, mode)
        torch.testing.assert_close(moved[..., 1:-2, :-2], image[..., 0:-3, 2:], atol=1e-5, rtol=0)
    there = torch.tensor([0.3, 0.0]).view(1, 2, 1, 1).expand(1, 2, 24, 24)
    back = -there
    detail = {}
    for mode in ("bilinear", "bicubic"):
        x = image
        for _ in range(10):
            x = backward_warp(backward_warp(x, there, mode), back, mode)
        detail[mode] = (x[..., 4:-4, 4:-4] - x[..., 4:-4, 4:-4].mean()).std()
    assert detail["bicubic"] > 1.5 * detail["bilinear"]
    with pytest.raises(FlowError, match="mode 'area'"):
        backward_warp(image, shift, "area")


def test_nearest_warp_copies_the_nearest_pixel_and_keeps_detail_over_any_number_of_warps():
    """nearest: the pixel at round(x + flow) copied bit for bit; 20 warps of its own output by +-0.3 px (a still
    camera's flow noise) leave the picture exactly as it was, where bicubic has lost detail."""
    image = texture(h=24, w=24)
    for (u, v), (dx, dy) in (((0.3, -0.2), (0, 0)), ((0.7, -1.4), (1, -1)), ((2.0, 1.0), (2, 1))):
        moved = backward_warp(image, constant_flow(u, v, h=24, w=24), "nearest")
        assert torch.equal(moved[..., 2:-2, 2:-2], image[..., 2 + dy: 22 + dy, 2 + dx: 22 + dx])
    there, back = constant_flow(0.3, 0.0, h=24, w=24), constant_flow(-0.3, 0.0, h=24, w=24)
    x = {mode: image for mode in ("nearest", "bicubic")}
    for _ in range(10):
        x = {mode: backward_warp(backward_warp(y, there, mode), back, mode) for mode, y in x.items()}
    assert torch.equal(x["nearest"], image) and not torch.allclose(x["bicubic"], image, atol=1e-2)


def test_masks_equal_the_formulas_written_out_bit_for_bit():
    """valid_mask's shared |F|^2 and two-channel sums give exactly the booleans of the written-out rule,
    on random flows with many pixels near each threshold (metrics must not move between versions)."""
    g = torch.Generator().manual_seed(5)
    smooth = torch.nn.functional.interpolate(torch.randn(3, 2, 3, 4, generator=g), size=(40, 56), mode="bicubic")
    fw = smooth * 6 + torch.randn(3, 2, 40, 56, generator=g) * 0.02
    bw = -backward_warp(fw, -fw) + torch.randn(3, 2, 40, 56, generator=g) * 0.4  # roughly consistent
    bw_warped = backward_warp(bw, fw)
    mismatch = (fw + bw_warped).square().sum(1, keepdim=True)
    occluded = mismatch > 0.01 * (fw.square().sum(1, keepdim=True) + bw_warped.square().sum(1, keepdim=True)) + 0.5
    dx = torch.nn.functional.pad(fw[..., 1:] - fw[..., :-1], (0, 1, 0, 0))
    dy = torch.nn.functional.pad(fw[..., 1:, :] - fw[..., :-1, :], (0, 0, 0, 1))
    boundary = (dx.square() + dy.square()).sum(1, keepdim=True) > 0.01 * fw.square().sum(1, keepdim=True) + 0.002
    x = torch.arange(56.0) + fw[:, :1]
    y = torch.arange(40.0)[:, None] + fw[:, 1:]
    outside = ~((x >= 0) & (x <= 55) & (y >= 0) & (y <= 39))
    assert 0.05 < occluded.float().mean() < 0.95 and 0.05 < boundary.float().mean() < 0.95
    assert torch.equal(fb_occlusion_mask(fw, bw), occluded)
    assert torch.equal(motion_boundary_mask(fw), boundary)
    assert torch.equal(out_of_frame_mask(fw), outside)
    assert torch.equal(valid_mask(fw, bw), ~(occluded | boundary | outside))
    channels_last = fw.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # OpenCV flows' layout
    assert torch.equal(valid_mask(channels_last, bw, flow_bw_warped=bw_warped), ~(occluded | boundary | outside))
