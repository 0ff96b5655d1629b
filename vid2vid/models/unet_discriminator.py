"""The U-Net discriminator of U-Net GAN (Schonfeld, Schiele, Khoreva, "A U-Net Based Discriminator for Generative
Adversarial Networks", CVPR 2020), conditional like the PatchGAN: its input is cat([one-hot labels + edges, frame]).

Its encoder (residual blocks that halve the resolution, as in BigGAN's discriminator) ends in a global real/fake
logit; its decoder (residual blocks that double the resolution, each fed the encoder's features of the same size)
ends in a real/fake logit per pixel. The output has the multi-scale PatchGAN's structure (a list of "branches",
each a list of features whose last entry is the prediction), so the one GANLoss sums the encoder and decoder terms
and feature matching uses both branches' intermediate features without a special case:

    D(x [B,C,H,W]) -> [[e_1, ..., e_depth, global logit [B]],              # encoder: e_i at H/2^i
                       [u_{depth-1}, ..., u_0, pixel logits [B,1,H,W]]]    # decoder: u_j at H/2^j

CutMix and its consistency term live in vid2vid.losses (cutmix_terms, draw_cutmix).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vid2vid.models.layers import SelfAttention, is_spectral, maybe_spectral, norm_layer

MAX_CHANNELS = 512


def _conv(cin: int, cout: int, kernel: int, spectral: bool) -> nn.Module:
    return maybe_spectral(nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=not spectral), spectral)


class ResidualBlock(nn.Module):
    """[LeakyReLU] conv3 norm LeakyReLU conv3 norm, plus a conv1 shortcut; `resample` (avg-pool 2 down, or nearest
    up to a given size) applies to both paths. The first encoder block skips the leading activation."""

    def __init__(self, cin: int, cout: int, norm: str, *, preactivate: bool = True):
        super().__init__()
        spectral = is_spectral(norm)
        self.body = nn.Sequential(*([nn.LeakyReLU(0.2)] if preactivate else []),
                                  _conv(cin, cout, 3, spectral), norm_layer(norm, cout), nn.LeakyReLU(0.2),
                                  _conv(cout, cout, 3, spectral), norm_layer(norm, cout))
        self.shortcut = _conv(cin, cout, 1, spectral)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class UNetDiscriminator(nn.Module):
    """U-Net GAN's discriminator. depth residual down blocks of widths ndf, 2 ndf, 4 ndf, ... (capped at 512) to
    the bottleneck at H/2^depth; the global head is LeakyReLU, mean over positions, linear -> [B]; depth residual
    up blocks (nearest upsampling to the encoder feature's size, so any H, W works), each after the first fed
    cat([decoder features, encoder features of that size]); the per-pixel head is LeakyReLU, conv1 -> [B,1,H,W].

    norm as the PatchGAN's (instance / batch / none, or spectral*: spectral norm on every conv and the linear head,
    without biases). self_attention adds a SAGAN block on the bottleneck. The paper's global head sums over
    positions; the mean keeps the logit's scale independent of the training resolution.

    forward(x [B,C,H,W]) -> [encoder features + [global logit [B]], decoder features + [pixel logits [B,1,H,W]]].
    """

    def __init__(self, input_nc: int, *, ndf: int = 64, depth: int = 4, norm: str = "instance",
                 self_attention: bool = False):
        super().__init__()
        spectral = is_spectral(norm)
        widths = [min(ndf * 2**i, MAX_CHANNELS) for i in range(depth)]  # encoder output channels, level 1..depth
        self.down = nn.ModuleList(ResidualBlock(cin, cout, norm, preactivate=i > 0)
                                  for i, (cin, cout) in enumerate(zip([input_nc, *widths], widths)))
        self.attention = SelfAttention(widths[-1], spectral) if self_attention else nn.Identity()
        self.global_head = maybe_spectral(nn.Linear(widths[-1], 1), spectral)
        # up block j (j = depth-1 .. 0) makes u_j at H/2^j with widths[j-1] channels (ndf for u_0); its input is
        # the bottleneck for j = depth-1, else cat([u_{j+1}, e_{j+1}])
        up_out = [ndf, *widths[:-1]]  # channels of u_0 .. u_{depth-1}
        self.up = nn.ModuleList(
            ResidualBlock(widths[-1] if j == depth - 1 else up_out[j + 1] + widths[j], up_out[j], norm)
            for j in reversed(range(depth)))
        self.pixel_head = nn.Conv2d(ndf, 1, 1)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        sizes, encoder = [], []
        for block in self.down:
            sizes.append(x.shape[-2:])
            x = F.avg_pool2d(block(x), 2)  # [B, widths[i], H/2^(i+1), W/2^(i+1)]
            encoder.append(x)
        x = encoder[-1] = self.attention(x)
        global_logit = self.global_head(F.leaky_relu(x, 0.2).mean(dim=(2, 3)))[:, 0]  # [B]
        decoder = []
        for k, block in enumerate(self.up):  # k = depth-1-j
            if k > 0:
                x = torch.cat([x, encoder[-1 - k]], 1)
            x = block(F.interpolate(x, size=sizes[-1 - k], mode="nearest"))  # u_j [B, up_out[j], H/2^j, W/2^j]
            decoder.append(x)
        pixel_logits = self.pixel_head(F.leaky_relu(x, 0.2))  # [B,1,H,W]
        return [[*encoder, global_logit], [*decoder, pixel_logits]]
