"""PatchGAN discriminators (pix2pixHD): an N-layer PatchGAN returning its intermediate features, and
the multi-scale discriminator (num_D PatchGANs on an avg-pool pyramid). The temporal discriminator of
the video model is the same multi-scale D on stacked frames + flows."""

from __future__ import annotations

import torch
from torch import nn

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
