"""RAFT (Teed & Deng, ECCV 2020): recurrent all-pairs field transforms for optical flow.

Module names follow torchvision's implementation, so torchvision state dicts load unchanged and
the flow matches torchvision's numerically. Differences that do not change the final flow:
- any input size: images are replicate-padded to multiples of 8 (and to >= 128 px per side, so
  the coarsest correlation level has >= 2 pixels) and the flow is cropped back;
- the (convex) upsampling runs only for the iterations whose flow is returned;
- correlation is selectable: 'all_pairs' (the paper) or 'on_demand' (no O((HW/64)^2) volume).

Images are in [-1, 1]; the flow maps pixel x of image 1 to x + flow(x) in image 2, in pixels,
channel 0 = x, channel 1 = y.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from flow.corr import CORR_MODES, build_corr
from flow.errors import FlowError
from flow.warp import crop, pad_image

MIN_SIZE = 128  # the 1/8 feature map must be >= 16 px for the 4-level pyramid


def conv_norm_act(cin, cout, kernel, *, stride=1, norm=None, act=True, padding=None) -> nn.Sequential:
    """conv (with bias) -> optional norm -> optional ReLU, as a Sequential (indices 0, 1, 2)."""
    padding = (kernel - 1) // 2 if padding is None else padding
    layers = [nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=True)]
    if norm == "instance":
        layers.append(nn.InstanceNorm2d(cout))
    elif norm == "batch":
        layers.append(nn.BatchNorm2d(cout))
    elif norm is not None:
        raise FlowError(f"unknown norm {norm!r}: use 'instance', 'batch' or None")
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 conv-norm-ReLU, a projected shortcut when striding, ReLU after the sum."""

    def __init__(self, cin, cout, *, norm, stride=1):
        super().__init__()
        self.convnormrelu1 = conv_norm_act(cin, cout, 3, stride=stride, norm=norm)
        self.convnormrelu2 = conv_norm_act(cout, cout, 3, norm=norm)
        self.downsample = nn.Identity() if stride == 1 else conv_norm_act(cin, cout, 1, stride=stride, norm=norm,
                                                                         act=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.downsample(x) + self.convnormrelu2(self.convnormrelu1(x)))


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 with cout/4 inner channels, projected shortcut when striding."""

    def __init__(self, cin, cout, *, norm, stride=1):
        super().__init__()
        mid = cout // 4
        self.convnormrelu1 = conv_norm_act(cin, mid, 1, norm=norm)
        self.convnormrelu2 = conv_norm_act(mid, mid, 3, stride=stride, norm=norm)
        self.convnormrelu3 = conv_norm_act(mid, cout, 1, norm=norm)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Identity() if stride == 1 else conv_norm_act(cin, cout, 1, stride=stride, norm=norm,
                                                                         act=False)

    def forward(self, x):
        y = self.convnormrelu3(self.convnormrelu2(self.convnormrelu1(x)))
        return self.relu(self.downsample(x) + y)


class Encoder(nn.Module):
    """Image [B,3,H,W] -> features [B,dims[4],H/8,W/8]: conv7 s2, three stages of two blocks, 1x1."""

    def __init__(self, *, dims, block, norm):
        super().__init__()
        block_cls = {"residual": ResidualBlock, "bottleneck": BottleneckBlock}[block]
        self.convnormrelu = conv_norm_act(3, dims[0], 7, stride=2, norm=norm)
        for index, (cin, cout, stride) in enumerate(zip(dims[0:3], dims[1:4], (1, 2, 2)), start=1):
            stage = nn.Sequential(block_cls(cin, cout, norm=norm, stride=stride), block_cls(cout, cout, norm=norm))
            self.add_module(f"layer{index}", stage)
        self.conv = nn.Conv2d(dims[3], dims[4], 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.convnormrelu(x)
        return self.conv(self.layer3(self.layer2(self.layer1(x))))


class MotionEncoder(nn.Module):
    """(flow [B,2,h,w], correlation [B,K,h,w]) -> motion features [B,out,h,w] (flow appended last)."""

    def __init__(self, *, corr_channels, corr_layers, flow_layers, out_channels):
        super().__init__()
        self.convcorr1 = conv_norm_act(corr_channels, corr_layers[0], 1)
        self.convcorr2 = conv_norm_act(corr_layers[0], corr_layers[1], 3) if len(corr_layers) == 2 else None
        self.convflow1 = conv_norm_act(2, flow_layers[0], 7)
        self.convflow2 = conv_norm_act(flow_layers[0], flow_layers[1], 3)
        self.conv = conv_norm_act(corr_layers[-1] + flow_layers[1], out_channels - 2, 3)

    def forward(self, flow, corr):
        corr = self.convcorr1(corr)
        if self.convcorr2 is not None:
            corr = self.convcorr2(corr)
        motion = self.conv(torch.cat([corr, self.convflow2(self.convflow1(flow))], dim=1))
        return torch.cat([motion, flow], dim=1)


class ConvGRU(nn.Module):
    """Convolutional GRU over x = cat(context, motion); the context is the same at every update.

    Its convolutions see cat(h, context, motion) (the checkpoints' layout). A convolution is a sum over
    input channels, so `prepare` convolves the fixed context once per image pair (bias included) and each
    `forward` convolves only cat(h, motion): one convolution for z and r together, one for q.
    """

    def __init__(self, *, input_size, hidden_size, kernel, padding):
        super().__init__()
        cin = input_size + hidden_size
        self.convz = nn.Conv2d(cin, hidden_size, kernel, padding=padding)
        self.convr = nn.Conv2d(cin, hidden_size, kernel, padding=padding)
        self.convq = nn.Conv2d(cin, hidden_size, kernel, padding=padding)

    def prepare(self, context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """context [B,Cc,h,w] -> (weights of z|r and of q on cat(h, motion), context terms of z|r [B,2C,h,w]
        and of q [B,C,h,w])."""
        hidden, convs = self.convz.out_channels, (self.convz, self.convr, self.convq)
        moving = [torch.cat([c.weight[:, :hidden], c.weight[:, hidden + context.shape[1] :]], dim=1) for c in convs]
        fixed = slice(hidden, hidden + context.shape[1])
        terms = F.conv2d(context, torch.cat([c.weight[:, fixed] for c in convs]), torch.cat([c.bias for c in convs]),
                         padding=self.convz.padding)
        zr_terms, q_terms = terms.split([2 * hidden, hidden], dim=1)
        layout = torch.channels_last if context.is_contiguous(memory_format=torch.channels_last) else None
        zr_weight, q_weight = torch.cat(moving[:2]), moving[2]
        if layout is not None:  # as the inputs (a convolution would otherwise convert them at every call)
            zr_weight, q_weight = zr_weight.contiguous(memory_format=layout), q_weight.contiguous(memory_format=layout)
        return zr_weight, q_weight, zr_terms, q_terms

    def forward(self, h, motion, prepared):
        zr_weight, q_weight, zr_terms, q_terms = prepared
        zr = F.conv2d(torch.cat([h, motion], dim=1), zr_weight, padding=self.convz.padding).add_(zr_terms).sigmoid_()
        z, r = zr.chunk(2, dim=1)
        q = F.conv2d(torch.cat([r * h, motion], dim=1), q_weight, padding=self.convq.padding).add_(q_terms).tanh_()
        return torch.lerp(h, q, z)  # (1 - z) h + z q


class RecurrentBlock(nn.Module):
    """One 3x3 ConvGRU (small) or a separable 1x5 then 5x1 pair (large)."""

    def __init__(self, *, input_size, hidden_size, separable):
        super().__init__()
        if separable:
            self.convgru1 = ConvGRU(input_size=input_size, hidden_size=hidden_size, kernel=(1, 5), padding=(0, 2))
            self.convgru2 = ConvGRU(input_size=input_size, hidden_size=hidden_size, kernel=(5, 1), padding=(2, 0))
        else:
            self.convgru1 = ConvGRU(input_size=input_size, hidden_size=hidden_size, kernel=3, padding=1)
            self.convgru2 = None

    def grus(self) -> list[ConvGRU]:
        return [self.convgru1] if self.convgru2 is None else [self.convgru1, self.convgru2]

    def prepare(self, context: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        return [gru.prepare(context) for gru in self.grus()]

    def forward(self, h, motion, prepared):
        for gru, fixed in zip(self.grus(), prepared):
            h = gru(h, motion, fixed)
        return h


class FlowHead(nn.Module):
    def __init__(self, *, in_channels, hidden_size):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden_size, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_size, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.conv2(self.relu(self.conv1(x)))


class UpdateBlock(nn.Module):
    """(hidden, correlation, flow) -> (new hidden, flow update); `prepare(context)` once per image pair."""

    def __init__(self, *, motion_encoder, recurrent_block, flow_head):
        super().__init__()
        self.motion_encoder = motion_encoder
        self.recurrent_block = recurrent_block
        self.flow_head = flow_head

    def prepare(self, context: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        return self.recurrent_block.prepare(context)

    def forward(self, hidden, prepared, corr, flow):
        hidden = self.recurrent_block(hidden, self.motion_encoder(flow, corr), prepared)
        return hidden, self.flow_head(hidden)


class MaskPredictor(nn.Module):
    """hidden [B,C,h,w] -> convex upsampling weights [B,8*8*9,h,w] (scaled by 0.25 as in RAFT)."""

    def __init__(self, *, in_channels, hidden_size=256, multiplier=0.25):
        super().__init__()
        self.convrelu = conv_norm_act(in_channels, hidden_size, 3)
        self.conv = nn.Conv2d(hidden_size, 8 * 8 * 9, 1)
        self.multiplier = multiplier

    def forward(self, x):
        return self.multiplier * self.conv(self.convrelu(x))


def upsample_flow(flow_low: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """flow [B,2,h,w] at 1/8 (in 1/8 pixels) -> [B,2,8h,8w] in pixels: convex combination of the
    3x3 neighbours with softmax(mask) weights, or bilinear (align_corners=True) without a mask."""
    batch, _, h, w = flow_low.shape
    if mask is None:
        return 8 * F.interpolate(flow_low, size=(8 * h, 8 * w), mode="bilinear", align_corners=True)
    weights = torch.softmax(mask.float().reshape(batch, 1, 9, 8, 8, h, w), dim=2)
    neighbours = F.unfold(8 * flow_low, kernel_size=3, padding=1).view(batch, 2, 9, 1, 1, h, w)
    up = (weights * neighbours).sum(dim=2)  # [B,2,8(y),8(x),h,w]
    return rearrange(up, "b c sy sx h w -> b c (h sy) (w sx)")


def coords_grid(batch: int, height: int, width: int, device) -> torch.Tensor:
    """[B,2,H,W] float32 pixel coordinates (x, y)."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    return torch.stack([xs, ys]).float()[None].expand(batch, -1, -1, -1)


class RAFT(nn.Module):
    """The RAFT network; build it with `raft_small()` or `raft_large()`."""

    def __init__(
        self,
        *,
        feature_dims,
        context_dims,
        block,
        context_norm,
        radius,
        corr_layers,
        flow_layers,
        motion_channels,
        hidden_size,
        separable_gru,
        flow_head_size,
        convex_upsampling,
        num_levels=4,
        corr="all_pairs",
    ):
        super().__init__()
        self.feature_encoder = Encoder(dims=feature_dims, block=block, norm="instance")
        self.context_encoder = Encoder(dims=context_dims, block=block, norm=context_norm)
        corr_channels = num_levels * (2 * radius + 1) ** 2
        motion = MotionEncoder(corr_channels=corr_channels, corr_layers=corr_layers, flow_layers=flow_layers,
                               out_channels=motion_channels)
        context_size = context_dims[-1] - hidden_size
        recurrent = RecurrentBlock(input_size=motion_channels + context_size, hidden_size=hidden_size,
                                   separable=separable_gru)
        self.update_block = UpdateBlock(motion_encoder=motion, recurrent_block=recurrent,
                                        flow_head=FlowHead(in_channels=hidden_size, hidden_size=flow_head_size))
        self.mask_predictor = MaskPredictor(in_channels=hidden_size) if convex_upsampling else None
        for part in (self.update_block, self.mask_predictor):  # their weights as the updates take them (refine)
            if part is not None:
                part.to(memory_format=torch.channels_last)
        self.hidden_size = hidden_size
        self.num_levels = num_levels
        self.radius = radius
        self.corr = corr  # 'all_pairs' or 'on_demand'; may be changed on a built model

    @property
    def corr(self) -> str:
        return self._corr

    @corr.setter
    def corr(self, mode: str) -> None:
        if mode not in CORR_MODES:
            raise FlowError(f"unknown correlation mode {mode!r}: use one of {', '.join(CORR_MODES)}")
        self._corr = mode

    # -- pieces (also used by flow.video, which encodes each frame once) --------------------------
    def encode_features(self, images: torch.Tensor) -> torch.Tensor:
        """[N,3,H,W] (padded) -> matching features [N,C,H/8,W/8]."""
        return self.feature_encoder(images)

    def encode_context(self, image1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B,3,H,W] (padded) -> (initial hidden state (tanh), context (ReLU)), each [B,*,H/8,W/8]."""
        hidden, context = self.context_encoder(image1).split(
            [self.hidden_size, self.context_encoder.conv.out_channels - self.hidden_size], dim=1)
        return torch.tanh(hidden), F.relu(context)

    def refine(self, fmap1, fmap2, hidden, context, *, iters, flow_low=None, upsample="last"):
        """Run the recurrent updates.

        flow_low: initial flow at 1/8 resolution in 1/8-pixel units [B,2,h,w] (None = zero).
        upsample: 'last' (only the final flow), 'all' (every iteration) or 'none'.
        Returns (full-resolution flows [list of B,2,8h,8w], final low-resolution flow [B,2,h,w]).
        """
        corr_fn = build_corr(fmap1, fmap2, mode=self.corr, num_levels=self.num_levels, radius=self.radius)
        batch, _, h, w = fmap1.shape
        # The updates run channels-last on the CPU (oneDNN's convolutions are faster so; the correlation
        # lookup returns that layout), the encoders NCHW (no faster there).
        layout = torch.channels_last if fmap1.device.type == "cpu" else torch.contiguous_format
        hidden, context = hidden.contiguous(memory_format=layout), context.contiguous(memory_format=layout)
        coords0 = coords_grid(batch, h, w, fmap1.device).contiguous(memory_format=layout)
        coords1 = coords0 if flow_low is None else coords0 + flow_low.float()
        prepared = self.update_block.prepare(context)
        flows = []
        for step in range(iters):
            coords1 = coords1.detach()  # no gradient through the coordinates (as in the paper)
            corr = corr_fn(coords1)
            flow = coords1 - coords0
            hidden, delta = self.update_block(hidden, prepared, corr.to(context.dtype), flow.to(context.dtype))
            coords1 = coords1 + delta.float()
            if upsample == "all" or (upsample == "last" and step == iters - 1):
                flows.append(self.upsample(coords1 - coords0, hidden))
        return flows, coords1 - coords0

    def upsample(self, flow_low: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        mask = None if self.mask_predictor is None else self.mask_predictor(hidden)
        with torch.autocast(flow_low.device.type, enabled=False):
            return upsample_flow(flow_low.float(), mask)

    # -- the public call ----------------------------------------------------------------------------
    def forward(self, image1, image2, iters=12, flow_init=None, return_all=False):
        """image1, image2 [B,3,H,W] in [-1,1], any H, W -> flow [B,2,H,W] in pixels (float32), or the
        list of all `iters` flows when return_all. flow_init [B,2,H,W]: initial flow in pixels."""
        if image1.ndim != 4 or image1.shape[1] != 3 or image1.shape != image2.shape:
            raise FlowError(f"RAFT needs two images [B,3,H,W] of the same shape, got {tuple(image1.shape)} "
                            f"and {tuple(image2.shape)}")
        if iters < 1:
            raise FlowError(f"iters must be >= 1, got {iters}")
        batch, _, height, width = image1.shape
        image1, padding = pad_image(image1, multiple=8, min_size=(MIN_SIZE, MIN_SIZE))
        image2, _ = pad_image(image2, multiple=8, min_size=(MIN_SIZE, MIN_SIZE))
        flow_low = None
        if flow_init is not None:
            if tuple(flow_init.shape) != (batch, 2, height, width):
                raise FlowError(f"flow_init must have shape [B,2,H,W] like the images, got {tuple(flow_init.shape)}")
            padded = F.pad(flow_init.float(), tuple(padding), mode="replicate") if any(padding) else flow_init.float()
            flow_low = F.avg_pool2d(padded, 8) / 8
        if self.corr == "on_demand" and not torch.is_grad_enabled():
            fmap1, fmap2 = self.encode_features(image1), self.encode_features(image2)  # lower peak memory
        else:
            fmap1, fmap2 = self.encode_features(torch.cat([image1, image2])).chunk(2)
        hidden, context = self.encode_context(image1)
        flows, _ = self.refine(fmap1, fmap2, hidden, context, iters=iters, flow_low=flow_low,
                               upsample="all" if return_all else "last")
        flows = [crop(f, padding) for f in flows]
        return flows if return_all else flows[-1]


def raft_large(*, corr: str = "all_pairs") -> RAFT:
    """RAFT large (5,257,536 parameters), torchvision's module names; random initialisation."""
    return RAFT(feature_dims=(64, 64, 96, 128, 256), context_dims=(64, 64, 96, 128, 256), block="residual",
                context_norm="batch", radius=4, corr_layers=(256, 192), flow_layers=(128, 64), motion_channels=128,
                hidden_size=128, separable_gru=True, flow_head_size=256, convex_upsampling=True, corr=corr)


def raft_small(*, corr: str = "all_pairs") -> RAFT:
    """RAFT small (990,162 parameters), torchvision's module names; random initialisation."""
    return RAFT(feature_dims=(32, 32, 64, 96, 128), context_dims=(32, 32, 64, 96, 160), block="bottleneck",
                context_norm=None, radius=3, corr_layers=(96,), flow_layers=(64, 32), motion_channels=82,
                hidden_size=96, separable_gru=False, flow_head_size=128, convex_upsampling=False, corr=corr)
