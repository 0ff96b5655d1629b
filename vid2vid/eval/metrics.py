"""Temporal-consistency metrics with explicit definitions (shared/reference/temporal_metrics.md).

Warping error (Lai et al., ECCV 2018), for frames O_t in [0, 1] and flows on reference frames R_t:
    F_t = flow(R_t -> R_t+1), B_t = flow(R_t+1 -> R_t)
    M_t = not (fb-occluded or motion boundary [or out of frame])        (flow.warp.valid_mask)
    E_pair(t) = sum_x M_t(x) sum_c (warp(O_t+1, F_t)(x, c) - O_t(x, c))^2 / (3 sum_x M_t(x))
    (an empty M_t -> the mean over all pixels, and the pair is counted in `empty_mask_pairs`)
    E_video = mean over t of E_pair(t)      -- raw value, a per-channel mean squared error in [0, 1] units
    split by motion (motion_split_warping_error): the same squared errors over the valid pixels with |F_t| >= 0.5
    px ("moving") and the rest ("still"), pixel-weighted over all pairs

tOF (TecoGAN): mean_x |OF(b_t, b_t+1)(x) - OF(g_t, g_t+1)(x)| with OpenCV Farneback (TecoGAN's
parameters) on grey images, both flows centre-cropped (>= 8 px margin, sides multiples of 32).
"""

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch

from flow import ClassicFlow, backward_warp, get_estimator, grey_uint8, valid_mask
from vid2vid.errors import UserError

Estimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Frame = TypeVar("Frame")
Flows = TypeVar("Flows")


@dataclass
class WarpingError:
    """Per-pair warping errors of one video; `value` is E_video (raw, not scaled)."""

    per_pair: list[float] = field(default_factory=list)
    valid_fraction: list[float] = field(default_factory=list)  # share of pixels in M_t, per pair
    empty_mask_pairs: int = 0

    def add(self, errors: torch.Tensor, fractions: torch.Tensor, empty: torch.Tensor) -> None:
        """Append a batch of pairs: errors, fractions [B] float, empty [B] bool (from `pair_warping_errors`)."""
        self.per_pair += errors.tolist()
        self.valid_fraction += fractions.tolist()
        self.empty_mask_pairs += int(empty.sum())

    @property
    def pairs(self) -> int:
        return len(self.per_pair)

    @property
    def value(self) -> float:
        return float(np.mean(self.per_pair)) if self.per_pair else math.nan

    @property
    def mean_valid_fraction(self) -> float:
        return float(np.mean(self.valid_fraction)) if self.valid_fraction else math.nan


