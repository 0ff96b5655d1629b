"""PatchGAN discriminators (pix2pixHD): an N-layer PatchGAN returning its intermediate features, and
the multi-scale discriminator (num_D PatchGANs on an avg-pool pyramid). The temporal discriminators of
the video model are the same multi-scale D (one per temporal scale) on windows of stacked frames + the real
frames' flows, which `temporal_windows` picks."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torchvision.ops import roi_align

from flow import backward_warp
from vid2vid.models.layers import SelfAttention, downsample, is_spectral, maybe_spectral, norm_layer


class NLayerDiscriminator(nn.Module):
    """PatchGAN: conv4 (padding 2) with strides 2 (n_layers times) then 1, widths ndf, 2ndf, ... capped at
    512, LeakyReLU 0.2, norm on all but the first conv; a final conv4 to 1 channel (the prediction map).

    With a spectral norm ("spectralinstance"/"spectralbatch", SPADE's D) the normed convs carry spectral
    norm and no bias; with "instance"/"batch" (pix2pixHD/vid2vid) they keep their bias.
    self_attention adds a SAGAN block after the last stride-2 layer.

    forward(x [B,C,H,W]) -> list of n_layers + 2 feature maps; the last is the prediction [B,1,h,w].
    """

    def __init__(self, input_nc: int, *, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 self_attention: bool = False):
        super().__init__()
        spectral = is_spectral(norm)
        bias = not spectral  # SPADE drops the bias of normed convs, pix2pixHD keeps it
        blocks = [nn.Sequential(nn.Conv2d(input_nc, ndf, 4, 2, 2), nn.LeakyReLU(0.2, True))]
        nf = ndf
        for n in range(1, n_layers + 1):
            prev, nf = nf, min(nf * 2, 512)
            stride = 2 if n < n_layers else 1
            conv = maybe_spectral(nn.Conv2d(prev, nf, 4, stride, 2, bias=bias), spectral)
            blocks.append(nn.Sequential(conv, norm_layer(norm, nf), nn.LeakyReLU(0.2, True)))
        blocks.append(nn.Sequential(nn.Conv2d(nf, 1, 4, 1, 2)))
        if self_attention:
            last_strided = blocks[n_layers - 1]
            channels = min(ndf * 2 ** (n_layers - 1), 512)
            blocks[n_layers - 1] = nn.Sequential(*last_strided, SelfAttention(channels, spectral))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    """num_D PatchGANs; scale i sees the input downsampled i times (avg-pool 3, stride 2, pad 1).

    forward(x [B,C,H,W]) -> list over scales (finest first) of each PatchGAN's feature list.
    """

    def __init__(self, input_nc: int, *, ndf: int = 64, n_layers: int = 3, num_D: int = 2,
                 norm: str = "instance", self_attention: bool = False):
        super().__init__()
        self.n_layers = n_layers
        self.discriminators = nn.ModuleList(
            NLayerDiscriminator(input_nc, ndf=ndf, n_layers=n_layers, norm=norm, self_attention=self_attention)
            for _ in range(num_D)
        )

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        outputs = []
        for i, d in enumerate(self.discriminators):
            if i > 0:
                x = downsample(x)
            outputs.append(d(x))
        return outputs


# ----------------------------------------------------------------------------------------------
# Temporal discriminators (vid2vid)
# ----------------------------------------------------------------------------------------------

FLOW_INPUT_SCALE = 20.0  # the temporal D sees flow / 20


def temporal_input_nc(n_frames_D: int) -> int:
    """Input channels of a temporal D: n_frames_D RGB frames + n_frames_D - 1 flows (13 for 3 frames)."""
    return 3 * n_frames_D + 2 * (n_frames_D - 1)


def build_temporal_discriminators(in_nc: int, ndf: int = 64, n_layers: int = 3, num_D: int = 2,
                                  norm: str = "instance", scales: int = 2) -> nn.ModuleList:
    """One MultiscaleDiscriminator per temporal scale (index = scale); in_nc = temporal_input_nc(n_frames_D)."""
    return nn.ModuleList(
        MultiscaleDiscriminator(in_nc, ndf=ndf, n_layers=n_layers, num_D=num_D, norm=norm) for _ in range(scales)
    )


def compose_over_stride(flows: torch.Tensor, stride: int) -> torch.Tensor:
    """Per-frame backward flows [B,T-1,2,H,W] (flows[:, t]: frame t+1 -> frame t) -> [B,T-stride,2,H,W] whose
    [:, t] is the flow frame t+stride -> frame t, chained hop by hop (bilinear, border clamp):
    f_k[t] = flows[t+k-1] + warp(f_{k-1}[t], flows[t+k-1]), f_1 = flows."""
    total = flows
    for k in range(2, stride + 1):
        hop = flows[:, k - 1:]  # [B,T-k,2,H,W]: frame t+k -> t+k-1
        rest = total[:, : hop.shape[1]]  # frame t+k-1 -> t
        warped = backward_warp(rearrange(rest, "b t c h w -> (b t) c h w"), rearrange(hop, "b t c h w -> (b t) c h w"))
        total = hop + rearrange(warped, "(b t) c h w -> b t c h w", b=flows.shape[0])
    return total


def temporal_windows(frames: torch.Tensor, flows: torch.Tensor, n_frames_D: int, scale: int) -> torch.Tensor | None:
    """The temporal D's inputs at one temporal scale: frames [B,T,3,H,W] (real or generated), flows
    [B,T-1,2,H,W] = the REAL frames' reference flows (flows[:, t]: frame t+1 -> frame t; real and fake windows
    get the same ones) -> [B*S, 3n + 2(n-1), H, W], batch-major (all windows of clip 0 first), or None when
    the clip is shorter than one window (T <= (n-1) * stride).

    Index rule (n = n_frames_D, stride = n^scale): window w (w = 0 .. S-1, S = T - (n-1) * stride, every start)
    holds the frames w, w + stride, ..., w + (n-1) * stride on channels, oldest first, then the n-1 flows
    from each of those frames to the one before it, divided by 20. At scale > 0 these flows are the per-frame
    flows chained over the stride (compose_over_stride). The reference runs its flow network on the
    subsampled real frames instead; chaining is exact for the dataset's gt flow up to bilinear resampling,
    keeps one flow computation per clip, and costs only accumulated error for estimated flows."""
    n, stride = n_frames_D, n_frames_D**scale
    time = frames.shape[1]
    count = time - (n - 1) * stride
    if count < 1:
        return None
    starts = torch.arange(count, device=frames.device)[:, None]  # [S,1]
    frame_index = starts + stride * torch.arange(n, device=frames.device)  # [S,n]
    chained = compose_over_stride(flows, stride)  # [B,T-stride,2,H,W]
    window_frames = frames[:, frame_index]  # [B,S,n,3,H,W]
    window_flows = chained[:, frame_index[:, :-1]] / FLOW_INPUT_SCALE  # [B,S,n-1,2,H,W]
    return torch.cat([rearrange(window_frames, "b s n c h w -> (b s) (n c) h w"),
                      rearrange(window_flows.to(frames.dtype), "b s n c h w -> (b s) (n c) h w")], dim=1)


# ----------------------------------------------------------------------------------------------
# The face discriminator (vid2vid's add_face_disc)
# ----------------------------------------------------------------------------------------------

MIN_FACE_SIDE = 4.0  # pixels: the smallest face crop's side


def square_face_boxes(boxes: torch.Tensor, scale: float = 1.5, min_side: float = MIN_FACE_SIDE) -> torch.Tensor:
    """The crop rule: tight face boxes [...,4] (x0, y0, x1, y1 in pixels, pixel i covering [i, i+1)) -> squares
    with the same centre and side scale x the box's longer side (at least min_side)."""
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    side = (boxes[..., 2:] - boxes[..., :2]).amax(-1, keepdim=True).mul(scale).clamp(min=min_side)
    return torch.cat([centre - side / 2, centre + side / 2], dim=-1)


def face_crops(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """x [N,C,H,W], boxes [N,4] (x0, y0, x1, y1 in pixels of x, pixel i covering [i, i+1); one per row) ->
    [N,C,size,size]: each box resampled bilinearly (torchvision's roi_align, aligned, 2x2 samples per output pixel;
    zeros outside x), differentiable in x."""
    index = torch.arange(len(x), device=x.device, dtype=x.dtype)[:, None]
    return roi_align(x, torch.cat([index, boxes.to(x.dtype)], 1), (size, size), spatial_scale=1.0, sampling_ratio=2,
                     aligned=True)
