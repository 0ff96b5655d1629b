"""Building blocks shared by the image and video generators and the discriminators.

Norm kinds (one string everywhere): "instance" (InstanceNorm2d without affine parameters),
"batch" (BatchNorm2d with affine parameters), "none", and the spectral variants
"spectralinstance" / "spectralbatch": spectral normalisation on the convolutions that a norm
follows, plus that norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

NORMS = ("instance", "batch", "spectralinstance", "spectralbatch", "none")


def is_spectral(norm: str) -> bool:
    return norm.startswith("spectral")


def base_norm(norm: str) -> str:
    """'spectralinstance' -> 'instance'; 'instance' -> 'instance'."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {', '.join(NORMS)}")
    return norm.removeprefix("spectral")


def norm_layer(norm: str, channels: int) -> nn.Module:
    """The normalisation layer (without the spectral part) for `channels` feature maps."""
    kind = base_norm(norm)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True)
    return nn.Identity()


def param_free_norm(kind: str, channels: int) -> nn.Module:
    """SPADE's normalisation before modulation: no learned parameters."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=False)
    raise ValueError(f"SPADE needs a parameter-free norm 'instance' or 'batch', got {kind!r}")


def maybe_spectral(module: nn.Module, enabled: bool) -> nn.Module:
    return spectral_norm(module) if enabled else module


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Halve the resolution the pix2pixHD way: avg-pool 3, stride 2, pad 1, padding not counted."""
    return F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)


