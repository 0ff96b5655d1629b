"""Semantic input encoding, on any device and batched: one-hot labels and instance boundaries."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def one_hot(labels: torch.Tensor, label_nc: int) -> torch.Tensor:
    """labels [...,H,W] int64 ids in [0, label_nc) -> float32 [...,label_nc,H,W]."""
    out = F.one_hot(labels.long(), label_nc)  # [...,H,W,L]
    return out.movedim(-1, -3).float()


def instance_edges(inst: torch.Tensor) -> torch.Tensor:
    """inst [...,H,W] ids -> float32 [...,1,H,W]: 1 where a 4-neighbour has another id, else 0."""
    edge = torch.zeros_like(inst, dtype=torch.bool)
    dx = inst[..., :, 1:] != inst[..., :, :-1]  # [...,H,W-1]
    dy = inst[..., 1:, :] != inst[..., :-1, :]  # [...,H-1,W]
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    return edge.unsqueeze(-3).float()


DONTCARE_ID = 255  # SPADE's "don't care" label id (COCO-Stuff, ADE20K)


def semantic_input(labels: torch.Tensor, inst: torch.Tensor | None, label_nc: int,
                   use_instance: bool, contain_dontcare_label: bool = False) -> torch.Tensor:
    """labels [...,H,W] (+ inst [...,H,W]) -> [...,label_nc(+1)(+1),H,W]: one-hot, then the boundary map.

    With contain_dontcare_label, id 255 becomes one more one-hot channel, label_nc (SPADE's rule).
    With use_instance and no instance map, the boundary channel is all zeros (same channel count)."""
    if contain_dontcare_label:
        labels = torch.where(labels == DONTCARE_ID, label_nc, labels)
    semantics = one_hot(labels, label_nc + contain_dontcare_label)
    if not use_instance:
        return semantics
    edges = instance_edges(inst) if inst is not None else torch.zeros_like(semantics[..., :1, :, :])
    return torch.cat([semantics, edges], dim=-3)
