"""Correlation for RAFT: the all-pairs pyramid of the paper and an on-demand lookup.

Both take the two 1/8-resolution feature maps and answer `lookup(coords)`: for every pixel p
of image 1 and every pyramid level l, the correlation <f1(p), f2_l(q)> / sqrt(C) sampled
bilinearly (align_corners=True, zeros outside) at the (2r+1)^2 points
q = coords(p) / 2^l + (dx, dy), dx, dy in [-r, r]. Output channel = l*(2r+1)^2 + i*(2r+1) + j
for the offset (dx_i, dy_j): the x offset varies slowest (as RAFT and torchvision order it).

- `AllPairsCorr` builds the full volume [B*H*W, H*W] and its pyramid, pooled over the second
  image's dims, as one matmul per level with pooled features (memory 4*(HW)^2 bytes at level 0).
  Both read the windows with `window_lookup` (a gather of integer positions and two lerps, not
  grid_sample: every point of a window shares its centre's fractional part).
- `OnDemandCorr` never builds it. Pooling the correlation over image 2 equals correlating with
  pooled features of image 2, so it keeps a feature pyramid of image 2 and, per lookup, works
  through blocks of rows of image 1: each block is correlated (one matmul) with only the band of
  image-2 rows its windows can reach, and the windows are read from that small volume. Peak
  extra memory is one band volume, O(block * band).

Everything here runs in float32, also under autocast: correlation and coordinates need it.
"""

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from flow.errors import FlowError

CORR_MODES = ("all_pairs", "on_demand")
_ON_DEMAND_BLOCK_PIXELS = 1024  # pixels of image 1 (whole rows) per on-demand block


def _check_pyramid_size(fmap: torch.Tensor, num_levels: int) -> None:
    smallest = 2 * 2 ** (num_levels - 1)  # the coarsest level needs >= 2 pixels per side
    if min(fmap.shape[-2:]) < smallest:
        raise FlowError(
            f"feature maps {tuple(fmap.shape[-2:])} are too small for a {num_levels}-level correlation "
            f"pyramid: each side must be >= {smallest} (images >= {8 * smallest} px; RAFT pads smaller ones)"
        )


class AllPairsCorr:
    """The full correlation pyramid, built once per image pair: [B*H*W, sum of H_l*W_l], one matmul."""

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor, *, num_levels: int, radius: int):
        _check_pyramid_size(fmap1, num_levels)
        self.radius = radius
        with torch.autocast(fmap1.device.type, enabled=False):
            fmap1, fmap2 = fmap1.float(), fmap2.float()
            batch, channels, height, width = fmap1.shape
            f1 = rearrange(fmap1, "b c h w -> b (h w) c") * (1.0 / math.sqrt(channels))
            levels, segments, offset = [], [], 0
            for level in range(num_levels):
                if level:  # pooling image 2's features = pooling the volume over image 2, and a little faster
                    fmap2 = F.avg_pool2d(fmap2, 2, stride=2)
                h_l, w_l = fmap2.shape[-2:]
                levels.append(rearrange(fmap2, "b c h w -> b c (h w)"))
                segments.append((offset, 0, h_l, w_l))
                offset += h_l * w_l
            volume = torch.bmm(f1, torch.cat(levels, dim=2))  # [B,HW,sum H_l*W_l]
            self.volume = volume.view(batch * height * width, offset)
            self.segments = torch.tensor(segments, device=fmap1.device)
            self.scales = 2.0 ** torch.arange(num_levels, device=fmap1.device)  # level l = coordinates / 2^l

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """coords [B,2,H,W] (x, y at level 0) -> correlation features [B, L*(2r+1)^2, H, W]."""
        with torch.autocast(coords.device.type, enabled=False):
            batch, _, height, width = coords.shape
            points = rearrange(_finite(coords), "b c h w -> (b h w) 1 c") / self.scales[:, None]  # [BHW,L,2]
            features = window_lookup(self.volume, points, self.radius, self.segments)
            # [B,K,H,W] in channels-last layout (as the update block's convolutions take it on the CPU)
            return rearrange(features, "(b h w) k -> b k h w", b=batch, h=height, w=width)


