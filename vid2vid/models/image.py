"""Per-frame generators: pix2pix U-Net, pix2pixHD GlobalGenerator / LocalEnhancer, SPADE, and the
encoders (pix2pixHD instance-wise feature encoder with its k-means feature bank, SPADE's VAE encoder).

Every generator maps semantics [B,C_in,H,W] to frames [B,3,H,W] in [-1,1]. Layer order mirrors the
papers' reference layouts so that parameter counts match them exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vid2vid.families import SPADE_UPSAMPLINGS
from vid2vid.models.layers import (
    ResnetBlock,
    SPADEResnetBlock,
    base_norm,
    down_layers,
    downsample,
    encoder_decoder_layers,
    front_layers,
    image_layers,
    instance_average,
    instance_index,
    instance_means,
    is_spectral,
    maybe_spectral,
    norm_layer,
    up_layers,
)

# ----------------------------------------------------------------------------------------------
# pix2pix
# ----------------------------------------------------------------------------------------------


class UnetGenerator(nn.Module):
    """pix2pix U-Net: `num_downs` conv4 stride-2 levels (widths ngf * 1, 2, 4, 8, 8, ...), mirrored by
    transposed convs, each decoder level concatenating the encoder features of the same size.

    Dropout 0.5 (pix2pix's noise source) on the num_downs - 5 innermost decoder levels of width 8*ngf.
    The input size must be divisible by 2^num_downs.
    """

    def __init__(self, input_nc: int, output_nc: int = 3, *, num_downs: int = 8, ngf: int = 64,
                 norm: str = "batch", dropout: bool = False):
        super().__init__()
        if num_downs < 2:
            raise ValueError(f"num_downs must be >= 2, got {num_downs}")
        width = [ngf * min(2**i, 8) for i in range(num_downs)]  # encoder output width per level
        bias = base_norm(norm) != "batch"  # batch norm has its own shift
        spectral = is_spectral(norm)
        innermost = num_downs - 1
        downs = [nn.Conv2d(input_nc, ngf, 4, 2, 1, bias=bias)]
        for i in range(1, num_downs):
            normed = i != innermost
            layers = [nn.LeakyReLU(0.2, True),
                      maybe_spectral(nn.Conv2d(width[i - 1], width[i], 4, 2, 1, bias=bias), normed and spectral)]
            downs.append(nn.Sequential(*layers, norm_layer(norm, width[i]) if normed else nn.Identity()))
        ups = [nn.Sequential(nn.ReLU(True), nn.ConvTranspose2d(2 * ngf, output_nc, 4, 2, 1), nn.Tanh())]
        for i in range(1, num_downs):
            in_ch = width[i] if i == innermost else 2 * width[i]
            layers = [nn.ReLU(True),
                      maybe_spectral(nn.ConvTranspose2d(in_ch, width[i - 1], 4, 2, 1, bias=bias), spectral),
                      norm_layer(norm, width[i - 1])]
            if dropout and 4 <= i < innermost:
                layers.append(nn.Dropout(0.5))
            ups.append(nn.Sequential(*layers))
        self.downs = nn.ModuleList(downs)
        self.ups = nn.ModuleList(ups)

    def forward(self, semantics: torch.Tensor) -> torch.Tensor:
        skips = []  # skips[i]: encoder output of level i
        h = semantics
        for down in self.downs:
            h = down(h)
            skips.append(h)
        h = self.ups[-1](skips[-1])
        for i in reversed(range(len(self.ups) - 1)):
            h = self.ups[i](torch.cat([skips[i], h], dim=1))
        return h


# ----------------------------------------------------------------------------------------------
# pix2pixHD
# ----------------------------------------------------------------------------------------------


class GlobalGenerator(nn.Module):
    """pix2pixHD global generator: conv7, n_downsample stride-2 convs (doubling widths), n_blocks
    residual blocks, n_downsample transposed convs, conv7 + tanh. Size must be divisible by 2^n_downsample."""

    def __init__(self, input_nc: int, output_nc: int = 3, *, ngf: int = 64, n_downsample: int = 4,
                 n_blocks: int = 9, norm: str = "instance"):
        super().__init__()
        self.model = nn.Sequential(*encoder_decoder_layers(input_nc, output_nc, ngf, n_downsample, n_blocks, norm))

    def forward(self, semantics: torch.Tensor) -> torch.Tensor:
        return self.model(semantics)


class LocalEnhancer(nn.Module):
    """pix2pixHD coarse-to-fine generator: a global generator of width ngf * 2^n_local_enhancers at
    1/2^n_local_enhancers resolution (its output layers removed), then per enhancer n (coarse to fine,
    width ngf * 2^(n_local_enhancers - n)): conv7 + one stride-2 conv on the input at that scale, summed
    with the coarser features, n_blocks_local residual blocks, a transposed conv; the finest ends in
    conv7 + tanh. Inputs per scale: avg-pool pyramid (3, stride 2, pad 1, count_include_pad False).
    """

    def __init__(self, input_nc: int, output_nc: int = 3, *, ngf: int = 32, n_downsample_global: int = 4,
                 n_blocks_global: int = 9, n_local_enhancers: int = 1, n_blocks_local: int = 3,
                 norm: str = "instance"):
        super().__init__()
        if n_local_enhancers < 1:
            raise ValueError(f"n_local_enhancers must be >= 1, got {n_local_enhancers} (use GlobalGenerator)")
        self.n_local_enhancers = n_local_enhancers
        global_layers = encoder_decoder_layers(input_nc, output_nc, ngf * 2**n_local_enhancers,
                                               n_downsample_global, n_blocks_global, norm)
        self.model = nn.Sequential(*global_layers[:-3])  # without the output conv7 + tanh
        self.local_down = nn.ModuleList()
        self.local_up = nn.ModuleList()
        for n in range(1, n_local_enhancers + 1):
            width = ngf * 2 ** (n_local_enhancers - n)
            down = front_layers(input_nc, width, norm) + down_layers(width, 2 * width, norm)
            self.local_down.append(nn.Sequential(*down))
            up = [ResnetBlock(2 * width, norm) for _ in range(n_blocks_local)] + up_layers(2 * width, width, norm)
            if n == n_local_enhancers:
                up += image_layers(ngf, output_nc)
            self.local_up.append(nn.Sequential(*up))

    def global_parameters(self) -> list[nn.Parameter]:
        """The global generator's parameters (pix2pixHD trains the enhancers alone first)."""
        return list(self.model.parameters())

    def local_parameters(self) -> list[nn.Parameter]:
        return list(self.local_down.parameters()) + list(self.local_up.parameters())

    def forward(self, semantics: torch.Tensor) -> torch.Tensor:
        pyramid = [semantics]  # full resolution first
        for _ in range(self.n_local_enhancers):
            pyramid.append(downsample(pyramid[-1]))
        h = self.model(pyramid[-1])
        for n, (down, up) in enumerate(zip(self.local_down, self.local_up), start=1):
            h = up(down(pyramid[self.n_local_enhancers - n]) + h)
        return h


class GlobalGeneratorWithFeatures(nn.Module):
    """pix2pixHD's global generator with the instance-wise features joining every level (the layout of vid2vid's
    edge2face single-frame generator, model.feat_join every_level): the features z [B,feat_num,H,W] join the input
    (conv7 on input_nc + feat_num), z avg-pooled n_downsample times joins the residual blocks' input (blocks of width
    ngf*2^n_downsample + feat_num) and again the first transposed conv's (+ 2 feat_num), and z joins the last conv7's
    (ngf + feat_num). Module names are the original's: model_downsample, model_resnet, model_upsample,
    model_upsample_conv. Widths are not capped (the original caps them at 1024).

    forward(cat([semantics [B,input_nc,H,W], z [B,feat_num,H,W]])) -> [B,output_nc,H,W]: the same input as
    GlobalGenerator with features, so that training and Export.generate feed both alike."""

    def __init__(self, input_nc: int, feat_num: int, output_nc: int = 3, *, ngf: int = 64, n_downsample: int = 3,
                 n_blocks: int = 9, norm: str = "instance"):
        super().__init__()
        if feat_num < 1:
            raise ValueError(f"feat_num must be >= 1 for the every-level feature join, got {feat_num}")
        self.feat_num, self.n_downsample = feat_num, n_downsample
        inner = ngf * 2**n_downsample
        down = front_layers(input_nc + feat_num, ngf, norm)
        for i in range(n_downsample):
            down += down_layers(ngf * 2**i, ngf * 2 ** (i + 1), norm)
        up = []
        for i in range(n_downsample, 0, -1):
            up += up_layers(ngf * 2**i + (2 * feat_num if i == n_downsample else 0), ngf * 2 ** (i - 1), norm)
        self.model_downsample = nn.Sequential(*down)
        self.model_resnet = nn.Sequential(*[ResnetBlock(inner + feat_num, norm) for _ in range(n_blocks)])
        self.model_upsample = nn.Sequential(*up)
        self.model_upsample_conv = nn.Sequential(*image_layers(ngf + feat_num, output_nc))

    def forward(self, semantics: torch.Tensor) -> torch.Tensor:
        z = semantics[:, -self.feat_num:]  # [B,feat_num,H,W]
        z_low = z
        for _ in range(self.n_downsample):
            z_low = downsample(z_low)  # [B,feat_num,H/2^d,W/2^d]
        h = self.model_downsample(semantics)  # [B,ngf*2^d,H/2^d,W/2^d]
        h = self.model_resnet(torch.cat([h, z_low], 1))  # [B,ngf*2^d+feat_num,...]
        h = self.model_upsample(torch.cat([h, z_low], 1))  # [B,ngf,H,W]
        return self.model_upsample_conv(torch.cat([h, z], 1))


class FeatureEncoder(nn.Module):
    """pix2pixHD instance-wise feature encoder: an encoder-decoder over the real image whose output is
    averaged per instance, so every pixel of an instance carries the instance's feature vector.

    forward(image [B,3,H,W], inst [B,H,W] ids) -> features [B,output_nc,H,W] in [-1,1].
    Pass the label map as `inst` when a dataset has no instance maps.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, *, ngf: int = 16, n_downsample: int = 4,
                 norm: str = "instance"):
        super().__init__()
        self.model = nn.Sequential(*encoder_decoder_layers(input_nc, output_nc, ngf, n_downsample, 0, norm))

    def forward(self, image: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
        return instance_average(self.model(image), inst)


def kmeans(points: torch.Tensor, k: int, *, iters: int = 20, generator: torch.Generator | None = None
           ) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding. points [N,C] -> centers [k', C], k' = min(k, distinct points);
    a cluster that loses all its points keeps its previous center."""
    centers = points[torch.randint(len(points), (1,), generator=generator)]
    for _ in range(k - 1):  # k-means++: next centre drawn with probability ~ squared distance
        d2 = torch.cdist(points, centers).amin(dim=1).square()  # [N]
        if d2.sum() <= 0:
            break  # every point is already a centre
        centers = torch.cat([centers, points[torch.multinomial(d2, 1, generator=generator)]])
    for _ in range(iters):
        assign = torch.cdist(points, centers).argmin(dim=1)  # [N]
        sums = torch.zeros_like(centers).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=len(centers)).unsqueeze(1)
        centers = torch.where(counts > 0, sums / counts.clamp(min=1), centers)
    return centers


