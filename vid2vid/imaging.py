"""Small image helpers shared by training, rendering and evaluation: tensor <-> uint8 frames and the fixed
colour of each label id. Below everything that draws a frame (it imports torch, numpy and einops only)."""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """frames [B,3,H,W] in [-1,1] -> uint8 [B,H,W,3] (the trainer's and compare_models' rounding)."""
    scaled = (frames.float() * 0.5 + 0.5).clamp(0, 1) * 255 + 0.5
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [H,W,3] -> [1,3,H,W] in [-1,1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def label_colours(labels: torch.Tensor, n: int) -> torch.Tensor:
    """labels [N,H,W] int -> [N,3,H,W] in [-1,1] with a fixed pseudo-random colour per id."""
    g = torch.Generator().manual_seed(12345)
    palette = torch.rand(max(n, int(labels.max()) + 1), 3, generator=g) * 2 - 1
    return rearrange(palette.to(labels.device)[labels.long()], "n h w c -> n c h w")


def label_palette(label_nc: int) -> np.ndarray:
    """uint8 [label_nc,3]: the trainer's fixed pseudo-random colour per id (label_colours)."""
    return to_uint8(label_colours(torch.arange(label_nc)[None, None], label_nc))[0, 0]  # [1,3,1,L] -> [L,3]