def to_unit_range(frames: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Frames with values in value_range (e.g. (-1, 1) from the trainer) -> float32 in [0, 1]."""
    low, high = value_range
    if not high > low:
        raise UserError(f"value_range must be (low, high) with high > low, got {value_range}")
    return (frames.float() - low) / (high - low)


def pair_warping_errors(
    frame_t: torch.Tensor,
    frame_next: torch.Tensor,
    flow_fw: torch.Tensor,
    flow_bw: torch.Tensor,
    *,
    mask_out_of_frame: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """E_pair for a batch of pairs. frame_t, frame_next [B,3,H,W] in [0, 1]; flow_fw = F_t,
    flow_bw = B_t [B,2,H,W] -> (errors [B] float64, valid fractions [B] float64, empty-mask [B] bool)."""
    squared, mask = pair_squared_errors(frame_t, frame_next, flow_fw, flow_bw, mask_out_of_frame=mask_out_of_frame)
    count = mask.sum((1, 2))
    masked_mean = torch.where(mask, squared, 0).sum((1, 2), dtype=torch.float64) / count.clamp(min=1)
    empty = count == 0
    errors = torch.where(empty, squared.sum((1, 2), dtype=torch.float64) / mask[0].numel(), masked_mean)
    return errors, count.double() / mask[0].numel(), empty


def pair_squared_errors(frame_t: torch.Tensor, frame_next: torch.Tensor, flow_fw: torch.Tensor,
                        flow_bw: torch.Tensor, *, mask_out_of_frame: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of pairs (as pair_warping_errors takes them) -> (per-pixel squared warping errors [B,H,W], the
    per-channel mean; the valid mask M_t [B,H,W] bool)."""
    warped = backward_warp(torch.cat([frame_next.float(), flow_bw.float()], 1), flow_fw)  # one sampling pass
    frame_warped, bw_warped = warped[:, :3], warped[:, 3:]  # [B,3,H,W], [B,2,H,W]
    squared = (frame_warped - frame_t.float()).square().mean(1)  # [B,H,W]
    mask = valid_mask(flow_fw, flow_bw, mask_out_of_frame=mask_out_of_frame, flow_bw_warped=bw_warped)[:, 0]
    return squared, mask


MOVING_PX = 0.5  # motion_split_warping_error: a pixel whose reference flow is at least this long moves


def motion_split_warping_error(frames: torch.Tensor, flows: tuple[torch.Tensor, torch.Tensor],
                               value_range: tuple[float, float] = (0, 1), threshold: float = MOVING_PX,
                               batch_pairs: int = 8) -> dict[str, float | None]:
    """The warping error of frames [T,3,H,W] on flows (fw, bw [T-1,2,H,W], as warping_error takes them) split by
    motion: over the valid pixels (M_t) whose F_t is at least `threshold` px long ("moving") and the rest
    ("still"), each the mean squared error over all those pixels of all pairs (pixel-weighted, so pairs where
    nothing moves do not count; None where there are no such pixels), + "moving_share": the moving pixels' share of
    the valid ones. A video that holds still what moves (a lag, a ghost, a smear) scores low on moving pixels; the
    reference video's own figure there says what showing the motion costs."""
    unit = to_unit_range(frames, value_range)
    fw_all, bw_all = (f.to(unit.device) for f in flows)

    def flows_for(first: int, run: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return fw_all[first:first + len(run) - 1], bw_all[first:first + len(run) - 1]

    sums, counts = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    for first, run, (fw, bw) in frame_pair_batches(range(len(unit)), batch_pairs, flows_for):
        stop = first + len(run) - 1
        squared, mask = pair_squared_errors(unit[first:stop], unit[first + 1:stop + 1], fw, bw)
        moving = fw.square().sum(1) >= threshold**2  # [B,H,W]
        for i, region in enumerate((mask & moving, mask & ~moving)):
            sums[i] += torch.where(region, squared, 0).sum(dtype=torch.float64)
            counts[i] += region.sum()
    moving, still = (float(sums[i] / counts[i]) if counts[i] else None for i in range(2))
    share = float(counts[0] / counts.sum()) if counts.sum() else None
    return {"moving": moving, "still": still, "moving_share": share}


def pair_flows(
    estimator: Estimator, frames: torch.Tensor, greys: list[np.ndarray] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """frames [N,3,H,W] in [-1, 1] -> (fw [N-1,2,H,W] = flow t -> t+1, bw [N-1,2,H,W] = flow t+1 -> t).

    OpenCV estimators convert each frame to grey once (or use `greys`, N grey uint8 images made by
    flow.classic's rule); other estimators get all 2(N-1) pairs as one batch."""
    if isinstance(estimator, ClassicFlow):
        greys = grey_uint8(frames) if greys is None else greys
        fw = [estimator.grey_flow(a, b) for a, b in zip(greys[:-1], greys[1:])]
        bw = [estimator.grey_flow(b, a) for a, b in zip(greys[:-1], greys[1:])]
        return _stack_flows(fw, frames.device), _stack_flows(bw, frames.device)
    first, second = frames[:-1], frames[1:]
    flows = estimator(torch.cat([first, second]), torch.cat([second, first]))
    return flows[: len(first)], flows[len(first) :]


def _stack_flows(flows: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """N flows [H,W,2] -> [N,2,H,W] float32 tensor."""
    return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).to(device)


def warping_error(
    frames: torch.Tensor,
    flows: tuple[torch.Tensor, torch.Tensor] | None = None,
    value_range: tuple[float, float] = (0, 1),
    *,
    reference: torch.Tensor | None = None,
    estimator: str | Estimator = "dis",
    mask_out_of_frame: bool = True,
    batch_pairs: int = 8,
) -> WarpingError:
    """Warping error of frames [T,3,H,W] (values in value_range; the metric is defined in [0, 1]).

    flows: (fw [T-1,2,H,W], bw [T-1,2,H,W]) in pixels (fw[t]: frame t -> t+1, bw[t]: t+1 -> t);
    when None they are computed by `estimator` (a name for flow.get_estimator, or a callable) on
    `reference` [T,3,H,W] (same value_range) if given, else on the frames themselves.
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise UserError(f"warping_error takes frames [T,3,H,W], got {tuple(frames.shape)}")
    unit = to_unit_range(frames, value_range)
    n_pairs = len(frames) - 1
    if flows is None:
        source = unit if reference is None else to_unit_range(reference, value_range)
        if source.shape != unit.shape:
            raise UserError(f"reference {tuple(source.shape)} and frames {tuple(unit.shape)} differ in shape")
        est = get_estimator(estimator) if isinstance(estimator, str) else estimator
    else:
        fw_all, bw_all = flows
        expected = (n_pairs, 2, *frames.shape[2:])
        if tuple(fw_all.shape) != expected or tuple(bw_all.shape) != expected:
            raise UserError(
                f"flows must be two [T-1,2,H,W] = {list(expected)} tensors, got "
                f"{list(fw_all.shape)} and {list(bw_all.shape)}"
            )

    def flows_for(first: int, run: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        stop = first + len(run) - 1
        if flows is None:
            return pair_flows(est, source[first : stop + 1] * 2 - 1)
        return fw_all[first:stop].to(unit.device), bw_all[first:stop].to(unit.device)

    result = WarpingError()
    for first, run, (fw, bw) in frame_pair_batches(range(len(frames)), batch_pairs, flows_for):
        stop = first + len(run) - 1
        result.add(*pair_warping_errors(
            unit[first:stop], unit[first + 1 : stop + 1], fw, bw, mask_out_of_frame=mask_out_of_frame
        ))
    return result


def frame_pair_batches(
    frames: Iterable[Frame],
    batch: int,
    flows: Callable[[int, list[Frame]], Flows],
    *,
    prefetch: bool = False,
) -> Iterator[tuple[int, list[Frame], Flows]]:
    """Consecutive frame pairs in batches, with their flows: the one loop of `warping_error` and
    tools/eval_flicker.py. Yields (first, run, flows(first, run)): run = K+1 consecutive frames (1 <= K <= batch
    pairs, pair `first` is run[0] -> run[1]); each run starts with the last frame of the previous one.
    With prefetch, flows of the next run are computed in a worker thread while the caller uses this one."""
    runs = _runs(iter(frames), batch)
    if not prefetch:
        for first, run in runs:
            yield first, run, flows(first, run)
        return
    with ThreadPoolExecutor(max_workers=1) as worker:
        pending = None
        for first, run in runs:
            job = (first, run, worker.submit(flows, first, run))
            if pending is not None:
                yield pending[0], pending[1], pending[2].result()
            pending = job
        if pending is not None:
            yield pending[0], pending[1], pending[2].result()


def _runs(frames: Iterator[Frame], batch: int) -> Iterator[tuple[int, list[Frame]]]:
    """(index of the run's first pair, batch + 1 consecutive frames sharing the first with the last run)."""
    first, run = 0, list(itertools.islice(frames, batch + 1))
    while len(run) >= 2:
        yield first, run
        first += len(run) - 1
        run = [run[-1], *itertools.islice(frames, batch)]


def tecogan_crop(height: int, width: int) -> tuple[slice, slice]:
    """TecoGAN's centre crop: each side the largest multiple of 32 that leaves >= 8 px margin per side
    (falls back to the whole side when it is under 48 px)."""

    def side(n: int) -> slice:
        size = (n - 16) // 32 * 32
        if size <= 0:
            return slice(0, n)
        start = (n - size) // 2
        return slice(start, start + size)

    return side(height), side(width)


_FARNEBACK = ClassicFlow("farneback")  # TecoGAN's parameters


def farneback_flow(grey1: np.ndarray, grey2: np.ndarray) -> np.ndarray:
    """OpenCV Farneback with TecoGAN's parameters, grey uint8 [H,W] x 2 -> [H,W,2] float32."""
    return _FARNEBACK.grey_flow(grey1, grey2)


def tof_pair(reference_flow: np.ndarray, output_flow: np.ndarray) -> float:
    """tOF of one pair: mean Euclidean distance of the two centre-cropped Farneback flows [H,W,2]."""
    rows, cols = tecogan_crop(*reference_flow.shape[:2])
    difference = reference_flow[rows, cols] - output_flow[rows, cols]
    return float(np.sqrt(np.square(difference).sum(-1)).mean())


def tof_summary(per_pair: list[float]) -> float:
    """TecoGAN's reported tOF: the mean over pairs, skipping 2 at each end when more than 4 remain."""
    values = per_pair[2:-2] if len(per_pair) > 4 else per_pair
    return float(np.mean(values)) if values else math.nan


def temporal_flow_error(
    frames: torch.Tensor, reference: torch.Tensor, value_range: tuple[float, float] = (0, 1)
) -> list[float]:
    """Per-pair tOF of frames [T,3,H,W] against ground-truth reference [T,3,H,W] (both in value_range)."""
    if frames.shape != reference.shape:
        shapes = f"{tuple(frames.shape)} vs {tuple(reference.shape)}"
        raise UserError(f"tOF needs frames and reference of one shape: {shapes}")
    ref_grey, out_grey = (grey_uint8(to_unit_range(x, value_range) * 2 - 1) for x in (reference, frames))
    return [
        tof_pair(farneback_flow(ref_grey[t], ref_grey[t + 1]), farneback_flow(out_grey[t], out_grey[t + 1]))
        for t in range(len(frames) - 1)
    ]


def psnr(frames: torch.Tensor, reference: torch.Tensor, value_range: tuple[float, float] = (0, 1)) -> float:
    """Peak signal-to-noise ratio in dB of frames against reference (same shape, values in value_range),
    over all their pixels, with the peak and errors measured in [0, 1]: 10 log10(1 / MSE)."""
    if frames.shape != reference.shape:
        raise UserError(f"psnr: frames {tuple(frames.shape)} and reference {tuple(reference.shape)} differ in shape")
    mse = (to_unit_range(frames.float(), value_range) - to_unit_range(reference.float(), value_range)).pow(2).mean()
    return float(10 * torch.log10(1 / mse.clamp_min(1e-12)))


def mean_abs_error(frames: torch.Tensor, reference: torch.Tensor, value_range: tuple[float, float] = (0, 1)) -> float:
    """Mean absolute difference of frames and reference (same shape, values in value_range) over all their
    pixels and channels, measured in [0, 1] (the L1 of pix2pixHD-style reports)."""
    if frames.shape != reference.shape:
        raise UserError(f"mean_abs_error: frames {tuple(frames.shape)} and reference {tuple(reference.shape)} "
                        "differ in shape")
    return float((to_unit_range(frames.float(), value_range) - to_unit_range(reference.float(), value_range))
                 .abs().mean())
