"""How much detail a video keeps, against the real frames: two figures, exactly defined.

Luma: Y = 0.299 R + 0.587 G + 0.114 B on the 0..255 scale (BT.601, OpenCV's RGB2GRAY weights), in floating
point, not rounded. High-pass: h = Y - G(Y), G a Gaussian of sigma 1.5 px, separable, 11 taps (radius
ceil(3 sigma) = 5, weights exp(-x^2 / (2 sigma^2)) normalised to sum 1), border reflect-101 (OpenCV's default:
cv2.GaussianBlur(Y, (11, 11), 1.5)). Only frames t >= skip count (skip: the video model's n_frames_G - 1 seed
frames, made by the per-frame model); the real frames are measured on the same frames.

    hf_energy(V)   = mean over measured frames and pixels of |h_V|                  (luma units, 0..255)
    detail(V)      = hf_energy(V) / hf_energy(real)                                 (real frames: 1)
    aligned(V)     = sum h_V h_real / sum h_real^2   (sums over measured frames and pixels; real frames: 1)

detail counts every high frequency, so noise raises it above 1 and blur lowers it. aligned is the least-squares
gain of the video's high-pass onto the real frames' in place: the share of the real frames' fine structure the
video reproduces where it is. Blur lowers it (a blur scales every high frequency by its transfer function,
< 1), noise independent of the real frames leaves it unchanged on average, and detail that is invented or
misplaced scores 0 there (a GAN's plausible but different texture counts as missing). Read both: detail near 1
with aligned far below it is texture of the video's own; both low is blur.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from einops import rearrange

from vid2vid.errors import UserError
from vid2vid.eval.metrics import warping_error

SIGMA = 1.5  # the high-pass Gaussian, px
LUMA = (0.299, 0.587, 0.114)  # BT.601 weights on R, G, B
CHUNK = 8  # frames per step (bounds memory on long or large videos)

DEFINITIONS = {
    "luma": "Y = 0.299 R + 0.587 G + 0.114 B, 0..255 scale, floating point (not rounded)",
    "highpass": "h = Y - Gaussian(Y), sigma 1.5 px, 11 taps (radius ceil(3 sigma)), border reflect-101 "
    "(= cv2.GaussianBlur(Y, (11, 11), 1.5))",
    "hf_energy": "mean |h| over the measured frames (t >= skip) and all pixels, luma units 0..255",
    "detail": "hf_energy(video) / hf_energy(real frames), on the same frames",
    "detail_aligned": "sum h_video * h_real / sum h_real^2 over the measured frames and pixels: the in-place "
    "least-squares gain of the video's high-pass on the real one (noise does not raise it; blur lowers it)",
}


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """1-D Gaussian taps [2r+1] float64, r = ceil(3 sigma), normalised to sum 1; sigma 0 -> [1]."""
    if not sigma >= 0 or not math.isfinite(sigma):
        raise UserError(f"Gaussian sigma must be a finite number >= 0, got {sigma}")
    radius = math.ceil(3 * sigma)
    if radius == 0:
        return torch.ones(1, dtype=torch.float64)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-x.square() / (2 * sigma**2))
    return taps / taps.sum()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """images [N,C,H,W] float -> the same blurred by a separable Gaussian (gaussian_kernel), border reflect-101
    (OpenCV's sepFilter2D on the CPU: many times faster than a depthwise conv2d here; float32)."""
    taps = gaussian_kernel(sigma).numpy().astype(np.float32)
    radius = len(taps) // 2
    if radius == 0:
        return images.float().clone()
    n, c, h, w = images.shape
    if min(h, w) <= radius:
        raise UserError(f"frames of {h}x{w} are too small for a Gaussian of sigma {sigma} (radius {radius} px); "
                        f"both sides must exceed {radius}")
    flat = rearrange(images.detach().float().cpu(), "n c h w -> (n c) h w").numpy()
    out = np.stack([cv2.sepFilter2D(plane, -1, taps, taps, borderType=cv2.BORDER_REFLECT_101) for plane in flat])
    return rearrange(torch.from_numpy(out), "(n c) h w -> n c h w", n=n, c=c).to(images.device)


def as_frames(frames: torch.Tensor | np.ndarray, value_range: tuple[float, float]) -> torch.Tensor:
    """frames [T,3,H,W] tensor, or a uint8/float array [T,H,W,3] (what video readers give) -> float32
    [T,3,H,W] on the 0..1 scale (value_range says what the input's low and high are)."""
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise UserError(f"frames as an array must be [T,H,W,3], got {frames.shape}")
        frames = rearrange(torch.from_numpy(np.ascontiguousarray(frames)), "t h w c -> t c h w")
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise UserError(f"frames must be [T,3,H,W] RGB, got {tuple(frames.shape)}")
    low, high = value_range
    if not high > low:
        raise UserError(f"value_range must be (low, high) with high > low, got {value_range}")
    return (frames.float() - low) / (high - low)


def luma(unit: torch.Tensor) -> torch.Tensor:
    """RGB [T,3,H,W] on the 0..1 scale -> Y [T,1,H,W] on the 0..255 scale (BT.601 weights)."""
    weights = unit.new_tensor(LUMA).view(1, 3, 1, 1) * 255
    return (unit * weights).sum(1, keepdim=True)


def highpass(y: torch.Tensor) -> torch.Tensor:
    """Y [T,1,H,W] -> Y - Gaussian(Y, sigma 1.5) [T,1,H,W]."""
    return y - gaussian_blur(y, SIGMA)


def _measured(frames: torch.Tensor, skip: int, what: str) -> torch.Tensor:
    if skip < 0 or skip >= len(frames):
        raise UserError(f"{what}: skip {skip} leaves no frame of {len(frames)}; skip must be 0..{len(frames) - 1} "
                        "(the video model's n_frames_G - 1 seed frames, or 0)")
    return frames[skip:]


def hf_energy(frames: torch.Tensor | np.ndarray, value_range: tuple[float, float] = (0, 1), skip: int = 0) -> float:
    """mean |Y - Gaussian(Y, 1.5)| over frames t >= skip and all pixels, luma 0..255 (frames: as_frames)."""
    unit = _measured(as_frames(frames, value_range), skip, "hf_energy")
    total = sum(float(highpass(luma(unit[i:i + CHUNK])).abs().sum(dtype=torch.float64))
                for i in range(0, len(unit), CHUNK))
    return total / unit[:, 0].numel()


@dataclass(frozen=True)
class Detail:
    """The detail figures of one video against its real frames (module docstring)."""

    hf_energy: float  # the video's mean |h|, luma 0..255
    real_hf_energy: float  # the real frames', same frames
    detail: float  # hf_energy / real_hf_energy
    detail_aligned: float  # sum h h_real / sum h_real^2
    frames: int  # frames measured

    def as_dict(self) -> dict:
        return asdict(self)


def measure_detail(frames: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray,
                   value_range: tuple[float, float] = (0, 1), skip: int = 0) -> Detail:
    """Both detail figures of frames against real (same shape, same value_range; [T,3,H,W] tensors or
    [T,H,W,3] arrays) over frames t >= skip."""
    video, truth = as_frames(frames, value_range), as_frames(real, value_range)
    if video.shape != truth.shape:
        raise UserError(f"detail: frames {tuple(video.shape)} and real frames {tuple(truth.shape)} differ in shape; "
                        "measure a video against the real frames of the same sequence, at the same size")
    video, truth = _measured(video, skip, "detail"), _measured(truth, skip, "detail")
    sums = torch.zeros(4, dtype=torch.float64)  # sum |h|, sum |h_real|, sum h h_real, sum h_real^2
    for i in range(0, len(video), CHUNK):
        h, r = highpass(luma(video[i:i + CHUNK])).double(), highpass(luma(truth[i:i + CHUNK])).double()
        sums += torch.stack([h.abs().sum(), r.abs().sum(), (h * r).sum(), r.square().sum()])
    count = video[:, 0].numel()
    mine, theirs, cross, power = sums.tolist()
    if power <= 1e-9 * count:
        raise UserError("detail: the real frames have no high-frequency content at all (flat frames); the detail "
                        "ratio needs real frames with structure")
    return Detail(mine / count, theirs / count, mine / theirs, cross / power, len(video))


# ------------------------------------------------------------------------------------------------
# E_warp at matched detail
# ------------------------------------------------------------------------------------------------


def blur_video(unit: torch.Tensor, sigma: float, quantize: bool = True) -> torch.Tensor:
    """frames [T,3,H,W] on the 0..1 scale -> Gaussian-blurred (gaussian_kernel(sigma), per channel, reflect-101),
    rounded to 8 bits when quantize (as a video written to disk: the models' own videos are 8-bit too)."""
    out = torch.cat([gaussian_blur(unit[i:i + CHUNK], sigma) for i in range(0, len(unit), CHUNK)])
    return (out * 255).round().clamp(0, 255) / 255 if quantize else out


def blur_to_detail(unit: torch.Tensor, target_hf: float, *, quantize: bool = True, tolerance: float = 1e-3,
                   max_sigma: float = 16.0) -> tuple[float, torch.Tensor]:
    """The Gaussian sigma (px) at which hf_energy(blur_video(unit, sigma)) meets target_hf, found by bisection
    (hf_energy falls as sigma grows), and the blurred frames: (sigma, [T,3,H,W] 0..1). Frames already at or below
    the target come back unblurred with sigma 0. Bisection stops when the bracket is under 0.001 px or the figure
    is within `tolerance` (relative) of the target; of the bracket's ends the one closer to the target is kept."""
    def attempt(sigma: float) -> tuple[float, float, torch.Tensor]:
        frames = blur_video(unit, sigma, quantize) if sigma > 0 else unit
        return sigma, hf_energy(frames), frames

    low = attempt(0.0)
    if low[1] <= target_hf:
        return 0.0, unit
    limit = min(max_sigma, (min(unit.shape[2:]) - 1) // 3)  # a wider Gaussian needs a larger frame
    high = attempt(min(1.0, limit))
    while high[1] > target_hf:  # widen the bracket
        if high[0] >= limit:
            raise UserError(f"blur_to_detail: even a Gaussian of sigma {high[0]:g} px leaves high-frequency energy "
                            f"{high[1]:.4g} above the target {target_hf:.4g}; the target is too low to reach")
        low, high = high, attempt(min(high[0] * 2, limit))
    while high[0] - low[0] > 1e-3:
        best = min(low, high, key=lambda a: abs(a[1] - target_hf))
        if abs(best[1] - target_hf) <= tolerance * target_hf:
            break
        mid = attempt((low[0] + high[0]) / 2)
        low, high = (mid, high) if mid[1] > target_hf else (low, mid)
    best = min(low, high, key=lambda a: abs(a[1] - target_hf))
    return best[0], best[2]


@dataclass(frozen=True)
class Matched:
    """E_warp of two videos a and b, raw and at matched detail (the sharper one blurred to the other's)."""

    blurred: str  # "a", "b", or "" when both already have the same detail
    sigma: float  # the Gaussian applied to the blurred one, px
    detail_a: float  # hf_energy ratio to the real frames, before matching
    detail_b: float
    matched_detail: float  # the blurred one's detail after matching (the other's is unchanged)
    e_warp_a: float  # raw
    e_warp_b: float
    matched_e_warp_a: float
    matched_e_warp_b: float

    @property
    def ratio(self) -> float:
        """E_warp(a) / E_warp(b), raw."""
        return self.e_warp_a / self.e_warp_b

    @property
    def matched_ratio(self) -> float:
        """E_warp(a) / E_warp(b) at matched detail."""
        return self.matched_e_warp_a / self.matched_e_warp_b

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "matched_ratio": self.matched_ratio}


def matched_warping_error(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray,
                          real: torch.Tensor | np.ndarray, flows: tuple[torch.Tensor, torch.Tensor],
                          value_range: tuple[float, float] = (0, 1), skip: int = 0,
                          quantize: bool = True) -> Matched:
    """E_warp of videos a and b (frames as measure_detail takes them) on the same flows (fw, bw [T-1,2,H,W]:
    metrics.warping_error's, e.g. a dataset's exact flow) over the frames t >= skip, raw and after bringing the
    sharper video (higher hf_energy) down to the other's detail with blur_to_detail."""
    videos = [_measured(as_frames(v, value_range), skip, "matched E_warp") for v in (a, b)]
    truth = _measured(as_frames(real, value_range), skip, "matched E_warp")
    if not videos[0].shape == videos[1].shape == truth.shape:
        shapes = ", ".join(str(tuple(v.shape)) for v in (*videos, truth))
        raise UserError(f"matched E_warp: videos and real frames must share one shape, got {shapes}")
    pairs = (flows[0][skip:], flows[1][skip:])  # pair t >= skip: frame t -> t+1
    energies = [hf_energy(v) for v in videos]
    real_hf = hf_energy(truth)
    raw = [warping_error(v, pairs).value for v in videos]
    sharper = int(energies[1] > energies[0])
    sigma, blurred = blur_to_detail(videos[sharper], energies[1 - sharper], quantize=quantize)
    matched = list(raw)
    matched[sharper] = warping_error(blurred, pairs).value if sigma > 0 else raw[sharper]
    return Matched("ab"[sharper] if sigma > 0 else "", sigma, energies[0] / real_hf, energies[1] / real_hf,
                   hf_energy(blurred) / real_hf, raw[0], raw[1], matched[0], matched[1])


def detail_record(frames: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray,
                  value_range: tuple[float, float], skip: int = 0) -> dict[str, float | None]:
    """measure_detail(...).as_dict(), or the same keys with None where the figures are undefined (frames of 5 px
    or less a side, flat real frames): for reports and logs that must go on without them."""
    try:
        return measure_detail(frames, real, value_range, skip).as_dict()
    except UserError:
        return dict.fromkeys(Detail.__dataclass_fields__)


def val_detail(frames: torch.Tensor, real: torch.Tensor, value_range: tuple[float, float], skip: int = 0
               ) -> dict[str, float]:
    """The video trainer's sample-step figures {"val/detail", "val/detail_aligned"} of frames [T,3,H,W] against
    real; {} where they are undefined (detail_record): a sample never stops training."""
    d = detail_record(frames.detach().float().cpu(), real.detach().float().cpu(), value_range, skip)
    return {} if d["detail"] is None else {"val/detail": d["detail"], "val/detail_aligned": d["detail_aligned"]}
