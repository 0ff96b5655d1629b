"""The generator's per-frame input, on any device and batched: one-hot labels and instance boundaries, or a dense
condition drawn by the dataset (the face or pose input) taken as it is. semantic_channels says how many channels either
has."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vid2vid.data.face_input import FaceOptions
from vid2vid.data.pose_input import PoseOptions


def pose_options(pose) -> PoseOptions:
    """A data.pose config section -> the drawing's options (vid2vid.data.pose_input)."""
    return PoseOptions(remove_face_labels=pose.remove_face_labels, basic_point_only=pose.basic_point_only,
                       random_drop_prob=pose.random_drop_prob, openpose_only=pose.openpose_only)


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


def semantic_channels(data) -> int:
    """Channels of one frame's generator input for a data config section: the face input's (15, or 1 with
    data.face.no_dist_map, as the original counts them), the pose input's (DensePose 3 + OpenPose 3, or 3 with
    openpose_only, + 1 with data.pose.mask), or one-hot labels (+ SPADE's don't-care channel) + the
    instance-boundary channel."""
    if data.condition == "face":
        return FaceOptions(data.face.no_dist_map, data.face.no_canny_edge).channels
    if data.condition == "pose":
        return pose_options(data.pose).channels + (1 if data.pose.mask else 0)
    return data.label_nc + data.contain_dontcare_label + (1 if data.use_instance else 0)


def semantic_input(labels: torch.Tensor, inst: torch.Tensor | None, label_nc: int,
                   use_instance: bool, contain_dontcare_label: bool = False,
                   cond: torch.Tensor | None = None) -> torch.Tensor:
    """labels [...,H,W] (+ inst [...,H,W]) -> [...,label_nc(+1)(+1),H,W]: one-hot, then the boundary map.

    With contain_dontcare_label, id 255 becomes one more one-hot channel, label_nc (SPADE's rule).
    With use_instance and no instance map, the boundary channel is all zeros (same channel count).
    A dense condition cond [...,C,H,W] (the face input; labels are then its part labels) is the input as it is."""
    if cond is not None:
        return cond.float()
    if contain_dontcare_label:
        labels = torch.where(labels == DONTCARE_ID, label_nc, labels)
    semantics = one_hot(labels, label_nc + contain_dontcare_label)
    if not use_instance:
        return semantics
    edges = instance_edges(inst) if inst is not None else torch.zeros_like(semantics[..., :1, :, :])
    return torch.cat([semantics, edges], dim=-3)
