"""Correlation for RAFT: the all-pairs pyramid of the paper and an on-demand lookup.

Both take the two 1/8-resolution feature maps and answer `lookup(coords)`: for every pixel p
of image 1 and every pyramid level l, the correlation <f1(p), f2_l(q)> / sqrt(C) sampled
bilinearly (align_corners=True, zeros outside) at the (2r+1)^2 points
q = coords(p) / 2^l + (dx, dy), dx, dy in [-r, r]. Output channel = l*(2r+1)^2 + i*(2r+1) + j
for the offset (dx_i, dy_j): the x offset varies slowest (as RAFT and torchvision order it).

- `AllPairsCorr` builds the full volume [B*H*W, 1, H, W] and pools it over the second image's
  dims (memory 4*(HW)^2 bytes at level 0).
- `OnDemandCorr` never builds it. Pooling the correlation over image 2 equals correlating with
  pooled features of image 2, so it keeps a feature pyramid of image 2 and, per lookup, gathers
  the (2r+2)^2 integer positions around each window (all window points share one fractional part)
  in chunks of pixels, takes the dot products with a batched matmul and combines them with the
  shared bilinear weights. Peak extra memory is one chunk, O(chunk * (2r+2)^2 * C).

Everything here runs in float32, also under autocast: correlation and coordinates need it.
"""

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from flow.errors import FlowError

CORR_MODES = ("all_pairs", "on_demand")
_ON_DEMAND_CHUNK_BYTES = 4 * 2**20  # gathered features per chunk: bounded memory, few ops per pixel


def _check_pyramid_size(fmap: torch.Tensor, num_levels: int) -> None:
    smallest = 2 * 2 ** (num_levels - 1)  # the coarsest level needs >= 2 pixels per side
    if min(fmap.shape[-2:]) < smallest:
        raise FlowError(
            f"feature maps {tuple(fmap.shape[-2:])} are too small for a {num_levels}-level correlation "
            f"pyramid: each side must be >= {smallest} (images >= {8 * smallest} px; RAFT pads smaller ones)"
        )


def _window_offsets(radius: int, device: torch.device) -> torch.Tensor:
    """[(2r+1)^2, 2] offsets (dx, dy) with dx varying slowest."""
    span = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    dx, dy = torch.meshgrid(span, span, indexing="ij")
    return torch.stack([dx, dy], dim=-1).reshape(-1, 2)


class AllPairsCorr:
    """The full correlation pyramid, built once per image pair."""

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor, *, num_levels: int, radius: int):
        _check_pyramid_size(fmap1, num_levels)
        self.radius = radius
        with torch.autocast(fmap1.device.type, enabled=False):
            fmap1, fmap2 = fmap1.float(), fmap2.float()
            batch, channels, height, width = fmap1.shape
            f1 = rearrange(fmap1, "b c h w -> b (h w) c") * (1.0 / math.sqrt(channels))
            f2 = rearrange(fmap2, "b c h w -> b c (h w)")
            volume = torch.bmm(f1, f2).view(batch * height * width, 1, height, width)  # [BHW,1,H,W]
            self.pyramid = [volume]
            for _ in range(num_levels - 1):
                volume = F.avg_pool2d(volume, 2, stride=2)
                self.pyramid.append(volume)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """coords [B,2,H,W] (x, y at level 0) -> correlation features [B, L*(2r+1)^2, H, W]."""
        with torch.autocast(coords.device.type, enabled=False):
            batch, _, height, width = coords.shape
            side = 2 * self.radius + 1
            offsets = _window_offsets(self.radius, coords.device).view(1, side, side, 2)
            centres = rearrange(coords.float(), "b c h w -> (b h w) 1 1 c")
            levels = []
            for level, volume in enumerate(self.pyramid):
                points = centres / 2**level + offsets  # [BHW, side, side, 2] pixels of this level
                h_l, w_l = volume.shape[-2:]
                scale = points.new_tensor([2.0 / (w_l - 1), 2.0 / (h_l - 1)])
                sampled = F.grid_sample(volume, points * scale - 1.0, mode="bilinear", align_corners=True)
                levels.append(sampled.view(batch, height, width, side * side))
            return rearrange(torch.cat(levels, dim=-1), "b h w k -> b k h w").contiguous()