class FeatureBank(nn.Module):
    """Per-class k-means centres of instance features, for sampling features at inference (pix2pixHD).

    Buffers (saved in the state dict): centers [label_nc, k, C], counts [label_nc] (valid centres per
    class; 0 for a class never seen, whose instances get zero features).
    """

    def __init__(self, label_nc: int, feat_num: int, k: int = 10):
        super().__init__()
        self.register_buffer("centers", torch.zeros(label_nc, k, feat_num))
        self.register_buffer("counts", torch.zeros(label_nc, dtype=torch.long))

    @staticmethod
    def instance_features(features: torch.Tensor, labels: torch.Tensor, inst: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """features [B,C,H,W], labels [B,H,W], inst [B,H,W] -> (per-instance mean features [N,C],
        class of each instance [N] (the largest label id among its pixels))."""
        index, n = instance_index(inst)
        classes = torch.zeros(n, dtype=torch.long, device=labels.device)
        classes = classes.scatter_reduce(0, index, labels.reshape(-1).long(), "amax", include_self=False)
        return instance_means(features, index, n), classes

    @torch.no_grad()
    def fit(self, features: torch.Tensor, classes: torch.Tensor, *, iters: int = 20, seed: int = 0) -> FeatureBank:
        """features [N,C] instance features collected over a dataset, classes [N] -> self (clustered)."""
        generator = torch.Generator(device="cpu").manual_seed(seed)
        label_nc, k, _ = self.centers.shape
        self.centers.zero_()
        self.counts.zero_()
        for c in torch.unique(classes).tolist():  # a loop over classes (<= label_nc), not instances
            if not 0 <= c < label_nc:
                raise ValueError(f"class id {c} outside [0, {label_nc})")
            centers = kmeans(features[classes == c].float().cpu(), k, iters=iters, generator=generator)
            self.centers[c, : len(centers)] = centers.to(self.centers)
            self.counts[c] = len(centers)
        return self

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, inst: torch.Tensor, generator: torch.Generator | None = None,
               cluster: int | None = None) -> torch.Tensor:
        """labels [B,H,W], inst [B,H,W] -> features [B,C,H,W]: each instance gets one centre of its class,
        drawn at random (from `generator`, a CPU generator, so that a seed gives the same choice on any
        device) or, with `cluster`, centre cluster % (the class's number of centres) for every instance.
        Instances of a class without centres (never seen in training) get zero features."""
        b, h, w = labels.shape
        index, n = instance_index(inst)
        classes = torch.zeros(n, dtype=torch.long, device=labels.device)
        classes = classes.scatter_reduce(0, index, labels.reshape(-1).long(), "amax", include_self=False)
        counts = self.counts[classes]  # [N]
        if cluster is None:
            pick = (torch.rand(n, generator=generator).to(counts.device) * counts).long()
        else:
            pick = cluster % counts.clamp(min=1)
        chosen = self.centers[classes, pick.clamp(max=self.centers.shape[1] - 1)]  # [N,C]
        chosen = chosen * (counts > 0).unsqueeze(1)
        return rearrange(chosen[index], "(b h w) c -> b c h w", b=b, h=h, w=w)

    @torch.no_grad()
    def nearest_rows(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """A bank whose rows are training images (model.feature_bank images: centers[c, m] = image m's features of
        class c): features [B,C,H,W] pooled over labels [B,H,W] -> the row m [B] whose features are nearest over all
        classes present (the sum over them of squared distances; vid2vid's edge2face get_face_features). Rows
        m >= counts[c] of a present class c never win."""
        label_nc, k, _ = self.centers.shape
        onehot = F.one_hot(labels.long().clamp(0, label_nc - 1), label_nc).to(features.dtype)  # [B,H,W,L]
        area = onehot.sum(dim=(1, 2))  # [B,L]
        means = torch.einsum("bhwl,bchw->blc", onehot, features) / area.clamp(min=1).unsqueeze(-1)  # [B,L,C]
        d2 = (means.unsqueeze(2) - self.centers.to(means).unsqueeze(0)).square().sum(-1)  # [B,L,K]
        valid = torch.arange(k, device=d2.device) < self.counts.unsqueeze(1)  # [L,K]
        d2 = torch.where(valid, d2, torch.inf)
        present = (area > 0).unsqueeze(-1)  # [B,L,1]
        return torch.where(present, d2, 0.0).sum(1).argmin(dim=1)  # [B]

    @torch.no_grad()
    def rows(self, labels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """labels [B,H,W], rows [B] -> features [B,C,H,W]: every pixel of class c in image b gets
        centers[c, rows[b]] (clamped to the class's rows; zero for a class without any)."""
        label_nc = self.centers.shape[0]
        classes = labels.long().clamp(0, label_nc - 1)  # [B,H,W]
        counts = self.counts[classes]  # [B,H,W]
        pick = torch.minimum(rows.view(-1, 1, 1).to(counts), (counts - 1).clamp(min=0))
        chosen = self.centers[classes, pick] * (counts > 0).unsqueeze(-1)  # [B,H,W,C]
        return rearrange(chosen, "b h w c -> b c h w")

    def unseen_classes(self, labels: torch.Tensor) -> list[int]:
        """The label ids present in labels [...,H,W] that have no centres (never seen when fitting)."""
        present = torch.unique(labels.long()).clamp(0, len(self.counts) - 1)
        return [int(c) for c in present[self.counts[present] == 0]]


def instance_map(labels: torch.Tensor, inst: torch.Tensor | None) -> torch.Tensor:
    """The map the feature encoder pools over: the instance ids, or the label ids when a dataset has
    no instance maps (every class region one instance). [B,H,W] -> [B,H,W]."""
    return labels if inst is None else inst


@torch.no_grad()
def encode_instances(encoder: FeatureEncoder, batches, device: torch.device | str = "cpu"
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance features of a dataset for FeatureBank.fit. batches: dicts with frames [B,3,H,W] in [-1,1],
    labels [B,H,W] and optionally inst [B,H,W] -> (features [N,C] on the CPU, classes [N]), N instances."""
    feats, classes = [], []
    for batch in batches:
        labels = batch["labels"].to(device)
        inst = instance_map(labels, batch["inst"].to(device) if batch.get("inst") is not None else None)
        pooled = encoder(batch["frames"].to(device), inst)  # [B,C,H,W], constant over each instance
        f, c = FeatureBank.instance_features(pooled.float(), labels, inst)
        feats.append(f.cpu())
        classes.append(c.cpu())
    if not feats:
        raise ValueError("encode_instances: no batches")
    return torch.cat(feats), torch.cat(classes)


def style_features(encoder: FeatureEncoder, style: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
    """Features from a style image: style [1 or B,3,Hs,Ws] in [-1,1] is resized (bilinear) to the frame size
    and encoded, then pooled over the frame's instances inst [B,H,W] -> [B,C,H,W]. With the frame's own
    photo as the style this is pix2pixHD's encoded-image mode."""
    b, h, w = inst.shape
    style = style.to(inst.device).expand(b, -1, -1, -1)
    if style.shape[-2:] != (h, w):
        style = F.interpolate(style, size=(h, w), mode="bilinear", align_corners=False)
    return encoder(style, inst)


def vae_z(encoder: VAEEncoder | None, n: int, z_dim: int, style: torch.Tensor | None = None,
          generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """SPADE's z [n,z_dim] for generation: from a style image [1 or n,3,H,W] in [-1,1] (the encoder's mean, or a
    draw around it with `generator`), else z ~ N(0, I) from `generator` (a CPU generator: the same z on any
    device) or the global RNG."""
    if style is None:
        return torch.randn(n, z_dim, generator=generator).to(device)
    mu, logvar = encoder(style.to(device))
    mu, logvar = mu.expand(n, -1), logvar.expand(n, -1)
    if generator is None:
        return mu
    eps = torch.randn(mu.shape, generator=generator).to(mu)
    return mu + torch.exp(0.5 * logvar) * eps


# ----------------------------------------------------------------------------------------------
# SPADE
# ----------------------------------------------------------------------------------------------



class SPADEGenerator(nn.Module):
    """SPADE generator. Starts from the semantics downsampled (nearest) by 2^k (k = 5/6/7 for
    normal/more/most), or, with use_vae, from z [B,z_dim] through a linear layer; then SPADE residual
    blocks head_0, G_middle_0, G_middle_1 (16 ngf), up_0..up_3 (8, 4, 2, 1 ngf) [up_4 (ngf/2) for
    "most"] with nearest x2 upsampling between them; LeakyReLU, conv3 -> 3, tanh.

    norm: "spectralinstance"/"spectralbatch" (spectral norm on the block convs) or "instance"/"batch":
    the parameter-free norm inside SPADE. size (H, W) is the output size, needed only with use_vae.

    forward(semantics [B,C,H,W], z [B,z_dim] | None) -> [B,3,H,W]. With use_vae, z comes from the
    VAE encoder (reparameterize(mu, logvar)) in training; z=None samples z ~ N(0, I).
    """

    def __init__(self, semantic_nc: int, *, ngf: int = 64, num_upsampling_layers: str = "normal",
                 size: tuple[int, int] = (256, 512), use_vae: bool = False, z_dim: int = 256,
                 norm: str = "spectralinstance", hidden: int = 128):
        super().__init__()
        if num_upsampling_layers not in SPADE_UPSAMPLINGS:
            raise ValueError(f"num_upsampling_layers must be one of {list(SPADE_UPSAMPLINGS)}")
        kind = base_norm(norm)
        self.num_upsampling_layers = num_upsampling_layers
        self.stride = 2 ** SPADE_UPSAMPLINGS[num_upsampling_layers]
        self.use_vae, self.z_dim, self.size = use_vae, z_dim, tuple(size)
        self.sh, self.sw = size[0] // self.stride, size[1] // self.stride
        top = 16 * ngf
        if use_vae:
            if size[0] % self.stride or size[1] % self.stride:
                raise ValueError(f"size {size} must be divisible by {self.stride}")
            self.fc = nn.Linear(z_dim, top * self.sh * self.sw)
        else:
            self.fc = nn.Conv2d(semantic_nc, top, 3, padding=1)

        def block(fin: int, fout: int) -> SPADEResnetBlock:
            return SPADEResnetBlock(fin, fout, semantic_nc, spectral=is_spectral(norm), param_free=kind,
                                    hidden=hidden)

        self.head_0 = block(top, top)
        self.G_middle_0 = block(top, top)
        self.G_middle_1 = block(top, top)
        self.up_0 = block(16 * ngf, 8 * ngf)
        self.up_1 = block(8 * ngf, 4 * ngf)
        self.up_2 = block(4 * ngf, 2 * ngf)
        self.up_3 = block(2 * ngf, ngf)
        final_nc = ngf
        if num_upsampling_layers == "most":
            self.up_4 = block(ngf, ngf // 2)
            final_nc = ngf // 2
        self.conv_img = nn.Conv2d(final_nc, 3, 3, padding=1)

    def forward(self, semantics: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        b, _, h, w = semantics.shape
        if h % self.stride or w % self.stride:
            raise ValueError(f"input size {h}x{w} must be divisible by {self.stride}")
        if self.use_vae:
            if (h, w) != self.size:
                raise ValueError(f"this VAE generator was built for {self.size[0]}x{self.size[1]}, got {h}x{w}")
            if z is None:
                z = torch.randn(b, self.z_dim, device=semantics.device, dtype=semantics.dtype)
            x = rearrange(self.fc(z), "b (c h w) -> b c h w", h=self.sh, w=self.sw)
        else:
            x = self.fc(F.interpolate(semantics, size=(h // self.stride, w // self.stride), mode="nearest"))
        seg = semantics
        x = self.head_0(x, seg)
        x = self.G_middle_0(_up2(x), seg)
        if self.num_upsampling_layers in ("more", "most"):
            x = _up2(x)
        x = self.G_middle_1(x, seg)
        for block in (self.up_0, self.up_1, self.up_2, self.up_3):
            x = block(_up2(x), seg)
        if self.num_upsampling_layers == "most":
            x = self.up_4(_up2(x), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class VAEEncoder(nn.Module):
    """SPADE's image encoder for multimodal synthesis: the image is resized (bilinear) to
    image_size x image_size, then log2(image_size / 4) stride-2 conv3 layers (widths ndf * 1, 2, 4, 8,
    8, ...) with norm and LeakyReLU 0.2 (convs followed by a norm have no bias), flattened 4x4 maps,
    and linear heads for mu and logvar.

    forward(image [B,3,H,W]) -> (mu [B,z_dim], logvar [B,z_dim]).
    """

    def __init__(self, input_nc: int = 3, *, ndf: int = 64, z_dim: int = 256, image_size: int = 256,
                 norm: str = "spectralinstance"):
        super().__init__()
        n_layers = int(math.log2(image_size // 4))
        if image_size < 8 or 4 * 2**n_layers != image_size:
            raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
        self.image_size = image_size
        bias = base_norm(norm) == "none"
        layers, cin = [], input_nc
        for i in range(n_layers):
            cout = ndf * min(2**i, 8)
            conv = maybe_spectral(nn.Conv2d(cin, cout, 3, 2, 1, bias=bias), is_spectral(norm))
            layers += [conv, norm_layer(norm, cout), nn.LeakyReLU(0.2)]
            cin = cout
        self.model = nn.Sequential(*layers)
        self.fc_mu = nn.Linear(cin * 16, z_dim)
        self.fc_var = nn.Linear(cin * 16, z_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if image.shape[-2:] != (self.image_size, self.image_size):
            image = F.interpolate(image, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        h = rearrange(self.model(image), "b c h w -> b (c h w)")
        return self.fc_mu(h), self.fc_var(h)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


# ----------------------------------------------------------------------------------------------
# BatchNorm at inference (model.norm_at_inference)
# ----------------------------------------------------------------------------------------------


class BatchStatsAtInference(nn.BatchNorm2d):
    """A BatchNorm2d that normalises with the input's own batch statistics in eval mode too (the original
    vid2vid's inference, whose test.py never calls .eval()); the running statistics are kept and left
    untouched at inference. Training is plain BatchNorm2d. The state dict is BatchNorm2d's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


def use_batch_stats_at_inference(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every BatchNorm2d of `model` to BatchStatsAtInference (enabled) or back; returns the model."""
    for module in model.modules():
        if enabled and type(module) is nn.BatchNorm2d:
            module.__class__ = BatchStatsAtInference
        elif not enabled and type(module) is BatchStatsAtInference:
            module.__class__ = nn.BatchNorm2d
    return model