class OnDemandCorr:
    """Correlation computed at lookup time, a block of rows of image 1 at a time (no volume).

    For a block of rows and a pyramid level, the window can only touch the rows of image 2 between
    the block's smallest and largest y coordinate (+- r + 1). The block's correlation with that band
    is one matmul [n,C] @ [C, band], from which the (2r+2)^2 integer positions around each window are
    gathered and combined with the window's bilinear weights (every window point shares one
    fractional part). Memory: one band volume; time: a few large matmuls per block.
    """

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor, *, num_levels: int, radius: int,
                 block_pixels: int = _ON_DEMAND_BLOCK_PIXELS):
        _check_pyramid_size(fmap1, num_levels)
        self.radius = radius
        self.block_pixels = block_pixels
        with torch.autocast(fmap1.device.type, enabled=False):
            self.f1 = fmap1.float() * (1.0 / math.sqrt(fmap1.shape[1]))  # [B,C,H,W]
            self.pyramid = [fmap2.float()]  # [B,C,H_l,W_l]; pooling features = pooling the correlation
            for _ in range(num_levels - 1):
                self.pyramid.append(F.avg_pool2d(self.pyramid[-1], 2, stride=2))

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """coords [B,2,H,W] (x, y at level 0) -> correlation features [B, L*(2r+1)^2, H, W]."""
        with torch.autocast(coords.device.type, enabled=False):
            batch, _, height, width = coords.shape
            coords = _finite(coords)
            rows = max(1, self.block_pixels // width)
            blocks = []
            for b in range(batch):
                for top in range(0, height, rows):
                    points = rearrange(coords[b, :, top : top + rows], "c h w -> (h w) c")  # [n,2]
                    f1 = rearrange(self.f1[b, :, top : top + rows], "c h w -> (h w) c")  # [n,C]
                    levels = [self._lookup(points / 2**level, f1, f2[b]) for level, f2 in enumerate(self.pyramid)]
                    blocks.append(torch.cat(levels, dim=1))  # [n, L*(2r+1)^2]
            features = torch.cat(blocks)  # rows of (b, h, w) in order
            return rearrange(features, "(b h w) k -> b k h w", b=batch, h=height, w=width)  # channels-last

    def _lookup(self, points: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        """points [n,2] at this level, f1 [n,C], f2 [C,h,w] -> [n,(2r+1)^2] (x offset slowest)."""
        r, (channels, h, w) = self.radius, f2.shape
        rows = torch.floor(points[:, 1])
        lo = max(int(rows.min()) - r, 0)
        hi = min(int(rows.max()) + r + 1, h - 1)
        if lo > hi:  # every window lies above or below the image
            return points.new_zeros(points.shape[0], (2 * r + 1) ** 2)
        volume = torch.mm(f1, f2[:, lo : hi + 1].reshape(channels, -1))  # [n, band rows * w]
        return window_lookup(volume, points[:, None], r, torch.tensor([[0, lo, hi - lo + 1, w]], device=f1.device))


def _finite(coords: torch.Tensor) -> torch.Tensor:
    """float32 coordinates with NaN -> 0 and magnitudes clamped to 1e6 (safe to floor and index with)."""
    return torch.nan_to_num(coords.float(), nan=0.0).clamp(-1e6, 1e6)


def window_lookup(volume: torch.Tensor, points: torch.Tensor, radius: int, segments: torch.Tensor) -> torch.Tensor:
    """Bilinear (2r+1)^2 windows of L levels from correlation rows, zero outside each level.

    volume [n, total]: pixel i's correlations; level l's part starts at column segments[l, 0] and holds
    rows segments[l, 1] .. + segments[l, 2] of that level, segments[l, 3] columns wide (row-major).
    points [n,L,2] (x, y) in level l's pixels -> [n, L*(2r+1)^2], per level the x offset slowest.
    Every point of a window shares the fractional part of its centre, so this gathers the (2r+2)^2
    integer positions around each window and blends them with two lerps (no grid_sample)."""
    r, n = radius, points.shape[0]
    offset, top, rows, width = (segments[:, k, None] for k in range(4))  # [L,1] each
    base = torch.floor(points)
    frac = points - base  # [n,L,2]
    x0, y0 = base[..., 0].long(), base[..., 1].long() - top[:, 0]  # [n,L] window corners - r, segment rows
    span = torch.arange(-r, r + 2, device=points.device)
    inside_x = ((x0[..., None] + span >= 0) & (x0[..., None] + span < width)).float()  # [n,L,K]
    inside_y = ((y0[..., None] + span >= 0) & (y0[..., None] + span < rows)).float()
    steps = span[:, None] + span * width[:, :, None]  # [L,K(x),K(y)]: column of (x0 + i, y0 + j) - that of (x0, y0)
    index = (offset[:, 0] + y0 * width[:, 0] + x0)[..., None, None] + steps  # [n,L,K(x),K(y)]
    dots = torch.gather(volume, 1, index.clamp_(0, volume.shape[1] - 1).reshape(n, -1)).view(index.shape)
    dots *= inside_y[..., None, :]
    along_y = torch.lerp(dots[..., :-1], dots[..., 1:], frac[..., 1, None, None])  # [n,L,K(x),2r+1]
    along_y *= inside_x[..., :, None]
    out = torch.lerp(along_y[..., :-1, :], along_y[..., 1:, :], frac[..., 0, None, None])  # [n,L,2r+1,2r+1]
    return out.reshape(n, -1)


def build_corr(fmap1: torch.Tensor, fmap2: torch.Tensor, *, mode: str, num_levels: int, radius: int):
    """The correlation lookup for one batch of image pairs; mode 'all_pairs' or 'on_demand'."""
    if mode == "all_pairs":
        return AllPairsCorr(fmap1, fmap2, num_levels=num_levels, radius=radius)
    if mode == "on_demand":
        return OnDemandCorr(fmap1, fmap2, num_levels=num_levels, radius=radius)
    raise FlowError(f"unknown correlation mode {mode!r}: use one of {', '.join(CORR_MODES)}")
