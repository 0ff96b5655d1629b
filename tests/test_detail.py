"""vid2vid.eval.detail: the two detail figures (definition pinned to OpenCV, blur / noise / real detail separated on
frames made here) and E_warp at matched detail (the sigma found by bisection, blur explaining a raw advantage)."""

import cv2
import numpy as np
import pytest
import torch

from vid2vid.errors import UserError
from vid2vid.eval.detail import (
    blur_to_detail,
    blur_video,
    gaussian_blur,
    hf_energy,
    matched_warping_error,
    measure_detail,
)


def scene(t: int = 4, h: int = 48, w: int = 80, seed: int = 0) -> torch.Tensor:
    """[T,3,H,W] in [0, 1]: rectangles (edges) over a fine texture (blurred noise), different per frame."""
    gen = torch.Generator().manual_seed(seed)
    texture = gaussian_blur(torch.rand(t, 3, h, w, generator=gen), 0.7)
    base = torch.full((t, 3, h, w), 0.3)
    base[:, :, 8:30, 10:40] = 0.8
    base[:, 1, 20:44, 50:70] = 0.1
    return (0.6 * base + 0.4 * texture).clamp(0, 1)


def test_hf_energy_is_mean_abs_luma_minus_opencv_gaussian():
    frames = scene()
    rgb = (frames.permute(0, 2, 3, 1).numpy() * 255).astype(np.float64)
    y = rgb @ np.array([0.299, 0.587, 0.114])
    blurred = np.stack([cv2.GaussianBlur(f, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT_101) for f in y])
    assert hf_energy(frames) == pytest.approx(np.abs(y - blurred).mean(), rel=1e-5)
    assert hf_energy(frames, skip=2) == pytest.approx(np.abs(y - blurred)[2:].mean(), rel=1e-5)


def test_value_ranges_and_array_layouts_agree():
    frames = scene()
    as_uint8 = (frames * 255).round().to(torch.uint8)
    reference = measure_detail(as_uint8, as_uint8.flip(0), (0, 255))
    layouts = [measure_detail(as_uint8.permute(0, 2, 3, 1).numpy(), as_uint8.flip(0).permute(0, 2, 3, 1).numpy(),
                              (0, 255)),
               measure_detail(as_uint8.float() / 127.5 - 1, as_uint8.flip(0).float() / 127.5 - 1, (-1, 1))]
    for other in layouts:
        assert other.detail == pytest.approx(reference.detail, rel=1e-5)
        assert other.detail_aligned == pytest.approx(reference.detail_aligned, rel=1e-5, abs=1e-6)


def test_blur_noise_and_real_detail_are_told_apart():
    """Real frames -> 1 and 1; blurred -> both < 1; noisy -> detail > 1 but aligned stays 1; blurred + noisy ->
    detail raised well above the blurred frames', aligned still as low: noise does not buy aligned detail."""
    real = scene()
    noise = torch.randn(real.shape, generator=torch.Generator().manual_seed(1)) * 8 / 255
    blurred = gaussian_blur(real, 1.0)
    same = measure_detail(real, real)
    assert same.detail == pytest.approx(1) and same.detail_aligned == pytest.approx(1)
    soft = measure_detail(blurred, real)
    assert soft.detail < 0.7 and soft.detail_aligned < 0.7
    noisy = measure_detail(real + noise, real)
    assert noisy.detail > 1.1 and abs(noisy.detail_aligned - 1) < 0.03
    both = measure_detail(blurred + noise, real)
    assert both.detail > soft.detail + 0.25 and abs(both.detail_aligned - soft.detail_aligned) < 0.03
    assert measure_detail(real * 1.2 - 0.1, real).detail_aligned == pytest.approx(1.2)  # more contrast: more


def test_skipped_frames_do_not_count():
    real = scene()
    video = real.clone()
    video[:2] = 0.5  # the seed frames: flat
    assert measure_detail(video, real, skip=2).detail == pytest.approx(1)
    assert measure_detail(video, real).detail < 0.6


def test_bad_inputs_name_the_value():
    real = scene()
    with pytest.raises(UserError, match="skip 4 leaves no frame of 4"):
        measure_detail(real, real, skip=4)
    with pytest.raises(UserError, match="differ in shape"):
        measure_detail(real[:, :, :40], real)
    with pytest.raises(UserError, match="too small"):
        hf_energy(real[:, :, :4, :4])
    with pytest.raises(UserError, match="flat frames"):
        measure_detail(real, torch.full_like(real, 0.5))


def test_bisection_finds_the_blur_that_made_the_target():
    sharp = scene()
    target = hf_energy(gaussian_blur(sharp, 1.2))
    sigma, blurred = blur_to_detail(sharp, target, quantize=False)
    assert sigma == pytest.approx(1.2, abs=0.01) and hf_energy(blurred) == pytest.approx(target, rel=2e-3)
    sigma, blurred = blur_to_detail(sharp, target)  # 8-bit rounding: a little energy added back
    assert sigma == pytest.approx(1.2, abs=0.1) and hf_energy(blurred) == pytest.approx(target, rel=2e-3)
    assert torch.equal(blurred * 255, (blurred * 255).round())
    assert blur_to_detail(sharp, hf_energy(sharp) * 2)[0] == 0  # already below: unchanged
    with pytest.raises(UserError, match="too low to reach"):
        blur_to_detail(sharp, 1e-6)


def test_blur_explains_a_raw_advantage_and_matching_removes_it():
    """a: a static scene whose texture flickers; b: a blurred copy of a. Raw, b flickers far less; at matched
    detail a is blurred to b's detail and the two flicker alike."""
    t = 6
    still = scene(t=1).expand(t, -1, -1, -1)
    flicker = torch.randn(still.shape, generator=torch.Generator().manual_seed(2)) * 6 / 255
    a = blur_video((still + flicker).clamp(0, 1), 0.0)  # 8-bit
    b = blur_video(a, 1.3)
    zero = torch.zeros(t - 1, 2, *a.shape[2:])
    m = matched_warping_error(a, b, still, (zero, zero))
    assert m.blurred == "a" and m.sigma == pytest.approx(1.3, abs=0.15)
    assert m.matched_detail == pytest.approx(m.detail_b, rel=2e-3)
    assert m.ratio > 3 and m.matched_ratio == pytest.approx(1, abs=0.1)
    swapped = matched_warping_error(b, a, still, (zero, zero), skip=2)
    assert swapped.blurred == "b" and swapped.matched_ratio == pytest.approx(1, abs=0.1)
    assert set(m.as_dict()) >= {"ratio", "matched_ratio", "sigma", "matched_e_warp_a"}
