"""`get_estimator(name)`: one interface for every flow method of the project.

    est = get_estimator("dis")                       # or raft_small | raft_large | farneback | dis_fast ...
    flow = est(img1, img2)                           # [B,3,H,W] in [-1, 1] -> [B,2,H,W] float32 pixels

The flow maps pixel x of img1 to x + flow(x) in img2 (channel 0 = x, channel 1 = y).
"""

from collections.abc import Callable

import torch

from flow.classic import DIS_PRESETS, ClassicFlow
from flow.errors import FlowError

RAFT_NAMES = ("raft_small", "raft_large")
CLASSIC_NAMES = ("dis", *(f"dis_{p}" for p in DIS_PRESETS), "farneback")
ESTIMATOR_NAMES = (*RAFT_NAMES, *CLASSIC_NAMES)


class RaftFlow:
    """A RAFT model as an estimator: runs `iters` refinement iterations under inference mode on
    `device`, returns float32 flow on the images' device."""

    def __init__(
        self, model: torch.nn.Module, *, name: str = "raft", iters: int = 12, device: str | torch.device = "cpu"
    ):
        self.model = model.to(device).eval()
        self.iters = iters
        self.device = torch.device(device)
        self.name = name

    def __call__(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        if img1.shape != img2.shape or img1.ndim != 4 or img1.shape[1] != 3:
            raise FlowError(
                f"RAFT takes two RGB batches [B,3,H,W] in [-1, 1] of the same shape, got "
                f"{tuple(img1.shape)} and {tuple(img2.shape)}"
            )
        with torch.inference_mode():
            flow = self.model(img1.to(self.device).float(), img2.to(self.device).float(), iters=self.iters)
        return flow.float().to(img1.device)


def get_estimator(
    name: str, *, weights: str | None = None, iters: int = 12, device: str | torch.device = "cpu",
    corr: str = "all_pairs",
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Flow estimator by name: raft_small | raft_large (weights from `weights`, a torchvision- or
    original-format checkpoint, or torchvision's files in the torch hub cache when None; correlation
    `corr`: all_pairs | on_demand) |
    dis (= dis_medium) | dis_fast | dis_ultrafast | farneback (OpenCV, CPU; no weights)."""
    if name in RAFT_NAMES:
        if iters < 1:
            raise FlowError(f"iters must be >= 1 for {name}, got {iters}")
        return RaftFlow(_load_raft(name, weights, corr), name=name, iters=iters, device=device)
    if weights is not None:
        raise FlowError(f"--weights {weights} was given but {name!r} takes no weights (only {RAFT_NAMES} do)")
    if name == "farneback":
        return ClassicFlow("farneback")
    if name == "dis":
        return ClassicFlow("dis", preset="medium")
    if name.startswith("dis_") and name.removeprefix("dis_") in DIS_PRESETS:
        return ClassicFlow("dis", preset=name.removeprefix("dis_"))
    raise FlowError(f"unknown flow estimator {name!r}; choose one of {', '.join(ESTIMATOR_NAMES)}")


def _load_raft(name: str, weights: str | None, corr: str = "all_pairs") -> torch.nn.Module:
    """Load RAFT through flow.weights.load_raft (imported here so classic estimators never import the
    network); the file must hold the asked-for model."""
    from flow.weights import load_raft

    return load_raft(weights, model=name, corr=corr)
