"""Backward warping, forward-backward occlusion and motion-boundary masks, padding helpers.

Flow convention (project-wide): flow [B,2,H,W] in pixels, channel 0 = x (u), channel 1 = y (v);
flow(x) maps pixel x of the current frame to x + flow(x) in the other frame. `backward_warp`
is the ONE warp of the project: it samples the other frame at x + flow(x), bilinearly, with
grid_sample(align_corners=True, padding_mode="border") on pixel coordinates.

Masks follow Lai et al. (ECCV 2018) / Ruder et al. as written in
shared/reference/temporal_metrics.md; every mask is bool [B,1,H,W].
"""

from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F

from flow.errors import FlowError

FB_ALPHA, FB_BETA = 0.01, 0.5  # |F + B~|^2 > alpha (|F|^2 + |B~|^2) + beta -> occluded
MB_ALPHA, MB_BETA = 0.01, 0.002  # |grad u|^2 + |grad v|^2 > alpha |F|^2 + beta -> motion boundary


@lru_cache(maxsize=16)
def pixel_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[1,2,H,W] pixel coordinates: channel 0 = x (column), channel 1 = y (row). Cached; do not modify."""
    with torch.inference_mode(False):  # a normal tensor, usable both with autograd and in inference mode
        ys = torch.arange(height, device=device, dtype=dtype)
        xs = torch.arange(width, device=device, dtype=dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([grid_x, grid_y])[None]


def _check_flow(flow: torch.Tensor, name: str = "flow") -> None:
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise FlowError(f"{name} must have shape [B,2,H,W], got {tuple(flow.shape)}")


def _sample_positions(flow: torch.Tensor) -> torch.Tensor:
    """flow [B,2,H,W] -> absolute positions x + flow(x) [B,2,H,W] in pixels (float32 or wider)."""
    flow = flow if flow.dtype in (torch.float32, torch.float64) else flow.float()
    return pixel_grid(flow.shape[2], flow.shape[3], flow.device, flow.dtype) + flow


WARP_MODES = ("bilinear", "bicubic", "nearest")


def backward_warp(image: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample image [B,C,H,W] at x + flow(x) (flow [B,2,H,W], pixels) -> [B,C,H,W].

    mode bilinear (the default, what the metrics and the reference use), bicubic (much less low-pass: a recurrence
    that warps its own output every frame stays sharper with it) or nearest (the pixel nearest x + flow(x), copied:
    warped any number of times a picture keeps its detail exactly, at the cost of whole-pixel positions; no
    gradient reaches the flow). Border clamp.
    Coordinates are computed in float32 even for half-precision images so that large frames keep
    sub-pixel accuracy; the result has the image's dtype.
    """
    _check_flow(flow)
    if mode not in WARP_MODES:
        raise FlowError(f"backward_warp: mode {mode!r} is not one of {', '.join(WARP_MODES)}")
    if image.ndim != 4 or image.shape[0] != flow.shape[0] or image.shape[2:] != flow.shape[2:]:
        raise FlowError(
            f"backward_warp: image {tuple(image.shape)} and flow {tuple(flow.shape)} must be "
            "[B,C,H,W] and [B,2,H,W] with the same B, H and W"
        )
    height, width = flow.shape[2:]
    pos = _sample_positions(flow)  # [B,2,H,W]
    # align_corners=True: -1 and +1 are the centres of the first and last pixel.
    scale = pos.new_tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)]).view(1, 2, 1, 1)
    grid = (pos * scale - 1.0).permute(0, 2, 3, 1)  # [B,H,W,2] (x, y)
    sample_dtype = pos.dtype
    warped = F.grid_sample(
        image.to(sample_dtype), grid, mode=mode, padding_mode="border", align_corners=True
    )
    return warped.to(image.dtype)


def _squared_norm(vectors: torch.Tensor) -> torch.Tensor:
    """[B,2,H,W] -> [B,1,H,W] x^2 + y^2 (the float32 value of vectors.square().sum(1), cheaper)."""
    return vectors[:, :1].square() + vectors[:, 1:].square()


def out_of_frame_mask(flow: torch.Tensor) -> torch.Tensor:
    """bool [B,1,H,W]: True where x + flow(x) leaves the frame (not 0 <= x+u <= W-1 and 0 <= y+v <= H-1)."""
    _check_flow(flow)
    height, width = flow.shape[2:]
    pos = _sample_positions(flow)
    x, y = pos[:, :1], pos[:, 1:]
    inside = (x >= 0) & (x <= width - 1)
    inside &= y >= 0
    inside &= y <= height - 1
    return inside.logical_not_()