class ResnetBlock(nn.Module):
    """pix2pixHD residual block: x + [pad1, conv3, norm, ReLU, pad1, conv3, norm](x)."""

    def __init__(self, dim: int, norm: str = "instance"):
        super().__init__()
        spectral = is_spectral(norm)
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            maybe_spectral(nn.Conv2d(dim, dim, 3), spectral),
            norm_layer(norm, dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            maybe_spectral(nn.Conv2d(dim, dim, 3), spectral),
            norm_layer(norm, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


# pix2pixHD / vid2vid layer groups (lists, so that models keep the reference's flat Sequential layout)


def front_layers(input_nc: int, ngf: int, norm: str) -> list[nn.Module]:
    """reflect-pad 3, conv7, norm, ReLU."""
    return [nn.ReflectionPad2d(3), maybe_spectral(nn.Conv2d(input_nc, ngf, 7), is_spectral(norm)),
            norm_layer(norm, ngf), nn.ReLU(True)]


def down_layers(cin: int, cout: int, norm: str) -> list[nn.Module]:
    """conv3 stride 2, norm, ReLU."""
    return [maybe_spectral(nn.Conv2d(cin, cout, 3, 2, 1), is_spectral(norm)), norm_layer(norm, cout), nn.ReLU(True)]


def up_layers(cin: int, cout: int, norm: str) -> list[nn.Module]:
    """transposed conv3 stride 2 (output_padding 1: exactly doubles the size), norm, ReLU."""
    conv = nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1)
    return [maybe_spectral(conv, is_spectral(norm)), norm_layer(norm, cout), nn.ReLU(True)]


def image_layers(ngf: int, output_nc: int) -> list[nn.Module]:
    """reflect-pad 3, conv7, tanh."""
    return [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]


def encoder_decoder_layers(input_nc: int, output_nc: int, ngf: int, n_downsample: int, n_blocks: int,
                           norm: str) -> list[nn.Module]:
    """pix2pixHD's encoder / residual blocks / decoder stack (also the feature encoder with n_blocks 0)."""
    layers = front_layers(input_nc, ngf, norm)
    for i in range(n_downsample):
        layers += down_layers(ngf * 2**i, ngf * 2 ** (i + 1), norm)
    layers += [ResnetBlock(ngf * 2**n_downsample, norm) for _ in range(n_blocks)]
    for i in range(n_downsample, 0, -1):
        layers += up_layers(ngf * 2**i, ngf * 2 ** (i - 1), norm)
    return layers + image_layers(ngf, output_nc)


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: norm(x) * (1 + gamma(seg)) + beta(seg).

    The conditioning map is resized (nearest) to x's size, then a shared conv3 + ReLU (hidden
    channels) and two conv3 heads give gamma and beta per pixel.
    """

    def __init__(self, norm_nc: int, label_nc: int, hidden: int = 128, param_free: str = "instance"):
        super().__init__()
        self.param_free_norm = param_free_norm(param_free, norm_nc)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_nc, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, norm_nc, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        seg = F.interpolate(seg, size=x.shape[-2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """SPADE residual block: [SPADE, LeakyReLU 0.2, conv3] twice (middle width min(fin, fout));
    the shortcut is SPADE + 1x1 conv without bias when fin != fout, identity otherwise."""

    def __init__(self, fin: int, fout: int, label_nc: int, *, spectral: bool = True,
                 param_free: str = "instance", hidden: int = 128):
        super().__init__()
        fmiddle = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = maybe_spectral(nn.Conv2d(fin, fmiddle, 3, padding=1), spectral)
        self.conv_1 = maybe_spectral(nn.Conv2d(fmiddle, fout, 3, padding=1), spectral)
        self.norm_0 = SPADE(fin, label_nc, hidden, param_free)
        self.norm_1 = SPADE(fmiddle, label_nc, hidden, param_free)
        if self.learned_shortcut:
            self.conv_s = maybe_spectral(nn.Conv2d(fin, fout, 1, bias=False), spectral)
            self.norm_s = SPADE(fin, label_nc, hidden, param_free)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return shortcut + dx


class SelfAttention(nn.Module):
    """SAGAN self-attention: x + gamma * attention(x); gamma starts at 0 (the block starts as identity).

    Query and key use channels // 8; attention is softmax(q^T k) over all positions (unscaled,
    as in SAGAN), computed with scaled_dot_product_attention (memory-efficient kernels on GPU).
    """

    def __init__(self, channels: int, spectral: bool = False):
        super().__init__()
        inner = max(channels // 8, 1)
        self.query = maybe_spectral(nn.Conv2d(channels, inner, 1), spectral)
        self.key = maybe_spectral(nn.Conv2d(channels, inner, 1), spectral)
        self.value = maybe_spectral(nn.Conv2d(channels, channels, 1), spectral)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        q, k, v = (rearrange(f(x), "b c h w -> b 1 (h w) c") for f in (self.query, self.key, self.value))
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # [B,1,HW,C]
        return x + self.gamma * rearrange(out, "b 1 (h w) c -> b c h w", h=h, w=w)


def instance_index(inst: torch.Tensor) -> tuple[torch.Tensor, int]:
    """inst [B,H,W] integer ids -> (index [B*H*W] in 0..N-1 numbering the instances of the batch, N).

    Ids are per image: the same id in two images of a batch are two instances.
    """
    b = inst.shape[0]
    ids = inst.reshape(b, -1).long()
    lo, hi = ids.min(), ids.max()
    keys = (ids - lo) + torch.arange(b, device=ids.device).unsqueeze(1) * (hi - lo + 1)  # [B,HW]
    _, index = torch.unique(keys.reshape(-1), return_inverse=True)
    return index, int(index.max()) + 1


def instance_means(features: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """features [B,C,H,W], index [B*H*W] from instance_index -> per-instance means [N,C] (summed in float32,
    returned in the features' dtype)."""
    flat = rearrange(features, "b c h w -> (b h w) c").float()
    sums = flat.new_zeros(n, flat.shape[1]).index_add_(0, index, flat)  # [N,C]
    counts = torch.bincount(index, minlength=n).to(flat.dtype).unsqueeze(1)  # [N,1]
    return (sums / counts).to(features.dtype)


def instance_average(features: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
    """Replace every pixel's features by the mean over its instance (vectorised: no loop over instances).

    features [B,C,H,W], inst [B,H,W] integer ids -> [B,C,H,W].
    """
    b, _, h, w = features.shape
    index, n = instance_index(inst)
    means = instance_means(features, index, n)  # [N,C]
    return rearrange(means[index], "(b h w) c -> b c h w", b=b, h=h, w=w)
