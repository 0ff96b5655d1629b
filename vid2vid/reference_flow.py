"""Reference flow between the REAL frames of a clip and its confidence (vid2vid's flow and warp losses,
the temporal discriminators' flow input). Computed once per clip, without gradients.

    ref = build_reference_flow("dis", weights=None, corr="all_pairs", iters=12, device="cpu")
    flow, confidence = ref(frames, flow_bw=clip.get("flow_bw"))   # frames [B,T,3,H,W] in [-1, 1]

flow[:, t] maps the pixels of frame t+1 into frame t: backward_warp(frames[:, t], flow[:, t]) gives
frame t+1. It is the flow the generator predicts at step t+1 (frame t+1 -> frame t), the same
convention as the dataset's flow_bw. confidence[:, t] is 1 where that warp reproduces frame t+1:
||frames[:, t+1] - warp(frames[:, t], flow[:, t])||^2 summed over RGB < 0.02 (on [-1, 1]), else 0.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from flow import FlowError, backward_warp, get_estimator
from vid2vid.errors import ConfigError

METHODS = ("gt", "dis", "farneback", "raft_small", "raft_large")
RAFT_METHODS = ("raft_small", "raft_large")
CONFIDENCE_THRESHOLD = 0.02  # squared RGB error summed over channels, images in [-1, 1]

Estimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ReferenceFlow = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def warp_sequence(images: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """backward_warp over any leading dims: images [..., C, H, W], flows [..., 2, H, W] -> [..., C, H, W]."""
    lead = images.shape[:-3]
    flat = backward_warp(images.reshape(-1, *images.shape[-3:]), flows.reshape(-1, *flows.shape[-3:]))
    return flat.reshape(*lead, *flat.shape[-3:])


def flow_confidence(frames: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """frames [B,T,3,H,W], flow [B,T-1,2,H,W] (frame t+1 -> t) -> confidence [B,T-1,1,H,W] in {0, 1}."""
    warped = warp_sequence(frames[:, :-1], flow)  # [B,T-1,3,H,W]: frame t brought to frame t+1's place
    error = (frames[:, 1:] - warped).square().sum(dim=2, keepdim=True)  # [B,T-1,1,H,W]
    return (error < CONFIDENCE_THRESHOLD).to(frames.dtype)


def estimate_flow(frames: torch.Tensor, estimator: Estimator) -> torch.Tensor:
    """frames [B,T,3,H,W] -> flow [B,T-1,2,H,W], flow[:, t] = estimator(frame t+1, frame t), one pair per call
    batch (B pairs), so RAFT's memory stays that of one time step."""
    pairs = [estimator(frames[:, t + 1], frames[:, t]) for t in range(frames.shape[1] - 1)]
    return torch.stack(pairs, dim=1).to(device=frames.device, dtype=frames.dtype)


def _gt_flow(frames: torch.Tensor, flow_bw: torch.Tensor | None, flow_folder: str | None) -> torch.Tensor:
    if flow_bw is None:
        folder = flow_folder or "<root>/<phase>_flow"
        raise ConfigError(
            f"flow.model: gt needs {folder}/<sequence>/bw_*.flo (the dataset's exact flow), but this clip has no "
            "flow; use flow.model=dis (or farneback, raft_small, raft_large) to estimate it from the frames"
        )
    batch, time = frames.shape[:2]
    want = (batch, time - 1, 2, *frames.shape[-2:])
    if tuple(flow_bw.shape) != want:
        raise ValueError(f"flow_bw has shape {tuple(flow_bw.shape)}; frames {tuple(frames.shape)} need {want}")
    return flow_bw.to(device=frames.device, dtype=frames.dtype)


def reference_flow(frames: torch.Tensor, method: str, *, flow_bw: torch.Tensor | None = None,
                   estimator: Estimator | None = None, flow_folder: str | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """frames [B,T,3,H,W] in [-1, 1] -> (flow [B,T-1,2,H,W], confidence [B,T-1,1,H,W]), no gradients.

    method "gt" takes the clip's flow_bw [B,T-1,2,H,W] (ConfigError naming flow_folder when it is None);
    any other method needs `estimator(img1, img2) -> flow img1 -> img2` (flow.get_estimator)."""
    if frames.ndim != 5 or frames.shape[2] != 3:
        raise ValueError(f"reference_flow takes frames [B,T,3,H,W], got {tuple(frames.shape)}")
    with torch.no_grad():
        if method == "gt":
            flow = _gt_flow(frames, flow_bw, flow_folder)
        elif estimator is None:
            raise ValueError(f"reference_flow: method {method!r} needs an estimator (see build_reference_flow)")
        else:
            flow = estimate_flow(frames, estimator)
        return flow, flow_confidence(frames, flow)


def build_estimator(method: str, weights: str | None = None, corr: str = "all_pairs", iters: int = 12,
                    device: str | torch.device = "cpu") -> Estimator | None:
    """The flow estimator of flow.model (None for gt). Flow-package errors become ConfigErrors naming the key."""
    if method not in METHODS:
        raise ConfigError(f"flow.model: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "gt":
        return None
    try:
        if method in RAFT_METHODS:
            return get_estimator(method, weights=weights, iters=iters, device=device, corr=corr)
        return get_estimator(method)  # OpenCV, CPU; flow.weights does not apply
    except FlowError as e:
        raise ConfigError(f"flow.model={method} (flow.weights={weights}): {e}; or set flow.model=dis "
                          "(OpenCV, needs no weights)") from None


def build_reference_flow(method: str, weights: str | None = None, corr: str = "all_pairs", iters: int = 12,
                         device: str | torch.device = "cpu", *, flow_folder: str | None = None) -> ReferenceFlow:
    """`fn(frames [B,T,3,H,W], flow_bw=None) -> (flow [B,T-1,2,H,W], confidence [B,T-1,1,H,W])` for
    flow.model / flow.weights / flow.corr / flow.iters; the estimator (RAFT weights) is loaded once, here."""
    estimator = build_estimator(method, weights, corr, iters, device)
    return partial(reference_flow, method=method, estimator=estimator, flow_folder=flow_folder)