def fb_occlusion_mask(
    flow_fw: torch.Tensor, flow_bw: torch.Tensor, *, flow_bw_warped: torch.Tensor | None = None
) -> torch.Tensor:
    """bool [B,1,H,W]: True where forward and backward flow disagree (occluded).

    flow_fw = F_t (frame t -> t+1), flow_bw = B_t (frame t+1 -> t). With B~ = warp(B_t, F_t):
    occluded where |F + B~|^2 > 0.01 (|F|^2 + |B~|^2) + 0.5. A caller that already warped B_t
    (e.g. together with an image, in one grid_sample) passes it as flow_bw_warped.
    """
    _check_flow(flow_fw, "flow_fw")
    _check_flow(flow_bw, "flow_bw")
    if flow_fw.shape != flow_bw.shape:
        raise FlowError(f"flow_fw {tuple(flow_fw.shape)} and flow_bw {tuple(flow_bw.shape)} differ in shape")
    fw = flow_fw.float()
    return _fb_occluded(fw, flow_bw.float(), _squared_norm(fw), flow_bw_warped)


def _fb_occluded(fw, bw, fw_norm, bw_warped=None) -> torch.Tensor:
    """fb_occlusion_mask for float flows fw, bw [B,2,H,W] and |fw|^2 [B,1,H,W]."""
    bw_warped = backward_warp(bw, fw) if bw_warped is None else bw_warped.float()
    magnitude = fw_norm + _squared_norm(bw_warped)
    return _squared_norm(fw + bw_warped) > magnitude.mul_(FB_ALPHA).add_(FB_BETA)


def motion_boundary_mask(flow: torch.Tensor) -> torch.Tensor:
    """bool [B,1,H,W]: True on motion boundaries, |grad u|^2 + |grad v|^2 > 0.01 |F|^2 + 0.002.

    Gradients are forward differences (zero in the last column / row).
    """
    _check_flow(flow)
    flow = flow.float()
    return _motion_boundary(flow, _squared_norm(flow))


def _motion_boundary(flow: torch.Tensor, flow_norm: torch.Tensor) -> torch.Tensor:
    """motion_boundary_mask for a float flow [B,2,H,W] and |flow|^2 [B,1,H,W]."""
    gradient = torch.zeros_like(flow)  # per channel dy^2 + dx^2 (a difference past the edge is 0)
    torch.sub(flow[:, :, 1:], flow[:, :, :-1], out=gradient[:, :, :-1]).square_()
    gradient[..., :-1] += (flow[..., 1:] - flow[..., :-1]).square_()
    return _squared_norm_sum(gradient) > flow_norm.mul(MB_ALPHA).add_(MB_BETA)


def _squared_norm_sum(per_channel: torch.Tensor) -> torch.Tensor:
    """[B,2,H,W] -> [B,1,H,W] sum of the two channels."""
    return per_channel[:, :1] + per_channel[:, 1:]


def valid_mask(
    flow_fw: torch.Tensor,
    flow_bw: torch.Tensor,
    *,
    mask_out_of_frame: bool = True,
    flow_bw_warped: torch.Tensor | None = None,
) -> torch.Tensor:
    """bool [B,1,H,W]: pixels of frame t whose flow to t+1 is trustworthy = not occluded (forward-
    backward check), not on a motion boundary and, by default, not leaving the frame."""
    _check_flow(flow_fw, "flow_fw")
    _check_flow(flow_bw, "flow_bw")
    if flow_fw.shape != flow_bw.shape:
        raise FlowError(f"flow_fw {tuple(flow_fw.shape)} and flow_bw {tuple(flow_bw.shape)} differ in shape")
    fw = flow_fw.float()
    fw_norm = _squared_norm(fw)  # shared by both tests
    invalid = _fb_occluded(fw, flow_bw.float(), fw_norm, flow_bw_warped)
    invalid |= _motion_boundary(fw, fw_norm)
    if mask_out_of_frame:
        invalid |= out_of_frame_mask(fw)
    return invalid.logical_not_()


class Padding(NamedTuple):
    """Pixels added on each side by `pad_image`; `crop` removes them."""

    left: int
    right: int
    top: int
    bottom: int


def padding_for(height: int, width: int, *, multiple: int = 8, min_size: tuple[int, int] = (0, 0)) -> Padding:
    """Padding that makes (H, W) multiples of `multiple` and at least `min_size` (h, w), split
    evenly between the two sides (the extra pixel, if any, goes right / bottom)."""
    if multiple < 1:
        raise FlowError(f"padding multiple must be >= 1, got {multiple}")
    target_h = -(-max(height, min_size[0]) // multiple) * multiple
    target_w = -(-max(width, min_size[1]) // multiple) * multiple
    pad_h, pad_w = target_h - height, target_w - width
    return Padding(pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)


def pad_image(
    x: torch.Tensor, *, multiple: int = 8, min_size: tuple[int, int] = (0, 0)
) -> tuple[torch.Tensor, Padding]:
    """Replicate-pad x [B,C,H,W] to a multiple of `multiple` and at least min_size -> (padded, padding)."""
    padding = padding_for(x.shape[-2], x.shape[-1], multiple=multiple, min_size=min_size)
    if not any(padding):
        return x, padding
    return F.pad(x, tuple(padding), mode="replicate"), padding


def crop(x: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Undo `pad_image` on x [..., H, W] (e.g. a flow estimated on padded images)."""
    height, width = x.shape[-2:]
    return x[..., padding.top : height - padding.bottom, padding.left : width - padding.right]
