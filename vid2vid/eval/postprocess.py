"""Temporal post-processing of any video: the flow-guided recursive filter (the simplest member of the "blind
video temporal consistency" family, Lai et al. 2018), the baseline a video model must beat at equal detail.

    out_0 = frame_0
    out_t = w * frame_t + (1 - w) * warp(out_{t-1}, flow(frame_t -> frame_{t-1}))

w: the current frame's weight (0.3 by default; 1 returns the input). The flow is estimated between consecutive
INPUT frames (OpenCV DIS medium by default, on grey images as flow.classic makes them) and the warp is
flow.backward_warp (bilinear, border clamp): the previous output is sampled where each pixel of frame t was in
frame t-1. No occlusion handling: newly uncovered pixels blend with whatever the border-clamped warp brings.

    from vid2vid.eval.postprocess import recursive_filter
    smooth = recursive_filter(frames, 0.3)                  # frames [T,3,H,W] in [0, 1]
    filt = RecursiveFilter(0.3); out = [filt.step(f) for f in stream]   # one frame [3,H,W] at a time
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from flow import ClassicFlow, backward_warp, get_estimator, grey_uint8
from vid2vid.errors import UserError

Estimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # img1, img2 [B,3,H,W] in [-1, 1] -> [B,2,H,W]
DEFAULT_WEIGHT = 0.3


class RecursiveFilter:
    """The recursive filter on a stream of frames [3,H,W] in value_range (module docstring); reset() between
    videos."""

    def __init__(self, current_weight: float = DEFAULT_WEIGHT, *, estimator: str | Estimator = "dis",
                 value_range: tuple[float, float] = (0, 1)):
        if not 0 < current_weight <= 1:
            raise UserError(f"recursive filter: current_weight {current_weight} must be in (0, 1] (the share of "
                            f"the current frame in each output, e.g. {DEFAULT_WEIGHT}; 1 leaves the video unchanged)")
        low, high = value_range
        if not high > low:
            raise UserError(f"recursive filter: value_range must be (low, high) with high > low, got {value_range}")
        self.weight, self.range = current_weight, (float(low), float(high))
        self.estimator = get_estimator(estimator) if isinstance(estimator, str) else estimator
        self.reset()

    def reset(self) -> None:
        self.previous_input: torch.Tensor | None = None  # [1,3,H,W] in [-1, 1], for the flow
        self.previous_output: torch.Tensor | None = None  # [1,3,H,W] in value_range

    def step(self, frame: torch.Tensor) -> torch.Tensor:
        """frame [3,H,W] in value_range -> the filtered frame [3,H,W] (float32, value_range)."""
        if frame.ndim != 3 or frame.shape[0] != 3:
            raise UserError(f"recursive filter: a frame must be [3,H,W] RGB, got {tuple(frame.shape)}")
        low, high = self.range
        current = frame.float()[None]  # [1,3,H,W]
        signed = (current - low) / (high - low) * 2 - 1  # [1,3,H,W] in [-1, 1], the estimators' input
        if self.previous_output is None:
            out = current
        else:
            if self.previous_output.shape != current.shape:
                raise UserError(f"recursive filter: frame size {tuple(frame.shape[1:])} differs from the previous "
                                f"frame's {tuple(self.previous_output.shape[2:])}; call reset() between videos")
            flow = self._flow(signed, self.previous_input)  # [1,2,H,W]: frame t -> t-1
            warped = backward_warp(self.previous_output, flow)  # out_{t-1} moved into frame t's place
            out = self.weight * current + (1 - self.weight) * warped
        self.previous_input, self.previous_output = signed, out
        return out[0]

    def _flow(self, image: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        if isinstance(self.estimator, ClassicFlow):
            grey, grey_other = grey_uint8(torch.cat([image, other]))
            flow = torch.from_numpy(self.estimator.grey_flow(grey, grey_other))  # [H,W,2]
            return flow.permute(2, 0, 1)[None].to(image.device)
        return self.estimator(image, other).float()


def recursive_filter(frames: torch.Tensor, current_weight: float = DEFAULT_WEIGHT, *,
                     estimator: str | Estimator = "dis", value_range: tuple[float, float] = (0, 1)) -> torch.Tensor:
    """frames [T,3,H,W] in value_range -> the recursively filtered video [T,3,H,W] (float32, value_range)."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise UserError(f"recursive_filter takes frames [T,3,H,W], got {tuple(frames.shape)}")
    filt = RecursiveFilter(current_weight, estimator=estimator, value_range=value_range)
    with torch.no_grad():
        return torch.stack([filt.step(frame) for frame in frames])
