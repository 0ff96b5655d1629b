"""Optical flow as colour (the Middlebury colour wheel of Baker et al., "A Database and
Evaluation Methodology for Optical Flow"): hue = direction, saturation = magnitude."""

import numpy as np
import torch

from flow.errors import FlowError

# Number of hues between the six primary / secondary colours of the wheel.
_SEGMENTS = ((15, (255, 0, 0), (255, 255, 0)),  # red -> yellow
             (6, (255, 255, 0), (0, 255, 0)),  # yellow -> green
             (4, (0, 255, 0), (0, 255, 255)),  # green -> cyan
             (11, (0, 255, 255), (0, 0, 255)),  # cyan -> blue
             (13, (0, 0, 255), (255, 0, 255)),  # blue -> magenta
             (6, (255, 0, 255), (255, 0, 0)))  # magenta -> red


def colour_wheel() -> np.ndarray:
    """[55,3] float RGB in [0, 1]: the Middlebury wheel, starting at red and going through yellow."""
    rows = []
    for steps, start, end in _SEGMENTS:
        t = np.arange(steps)[:, None] / steps
        rows.append((1 - t) * np.array(start) + t * np.array(end))
    return np.concatenate(rows) / 255.0


def flow_to_rgb(flow: np.ndarray | torch.Tensor, max_flow: float | None = None) -> np.ndarray:
    """flow [H,W,2] (NumPy) or [2,H,W] (torch), pixels -> uint8 RGB [H,W,3].

    Magnitudes are divided by `max_flow` (default: the largest finite magnitude in this flow);
    white = no motion, saturated colour = max_flow; beyond it colours are darkened. Non-finite
    flow is drawn black.
    """
    if isinstance(flow, torch.Tensor):
        if flow.ndim != 3 or flow.shape[0] != 2:
            raise FlowError(f"flow_to_rgb: a torch flow must be [2,H,W], got {tuple(flow.shape)}")
        flow = flow.detach().float().cpu().permute(1, 2, 0).numpy()
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise FlowError(f"flow_to_rgb: a NumPy flow must be [H,W,2], got {flow.shape}")
    finite = np.isfinite(flow).all(axis=2)
    u, v = np.where(finite, flow[..., 0], 0.0), np.where(finite, flow[..., 1], 0.0)
    radius = np.hypot(u, v)
    if max_flow is None:
        max_flow = float(radius.max()) if radius.size else 0.0
    radius = radius / max(max_flow, 1e-9)

    wheel = colour_wheel()
    n = len(wheel)
    position = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (n - 1)  # angle in [0, n-1]
    k0 = np.floor(position).astype(int)
    k1 = (k0 + 1) % n
    frac = (position - k0)[..., None]
    colour = (1 - frac) * wheel[k0] + frac * wheel[k1]  # [H,W,3]
    r = radius[..., None]
    colour = np.where(r <= 1, 1 - r * (1 - colour), colour * 0.75)
    colour = np.where(finite[..., None], colour, 0.0)
    return np.round(255 * colour).astype(np.uint8)