class OnDemandCorr:
    """Correlation computed at lookup time from a feature pyramid of image 2 (no volume)."""

    def __init__(
        self,
        fmap1: torch.Tensor,
        fmap2: torch.Tensor,
        *,
        num_levels: int,
        radius: int,
        chunk_bytes: int = _ON_DEMAND_CHUNK_BYTES,
    ):
        _check_pyramid_size(fmap1, num_levels)
        self.radius = radius
        self.chunk_bytes = chunk_bytes
        with torch.autocast(fmap1.device.type, enabled=False):
            fmap1, fmap2 = fmap1.float(), fmap2.float()
            channels = fmap1.shape[1]
            self.f1 = rearrange(fmap1, "b c h w -> (b h w) c") * (1.0 / math.sqrt(channels))  # [BHW, C]
            # All levels' features of image 2 as rows of one table [sum_l B*H_l*W_l + 1, C]; the last
            # row is zero and is what out-of-frame positions read.
            tables, sizes = [], []
            for level in range(num_levels):
                if level > 0:
                    fmap2 = F.avg_pool2d(fmap2, 2, stride=2)
                tables.append(rearrange(fmap2, "b c h w -> (b h w) c"))
                sizes.append(fmap2.shape[-2:])
            self.table = torch.cat([*tables, fmap2.new_zeros(1, channels)])
            device = fmap1.device
            self.level_h = torch.tensor([h for h, _ in sizes], device=device)  # [L]
            self.level_w = torch.tensor([w for _, w in sizes], device=device)  # [L]
            starts = [0]
            for table in tables[:-1]:
                starts.append(starts[-1] + table.shape[0])
            self.level_start = torch.tensor(starts, device=device)  # [L]
            self.level_scale = torch.tensor([0.5**level for level in range(num_levels)], device=device)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """coords [B,2,H,W] (x, y at level 0) -> correlation features [B, L*(2r+1)^2, H, W]."""
        with torch.autocast(coords.device.type, enabled=False):
            batch, _, height, width = coords.shape
            centres = rearrange(coords.float(), "b c h w -> (b h w) c")
            batch_index = torch.arange(centres.shape[0], device=coords.device) // (height * width)
            k = 2 * self.radius + 2
            per_pixel = len(self.level_h) * k * k * self.table.shape[1] * 4  # bytes gathered per pixel
            chunk = max(1, self.chunk_bytes // per_pixel)
            features = torch.cat([
                self._lookup_chunk(centres[s : s + chunk], self.f1[s : s + chunk], batch_index[s : s + chunk])
                for s in range(0, centres.shape[0], chunk)
            ])  # [BHW, L*(2r+1)^2]
            return rearrange(features, "(b h w) k -> b k h w", b=batch, h=height, w=width).contiguous()

    def _lookup_chunk(self, centres, f1, batch_index):
        """centres [N,2] (level 0), f1 [N,C], batch_index [N] -> [N, L*(2r+1)^2], all levels at once."""
        points = centres[:, None, :] * self.level_scale[None, :, None]  # [N,L,2]
        base = torch.floor(points)
        frac = points - base  # [N,L,2], shared by every point of a level's window
        span = torch.arange(-self.radius, self.radius + 2, device=centres.device)
        xs = base[..., 0].long()[..., None] + span  # [N,L,K]
        ys = base[..., 1].long()[..., None] + span  # [N,L,K]
        h_l, w_l = self.level_h[None, :, None], self.level_w[None, :, None]
        inside = ((xs >= 0) & (xs < w_l))[..., :, None] & ((ys >= 0) & (ys < h_l))[..., None, :]  # [N,L,K(x),K(y)]
        row0 = self.level_start[None, :, None] + batch_index[:, None, None] * (h_l * w_l)  # [N,L,1]
        index = (row0 + ys * w_l)[..., None, :] + xs[..., :, None]  # [N,L,K(x),K(y)]
        index = torch.where(inside, index, self.table.shape[0] - 1)  # the zero row
        gathered = self.table.index_select(0, index.flatten()).view(index.shape[0], -1, self.table.shape[1])
        # [N,1,C] @ [N,C,L*K*K]: this layout is several times faster than [N,L*K*K,C] @ [N,C,1] on CPU
        dots = torch.bmm(f1[:, None, :], gathered.transpose(1, 2)).view(index.shape)  # [N,L,K(x),K(y)]
        fx, fy = frac[..., 0, None, None], frac[..., 1, None, None]  # [N,L,1,1]
        out = (
            (1 - fx) * (1 - fy) * dots[..., :-1, :-1]
            + fx * (1 - fy) * dots[..., 1:, :-1]
            + (1 - fx) * fy * dots[..., :-1, 1:]
            + fx * fy * dots[..., 1:, 1:]
        )  # [N, L, 2r+1 (x), 2r+1 (y)]
        return out.reshape(out.shape[0], -1)


def build_corr(fmap1: torch.Tensor, fmap2: torch.Tensor, *, mode: str, num_levels: int, radius: int):
    """The correlation lookup for one batch of image pairs; mode 'all_pairs' or 'on_demand'."""
    if mode == "all_pairs":
        return AllPairsCorr(fmap1, fmap2, num_levels=num_levels, radius=radius)
    if mode == "on_demand":
        return OnDemandCorr(fmap1, fmap2, num_levels=num_levels, radius=radius)
    raise FlowError(f"unknown correlation mode {mode!r}: use one of {', '.join(CORR_MODES)}")
