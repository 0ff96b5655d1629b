"""The vid2vid sequential generator: label history + previous outputs -> hallucinated frame, flow, blend weight.

One generated frame t (all at one spatial scale, N = n_frames_G):

    labels      [B,N,C,H,W]    semantics of frames t-N+1 .. t, oldest first (one-hot + optional edge)
    prev_frames [B,N-1,3,H,W]  the N-1 previous outputs, oldest first
      -> label encoder + frame encoder (same layout, own weights), outputs summed    [B,ngf*2^d,H/2^d,W/2^d]
      -> image head: residual blocks, d transposed convs, conv7 + tanh               raw  h_t   [B,3,H,W]
      -> flow head:  same trunk, conv7 * flow_scale (pixels, t -> t-1)               flow       [B,2,H,W]
                                 conv7 + sigmoid                                     weight w_t [B,1,H,W]
      final_t = w_t * h_t + (1 - w_t) * backward_warp(final_{t-1}, flow_t)

With a foreground branch (use_fg), a label-only generator always hallucinates the foreground; its mask
is the current frame's one-hot channels of the foreground label ids (not learned), and both final and raw
become fg * mask + x * (1 - mask) (the original's composition, see shared/fixtures/README_originals.md).

warp_features (ours, off = the original exactly): the image head's decoder features of the previous
frame are warped with the predicted flow (resized to each decoder resolution) and added to the current
decoder features through zero-initialised 1x1 convs, so at initialisation the model equals the plain one
and texture can follow motion once trained.

Spatial scales (model.n_scales_spatial = S; `VideoGenerator.scales`, coarsest first). Scale 0 is the generator
above (`CoarseVideoScale`, width ngf) at 1/2^(S-1) of the output resolution; scale s >= 1 (`FineVideoScale`,
width ngf_s = ngf / 2^s) doubles the resolution, local-enhancer style (the original's CompositeLocalGenerator):

    labels_s [B,N,C,H_s,W_s], prev_frames_s [B,N-1,3,H_s,W_s]
      -> label encoder + frame encoder (conv7, one stride-2 conv3; own weights), summed    [B,2ngf_s,H_s/2,W_s/2]
      -> + the coarser scale's last image features -> n_blocks_local residual blocks, one transposed conv
                                                     -> conv7 + tanh                     raw h_t      [B,3,H_s,W_s]
      -> + the coarser scale's last flow features  -> (same layout, own weights)      -> flow (x 20 * 2^s), weight
      foreground branch (use_fg): its own label-only encoder (width ngf_fg = ngf_s // 2 when the global
      n_downsample > 2, else ngf_s: the original's rule) + the coarser foreground features -> the same head layout
      composition as at scale 0; each scale's outputs feed the next finer one.

The inputs of every scale come from one pyramid (avg-pool 3, stride 2, pad 1, padding not counted: the
original's): the label stack of the finest active scale pooled once per scale (coarse labels, edges and
foreground masks are fractional). Each scale keeps its own history of previous outputs (temporal.History
coarse_frames); the first time, the coarse histories are the same pyramid of the finest one (seed frames), which
is the original's test-time behaviour (and its training's). warp_features acts at scale 0 only. Progressive
training activates the scales coarsest first (set_active_scales): the output comes from the finest active scale,
at 1/2^(S-k) of the full resolution with k active scales. Losses see the finest output only; a coarser scale's
own image / flow / weight heads make its history frames, so they learn through the recurrence (within a
detach_every chunk), as in the original.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from flow import backward_warp
from vid2vid.data.encoding import semantic_channels
from vid2vid.errors import ConfigError
from vid2vid.families import fg_labels_problem, fg_width, foreground_labels, scales_problem
from vid2vid.models.layers import ResnetBlock, down_layers, downsample, front_layers, image_layers, up_layers

FLOW_SCALE = 20.0  # the flow conv's output times this = pixels at scale 0 (the original's choice)
DETAIL_SIGMA = 1.5  # px: model.blend two_band's fine band is x - Gaussian(x, this) (the README's detail figure's band)


@dataclass
class VideoOutput:
    """What the generator returns for one frame (B = batch, H x W = the frame size)."""

    final: torch.Tensor  # [B,3,H,W] composed frame (= raw when raw_only)
    raw: torch.Tensor  # [B,3,H,W] hallucinated frame, foreground composed in
    flow: torch.Tensor  # [B,2,H,W] pixels, from frame t to frame t-1 (backward warp), ch0 = x
    weight: torch.Tensor  # [B,1,H,W] in (0,1): weight of the hallucinated frame; 1 - weight: the warped one
    warped: torch.Tensor  # [B,3,H,W] the previous output warped by flow
    fg_mask: torch.Tensor | None  # [B,1,H,W] foreground mask from the label ids (None without use_fg)
    foreground: torch.Tensor | None  # [B,3,H,W] the foreground branch's image (None without use_fg)
    image_features: list[torch.Tensor]  # image-head decoder outputs, coarse to fine: [B,ngf*2^(d-1-i),H/2^(d-1-i),.]
    flow_features: torch.Tensor  # [B,ngf,H,W] last flow-head decoder features
    fg_features: torch.Tensor | None  # [B,ngf_fg,H,W] last foreground decoder features
    coarser: list[VideoOutput] = field(default_factory=list)  # the coarser active scales' outputs, coarsest first
    # model.warp_gate shown: the semantics [B,C,H,W] the final frame shows (w * labels_t + (1 - w) * the previous
    # frame's, warped), carried to the next frame's gate; None with other gates
    shown: torch.Tensor | None = None


def encoder_layers(input_nc: int, ngf: int, n_downsample: int, n_blocks: int, norm: str) -> list[nn.Module]:
    """reflect-pad 3, conv7, norm, ReLU; n_downsample stride-2 conv3 (channels doubling); n_blocks residual blocks."""
    layers = front_layers(input_nc, ngf, norm)
    for i in range(n_downsample):
        layers += down_layers(ngf * 2**i, ngf * 2 ** (i + 1), norm)
    return layers + [ResnetBlock(ngf * 2**n_downsample, norm) for _ in range(n_blocks)]


class Decoder(nn.Module):
    """n_blocks residual blocks at the bottleneck, then n_downsample transposed-conv levels (each doubles
    the size and halves the width). Returns every level's output, coarse to fine, so that callers can
    fuse into (and keep) the features at each decoder resolution."""

    def __init__(self, ngf: int, n_downsample: int, n_blocks: int, norm: str):
        super().__init__()
        self.blocks = nn.Sequential(*[ResnetBlock(ngf * 2**n_downsample, norm) for _ in range(n_blocks)])
        self.ups = nn.ModuleList(
            nn.Sequential(*up_layers(ngf * 2**i, ngf * 2 ** (i - 1), norm)) for i in range(n_downsample, 0, -1))

    def forward(self, x: torch.Tensor, fuse: Callable[[int, torch.Tensor], torch.Tensor] | None = None
                ) -> list[torch.Tensor]:
        """x [B,ngf*2^d,h,w] -> [level 0 [B,ngf*2^(d-1),2h,2w], ..., level d-1 [B,ngf,H,W]]; fuse(level, x)
        may change a level's output before the next level sees it."""
        x = self.blocks(x)
        levels = []
        for level, up in enumerate(self.ups):
            x = up(x)
            if fuse is not None:
                x = fuse(level, x)
            levels.append(x)
        return levels or [x]


def init_blend_weight(G: nn.Module, weight: float) -> int:
    """Every blend-weight head of G (`to_weight`: pad, conv, sigmoid) outputs `weight` at every pixel: conv weights
    zero, bias logit(weight). Returns the number of heads set."""
    heads = [m for name, m in G.named_modules() if name.split(".")[-1] == "to_weight"]
    with torch.no_grad():
        for head in heads:
            conv = head[1]
            conv.weight.zero_()
            conv.bias.fill_(math.log(weight / (1 - weight)))
    return len(heads)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """flow [B,2,H,W] in pixels -> [B,2,h,w] in pixels of the (h, w) grid: area average, then x scaled by w/W
    and y by h/H."""
    height, width = flow.shape[-2:]
    if (height, width) == tuple(size):
        return flow
    scale = flow.new_tensor([size[1] / width, size[0] / height]).view(1, 2, 1, 1)
    return F.interpolate(flow, size=size, mode="area") * scale


def pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """x [B,N,C,H,W] -> `levels` tensors, coarsest first: [B,N,C,H/2^(levels-1),.], ..., x itself; each level
    the avg-pool (3, stride 2, pad 1, padding not counted) of the next finer one."""
    out = [x]
    for _ in range(levels - 1):
        n = out[0].shape[1]
        flat = downsample(rearrange(out[0], "b n c h w -> (b n) c h w"))
        out.insert(0, rearrange(flat, "(b n) c h w -> b n c h w", n=n))
    return out


def check_fg_labels(cfg) -> None:
    """data.fg_labels for a video generator built from cfg (the families' one rule), a ConfigError when broken."""
    problem = fg_labels_problem(cfg.data.fg_labels, cfg.data.label_nc, required=cfg.model.use_fg)
    if cfg.model.use_fg and problem is not None:
        raise ConfigError(f"data.fg_labels: {list(cfg.data.fg_labels)} {problem}")


def foreground_layers(label_nc: int, fg_ngf: int, n_downsample: int, n_blocks: int, norm: str
                      ) -> tuple[nn.Module, Decoder, nn.Module]:
    """The label-only foreground branch (encoder, decoder, image head) of the scale-0 generators."""
    return (nn.Sequential(*encoder_layers(label_nc, fg_ngf, n_downsample, 0, norm)),
            Decoder(fg_ngf, n_downsample, n_blocks, norm), nn.Sequential(*image_layers(fg_ngf, 3)))


def flow_head(ngf: int) -> nn.Sequential:
    """features [B,ngf,H,W] -> flow [B,2,H,W] (before flow_scale): pad, 7x7 conv, zero-initialised so that a new
    model starts at zero flow (the identity warp). PyTorch's default init starts it at random flow of about 6 px
    mean, 60 px max (x flow_scale 20), which 300 CPU steps did not unlearn (worse than zero flow; BENCHMARKS)."""
    head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, 2, 7))
    nn.init.zeros_(head[1].weight)
    nn.init.zeros_(head[1].bias)
    return head


def composition_flow(scale: nn.Module, flow: torch.Tensor) -> torch.Tensor:
    """The flow [B,2,H,W] a scale warps (and gates) its previous output and features with: detached when the scale's
    `detach_composition_flow` is set (model.flow_trained_by: flow_terms, set_flow_options), so that only the flow
    and warp terms train the flow head; vectors shorter than the scale's `flow_deadzone` px set to zero
    (model.flow_deadzone: a still background carried as an exact copy)."""
    flow = flow.detach() if getattr(scale, "detach_composition_flow", False) else flow
    deadzone = getattr(scale, "flow_deadzone", 0.0)
    if deadzone > 0:
        flow = flow * (flow.square().sum(1, keepdim=True) >= deadzone**2)
    return flow


def flow_prior(scale: nn.Module, labels: torch.Tensor) -> torch.Tensor | float:
    """What a scale's flow head output is added to: label_flow(labels, prior) when the scale's `flow_prior` is
    labels or edges (model.flow_prior, set_flow_options), else 0."""
    prior = getattr(scale, "flow_prior", "none")
    return 0.0 if prior == "none" else label_flow(labels, prior)


def set_flow_options(G: nn.Module, *, trained_by: str = "all", prior: str = "none", gate: str = "none",
                     gate_window: int = 1, gate_margin: int = 0, gate_tolerance: float = 0.0,
                     gate_opening: int = 0, deadzone: float = 0.0, blend: str = "linear", fine_power: float = 4.0
                     ) -> int:
    """model.flow_trained_by (all | flow_terms), model.flow_prior (none | labels | edges) and model.warp_gate (none |
    labels, over gate_window px: model.warp_gate_window, hard within gate_margin px: model.warp_gate_margin, full
    agreement from 1 - gate_tolerance: model.warp_gate_tolerance, hard over parts gate_opening px wide:
    model.warp_gate_opening), model.blend (linear | two_band, its fine band at w^fine_power: model.blend_fine_power)
    and model.flow_deadzone (px) on every flow head of G (modules with `to_flow`) -> how many were set."""
    for key, value, allowed in (("flow_trained_by", trained_by, ("all", "flow_terms")),
                                ("flow_prior", prior, ("none", "labels", "edges")),
                                ("warp_gate", gate, ("none", "labels", "shown")),
                                ("blend", blend, ("linear", "two_band"))):
        if value not in allowed:
            raise ValueError(f"{key} must be {' or '.join(allowed)}, got {value!r}")
    if gate_window < 1 or gate_window % 2 == 0:
        raise ValueError(f"warp_gate_window must be an odd number of pixels >= 1, got {gate_window}")
    if gate_margin < 0:
        raise ValueError(f"warp_gate_margin must be >= 0 pixels, got {gate_margin}")
    if not fine_power >= 1:
        raise ValueError(f"blend_fine_power must be >= 1, got {fine_power}")
    if not 0 <= gate_tolerance < 0.5:
        raise ValueError(f"warp_gate_tolerance must be in [0, 0.5), got {gate_tolerance}")
    if deadzone < 0:
        raise ValueError(f"flow_deadzone must be >= 0 pixels, got {deadzone}")
    if gate_opening < 0:
        raise ValueError(f"warp_gate_opening must be >= 0 pixels, got {gate_opening}")
    scales = [m for m in G.modules() if hasattr(m, "to_flow")]
    for scale in scales:
        scale.detach_composition_flow = trained_by == "flow_terms"
        scale.flow_prior = prior
        scale.warp_gate_window = gate_window if gate != "none" else 0
        scale.warp_gate_shown = gate == "shown"
        scale.warp_gate_margin = gate_margin
        scale.warp_gate_tolerance = gate_tolerance
        scale.warp_gate_opening = gate_opening
        scale.flow_deadzone = deadzone
        scale.blend_fine_power = fine_power if blend == "two_band" else None
    return len(scales)


def label_agreement(labels: torch.Tensor, flow: torch.Tensor, window: int = 1, margin: int = 0,
                    mode: str = "bilinear", tolerance: float = 0.0, shown: torch.Tensor | None = None,
                    opening: int = 0) -> torch.Tensor:
    """labels [B,N,C,H,W] (frames ..t-1, t), flow [B,2,H,W] t -> t-1 -> [B,1,H,W] in [0,1]: how far frame t-1's
    input channels, warped by the flow, agree with frame t's: 1 - half the L1 distance over channels of the two
    maps box-filtered over window x window px (window 1: per pixel, 0 where a one-hot class differs). Where they
    disagree the flow is wrong (or the content new), so the warped previous frame must not be used there; the
    window makes a displacement of a whole region count and a pixel's class noise (labels of a noisy clip) not.
    margin > 0: hard, 1 only where the maps agree (to 1e-3) at every pixel within `margin` px, else 0: a boundary
    pixel's partial agreement (bilinear sampling across it) passes no colour of the other class on, which a
    region where the labels keep agreeing (a road) would otherwise carry along, frame after frame.
    mode: how the labels are warped (bilinear; nearest for a scale that warps its frames so: whole-pixel moves).
    tolerance t > 0: agreement / (1 - t), at most 1: a few noisy pixels in the window (each costs 2 / window^2) then
    leave the warped frame whole, where the plain gate mixes a few per cent of the hallucinated frame into every
    window around them, and mixing two textures every frame fades both (BENCHMARKS.md, issue 25, session 12).
    shown [B,C,H,W] (model.warp_gate shown): the semantics the previous output shows, compared in place of frame
    t-1's input: a region the blend updated only in part keeps disagreeing until it shows frame t's content.
    opening > 0 (model.warp_gate_opening): hard, 0 where the maps disagree (agreement below one half) in a part at
    least `opening` px wide (binary_opening), else 1: a noisy pixel passes nothing, a changed region is re-drawn
    whole (its fine texture too, under blend two_band). With `shown`, a thinner change (a person moved a pixel)
    keeps disagreeing and is re-drawn when it has grown `opening` px wide."""
    previous = labels[:, -2] if shown is None else shown
    warped = backward_warp(previous, flow, mode)  # [B,C,H,W]
    difference = warped - labels[:, -1]
    if window > 1:
        difference = F.avg_pool2d(difference, window, stride=1, padding=window // 2, count_include_pad=False)
    agreement = (1 - 0.5 * difference.abs().sum(1, keepdim=True)).clamp(0, 1)  # [B,1,H,W]
    if tolerance > 0:
        agreement = (agreement / (1 - tolerance)).clamp(max=1)
    if margin > 0:
        exact = (agreement > 1 - 1e-3).to(agreement.dtype)
        agreement = -F.max_pool2d(-exact, 2 * margin + 1, stride=1, padding=margin)  # a min over the margin
    if opening > 0:
        agreement = 1 - binary_opening((agreement < 0.5).to(agreement.dtype), opening)
    return agreement


def binary_opening(mask: torch.Tensor, size: int) -> torch.Tensor:
    """mask [B,1,H,W] of 0/1 -> its morphological opening by a size x size square (an erosion, then a dilation by
    the same square, outside the frame unset): every part narrower than `size` px removed, the rest as it was."""
    before, after = (size - 1) // 2, size // 2  # the square's extent left/up and right/down of its anchor
    eroded = -F.max_pool2d(F.pad(-mask, (before, after, before, after)), size, stride=1)
    return F.max_pool2d(F.pad(eroded, (after, before, after, before), value=0.0), size, stride=1)


def label_warp_mode(scale: nn.Module) -> str:
    """How a scale's gate warps label maps: as the scale warps its frames (nearest: whole-pixel moves), but bilinear
    for bilinear and bicubic (a bicubic one-hot map overshoots); nearest with the opened gate
    (model.warp_gate_opening), whose carried shown map must stay one class per pixel: bilinear resampling frame
    after frame blurs it below the gate's one-half threshold, and a wake of old content then never disagrees."""
    if getattr(scale, "warp_mode", "bilinear") == "nearest" or getattr(scale, "warp_gate_opening", 0):
        return "nearest"
    return "bilinear"


def gated_weight(scale: nn.Module, weight: torch.Tensor, labels: torch.Tensor, flow: torch.Tensor,
                 shown: torch.Tensor | None = None) -> torch.Tensor:
    """The blend weight of the hallucinated frame a scale composes with: its weight head's, raised to 1 where the
    warped previous labels (or `shown`: what the previous output shows, model.warp_gate shown) disagree with the
    current ones when the scale's `warp_gate_window` is set (model.warp_gate, set_flow_options):
    w' = 1 - (1 - w) * agreement. No gradient flows through the agreement."""
    window = getattr(scale, "warp_gate_window", 0)
    if not window:
        return weight
    if not getattr(scale, "warp_gate_shown", False):
        shown = None
    with torch.no_grad():
        agreement = label_agreement(labels.float(), flow.float(), window, scale.warp_gate_margin,
                                    label_warp_mode(scale), getattr(scale, "warp_gate_tolerance", 0.0),
                                    None if shown is None else shown.float(), getattr(scale, "warp_gate_opening", 0))
    agreement = agreement.to(weight.dtype)
    return 1 - (1 - weight) * agreement


_DIS: list = []  # one OpenCV DIS instance per process, made on first use


def label_flow(labels: torch.Tensor, render: str = "labels") -> torch.Tensor:
    """model.flow_prior: labels [B,N,C,H,W] (input channels of frames t-N+1..t, N >= 2) -> flow [B,2,H,W] in pixels,
    frame t -> t-1, no gradient: OpenCV DIS (fast preset down to full resolution, 10 variational refinement
    iterations, 8 px patches at stride 3) between grey renderings of frames t and t-1. render labels: each input
    channel a fixed grey level (a one-hot map gives every class its own grey); edges: the first channel (an edge map
    in [0,1], the face input's) x 255 (greys of the face input's 14 distance maps follow the motion worse:
    BENCHMARKS.md, issue 28). On the CPU (a GPU tensor makes a round trip)."""
    import cv2
    import numpy as np

    if not _DIS:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        dis.setFinestScale(0)
        dis.setVariationalRefinementIterations(10)
        dis.setPatchSize(8)
        dis.setPatchStride(3)
        _DIS.append(dis)
    with torch.no_grad():
        last_two = labels[:, -2:].float().cpu()  # [B,2,C,H,W]: frames t-1, t
        if render == "edges":
            grey = last_two[:, :, 0] * 255
        else:
            levels = torch.randperm(256, generator=torch.Generator().manual_seed(7))[:labels.shape[2]]
            grey = torch.einsum("bnchw,c->bnhw", last_two, levels.float().clamp(16, 240))
        grey = grey.clamp(0, 255).round().to(torch.uint8).numpy()  # [B,2,H,W]
        flows = [_DIS[0].calc(np.ascontiguousarray(g[1]), np.ascontiguousarray(g[0]), None) for g in grey]
    return rearrange(torch.from_numpy(np.stack(flows)), "b h w c -> b c h w").to(labels.device, labels.dtype)


def zero_fusion_convs(widths: Sequence[int]) -> nn.ModuleList:
    """warp_features' 1x1 convs, one per decoder level width, zero-initialised: at initialisation the model is
    the plain one."""
    convs = nn.ModuleList(nn.Conv2d(c, c, 1) for c in widths)
    for conv in convs:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return convs


def low_pass(x: torch.Tensor, sigma: float = DETAIL_SIGMA) -> torch.Tensor:
    """x [B,C,H,W] -> Gaussian-blurred per channel (separable, radius ceil(3 sigma), reflected borders)."""
    radius = math.ceil(3 * sigma)
    taps = torch.exp(-torch.arange(-radius, radius + 1, device=x.device).float().square() / (2 * sigma**2))
    taps = (taps / taps.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def blend(raw: torch.Tensor, warped: torch.Tensor, weight: torch.Tensor, fine_power: float | None = None
          ) -> torch.Tensor:
    """The composed frame: raw [B,3,H,W] (hallucinated) at weight w [B,1,H,W], warped [B,3,H,W] at 1 - w.
    fine_power None (model.blend linear, the original): w * raw + (1 - w) * warped. Else two bands (Burt &
    Adelson's blending, model.blend two_band): the coarse band of raw - warped at w, its fine band (x - low_pass(x))
    at w^fine_power. Blending two different fine textures at a small w every frame averages them, and an average of
    unrelated textures has less detail than either: over 30 frames that fades the carried texture (BENCHMARKS.md,
    issue 25); the fine band then follows only a w near 1, while colour still comes in at w. w 0 -> warped, 1 -> raw."""
    if fine_power is None:
        return weight * raw + (1 - weight) * warped
    difference = raw - warped
    coarse = low_pass(difference)
    return warped + weight * coarse + weight**fine_power * (difference - coarse)


def compose(raw: torch.Tensor, warped: torch.Tensor, weight: torch.Tensor, raw_only: bool,
            labels_t: torch.Tensor, fg_labels: list[int], foreground: torch.Tensor | None,
            fine_power: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The blend (`blend`) and the foreground composition of every scale -> (final, raw, fg_mask [B,1,H,W] or None).
    labels_t [B,C,H,W]: the current frame's semantics (the foreground mask is its fg_labels channels)."""
    final = raw if raw_only else blend(raw, warped, weight, fine_power)
    if foreground is None:
        return final, raw, None
    fg_mask = labels_t[:, fg_labels].sum(1, keepdim=True).clamp(0, 1)  # [B,1,H,W]
    return foreground * fg_mask + final * (1 - fg_mask), foreground * fg_mask + raw * (1 - fg_mask), fg_mask


class CoarseVideoScale(nn.Module):
    """Scale 0 of the sequential generator (the original's composite generator; see the module docstring).

    label_nc_per_frame: semantic channels per frame (one-hot labels first, then an optional edge channel);
    fg_labels index those one-hot channels. Sizes must be divisible by 2^n_downsample.
    """

    def __init__(self, label_nc_per_frame: int, n_frames_G: int = 3, *, ngf: int = 64, n_downsample: int = 3,
                 n_blocks: int = 9, norm: str = "instance", use_fg: bool = True, fg_labels: Sequence[int] = (),
                 warp_features: bool = True, flow_scale: float = FLOW_SCALE, warp_mode: str = "bilinear",
                 zero_init_frames: bool = False):
        super().__init__()
        if n_frames_G < 2:
            raise ValueError(f"n_frames_G must be >= 2 (the generator warps the previous frame), got {n_frames_G}")
        self.n_frames_G, self.flow_scale, self.warp_features = n_frames_G, flow_scale, warp_features
        self.warp_mode = warp_mode  # of the previous output (and features): bicubic keeps long renders sharp
        self.fg_labels = foreground_labels(fg_labels, label_nc_per_frame, use_fg)
        label_nc, frame_nc = label_nc_per_frame * n_frames_G, 3 * (n_frames_G - 1)
        bottom_blocks, top_blocks = n_blocks - n_blocks // 2, n_blocks // 2
        self.label_encoder = nn.Sequential(*encoder_layers(label_nc, ngf, n_downsample, bottom_blocks, norm))
        self.frame_encoder = nn.Sequential(*encoder_layers(frame_nc, ngf, n_downsample, bottom_blocks, norm))
        if zero_init_frames:  # model.zero_init_frames: the frame encoder joins through a conv1x1 started at zero
            self.frame_encoder.append(zero_fusion_convs([ngf * 2**n_downsample])[0])
        self.image_decoder = Decoder(ngf, n_downsample, top_blocks, norm)
        self.to_image = nn.Sequential(*image_layers(ngf, 3))
        self.flow_decoder = Decoder(ngf, n_downsample, top_blocks, norm)
        self.to_flow = flow_head(ngf)
        self.to_weight = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, 1, 7), nn.Sigmoid())
        if use_fg:
            self.fg_encoder, self.fg_decoder, self.fg_to_image = foreground_layers(
                label_nc, fg_width(ngf, n_downsample), n_downsample, n_blocks, norm)
        if warp_features:
            self.feature_fusion = zero_fusion_convs([ngf * 2 ** (n_downsample - 1 - i) for i in range(n_downsample)])

    def forward(self, labels: torch.Tensor, prev_frames: torch.Tensor,
                prev_features: list[torch.Tensor] | None = None, *, raw_only: bool = False,
                shown: torch.Tensor | None = None) -> VideoOutput:
        """labels [B,N,C,H,W] (frames t-N+1..t), prev_frames [B,N-1,3,H,W] (t-N+1..t-1), both oldest first;
        prev_features: image_features of frame t-1 (used with warp_features); raw_only: final = raw (no warp
        composition, e.g. while a zeros history fills up); shown [B,C,H,W]: the semantics frame t-1's output shows
        (model.warp_gate shown; None: frame t-1's labels)."""
        label_stack = rearrange(labels, "b n c h w -> b (n c) h w")
        frame_stack = rearrange(prev_frames, "b n c h w -> b (n c) h w")
        bottleneck = self.label_encoder(label_stack) + self.frame_encoder(frame_stack)  # [B,ngf*2^d,H/2^d,W/2^d]
        flow_features = self.flow_decoder(bottleneck)[-1]  # [B,ngf,H,W]
        flow = self.to_flow(flow_features) * self.flow_scale + flow_prior(self, labels)
        moving = composition_flow(self, flow)
        weight = gated_weight(self, self.to_weight(flow_features), labels, moving, shown)
        image_features = self.image_decoder(bottleneck, self._fusion(moving, prev_features))
        raw = self.to_image(image_features[-1])
        warped = backward_warp(prev_frames[:, -1], moving, self.warp_mode)
        foreground = fg_features = None
        if self.fg_labels:
            fg_features = self.fg_decoder(self.fg_encoder(label_stack))[-1]
            foreground = self.fg_to_image(fg_features)
        final, raw, fg_mask = compose(raw, warped, weight, raw_only, labels[:, -1], self.fg_labels, foreground,
                                      getattr(self, "blend_fine_power", None))
        return VideoOutput(final=final, raw=raw, flow=flow, weight=weight, warped=warped, fg_mask=fg_mask,
                           foreground=foreground, image_features=image_features, flow_features=flow_features,
                           fg_features=fg_features, shown=self._shown(labels, shown, moving, weight, raw_only))

    def _shown(self, labels: torch.Tensor, shown: torch.Tensor | None, flow: torch.Tensor, weight: torch.Tensor,
               raw_only: bool) -> torch.Tensor | None:
        """model.warp_gate shown: the semantics [B,C,H,W] this frame's output shows, the current labels at the blend
        weight and what the previous output showed (warped as it was) at 1 - weight; with the opened gate
        (model.warp_gate_opening) the current labels where it re-drew the frame (w 1) and what the previous output
        showed elsewhere (the weight head's small w lets colour in, not the content); None with other gates."""
        if not getattr(self, "warp_gate_shown", False):
            return None
        current = labels[:, -1].detach()
        if raw_only:
            return current
        previous = labels[:, -2] if shown is None else shown
        warped = backward_warp(previous.detach(), flow.detach(), label_warp_mode(self))
        w = weight.detach()
        if getattr(self, "warp_gate_opening", 0):
            return torch.where(w >= 1, current, warped)
        return w * current + (1 - w) * warped

    def _fusion(self, flow: torch.Tensor, prev_features: list[torch.Tensor] | None
                ) -> Callable[[int, torch.Tensor], torch.Tensor] | None:
        """The decoder hook of warp_features: level features + conv1x1(previous level features warped by flow)."""
        if not self.warp_features or prev_features is None:
            return None

        def fuse(level: int, x: torch.Tensor) -> torch.Tensor:
            warped = backward_warp(prev_features[level], resize_flow(flow, x.shape[-2:]), self.warp_mode)
            return x + self.feature_fusion[level](warped)

        return fuse


class FineVideoScale(nn.Module):
    """Scale s >= 1 of the sequential generator (the original's CompositeLocalGenerator; see the module
    docstring): width ngf (= the global ngf / 2^s), fg_ngf the foreground branch's width (fg_width), flow_scale
    20 * 2^s. Sizes must be even."""

    def __init__(self, label_nc_per_frame: int, n_frames_G: int = 3, *, ngf: int, n_blocks: int = 3,
                 norm: str = "instance", use_fg: bool = True, fg_labels: Sequence[int] = (), fg_ngf: int = 0,
                 flow_scale: float = 2 * FLOW_SCALE, warp_mode: str = "bilinear"):
        super().__init__()
        self.n_frames_G, self.flow_scale, self.warp_mode = n_frames_G, flow_scale, warp_mode
        self.fg_labels = foreground_labels(fg_labels, label_nc_per_frame, use_fg)
        label_nc, frame_nc = label_nc_per_frame * n_frames_G, 3 * (n_frames_G - 1)
        self.label_encoder = nn.Sequential(*encoder_layers(label_nc, ngf, 1, 0, norm))
        self.frame_encoder = nn.Sequential(*encoder_layers(frame_nc, ngf, 1, 0, norm))
        self.image_decoder = nn.Sequential(*local_decoder_layers(ngf, n_blocks, norm))
        self.to_image = nn.Sequential(*image_layers(ngf, 3))
        self.flow_decoder = nn.Sequential(*local_decoder_layers(ngf, n_blocks, norm))
        self.to_flow = flow_head(ngf)
        self.to_weight = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, 1, 7), nn.Sigmoid())
        if use_fg:
            self.fg_encoder = nn.Sequential(*encoder_layers(label_nc, fg_ngf, 1, 0, norm))
            self.fg_decoder = nn.Sequential(*local_decoder_layers(fg_ngf, n_blocks, norm))
            self.fg_to_image = nn.Sequential(*image_layers(fg_ngf, 3))

    def forward(self, labels: torch.Tensor, prev_frames: torch.Tensor, image_features: torch.Tensor,
                flow_features: torch.Tensor, fg_features: torch.Tensor | None = None, *,
                raw_only: bool = False) -> VideoOutput:
        """labels [B,N,C,H,W], prev_frames [B,N-1,3,H,W] (oldest first) at this scale; the coarser scale's last
        image / flow features [B,2ngf,H/2,W/2] and foreground features [B,2fg_ngf,H/2,W/2] (None without use_fg)."""
        label_stack = rearrange(labels, "b n c h w -> b (n c) h w")
        frame_stack = rearrange(prev_frames, "b n c h w -> b (n c) h w")
        encoded = self.label_encoder(label_stack) + self.frame_encoder(frame_stack)  # [B,2ngf,H/2,W/2]
        own_image_features = self.image_decoder(encoded + image_features)  # [B,ngf,H,W]
        own_flow_features = self.flow_decoder(encoded + flow_features)
        flow = self.to_flow(own_flow_features) * self.flow_scale + flow_prior(self, labels)
        moving = composition_flow(self, flow)
        weight = gated_weight(self, self.to_weight(own_flow_features), labels, moving)
        raw = self.to_image(own_image_features)
        warped = backward_warp(prev_frames[:, -1], moving, self.warp_mode)
        foreground = own_fg_features = None
        if self.fg_labels:
            own_fg_features = self.fg_decoder(self.fg_encoder(label_stack) + fg_features)  # [B,fg_ngf,H,W]
            foreground = self.fg_to_image(own_fg_features)
        final, raw, fg_mask = compose(raw, warped, weight, raw_only, labels[:, -1], self.fg_labels, foreground,
                                      getattr(self, "blend_fine_power", None))
        return VideoOutput(final=final, raw=raw, flow=flow, weight=weight, warped=warped, fg_mask=fg_mask,
                           foreground=foreground, image_features=[own_image_features],
                           flow_features=own_flow_features, fg_features=own_fg_features)


def local_decoder_layers(ngf: int, n_blocks: int, norm: str) -> list[nn.Module]:
    """A finer scale's head trunk: n_blocks residual blocks at width 2ngf, one transposed conv to ngf (+ norm,
    ReLU); the original's flat layout (blocks at indices 0..n_blocks-1, then the up layers)."""
    return [ResnetBlock(2 * ngf, norm) for _ in range(n_blocks)] + up_layers(2 * ngf, ngf, norm)


class VideoGenerator(nn.Module):
    """The sequential video generator over n_scales spatial scales, coarsest first (see the module docstring).

    forward(labels [B,N,C,H,W], prev_frames [B,N-1,3,H,W], prev_features=None, raw_only=False, coarse_frames=None)
    -> VideoOutput of the finest active scale (its `coarser`: the other active scales' outputs); labels and
    prev_frames at the finest active scale's resolution; coarse_frames: the coarser active scales' own previous
    outputs (coarsest first, [B,N-1,3,H/2^(k-1-s),.]), None = the pyramid of prev_frames. N = n_frames_G;
    C = label_nc_per_frame; sizes divisible by 2^(n_downsample + n_scales - 1).
    """

    def __init__(self, label_nc_per_frame: int, n_frames_G: int = 3, *, ngf: int = 64, n_downsample: int = 3,
                 n_blocks: int = 9, norm: str = "instance", use_fg: bool = True, fg_labels: Sequence[int] = (),
                 warp_features: bool = True, flow_scale: float = FLOW_SCALE, warp_mode: str = "bilinear",
                 n_scales: int = 1, n_blocks_local: int = 3, zero_init_frames: bool = False):
        super().__init__()
        problem = scales_problem(ngf, n_downsample, n_scales, use_fg)
        if problem:
            raise ValueError(problem)
        self.n_frames_G, self.warp_features = n_frames_G, warp_features
        self.scales = nn.ModuleList([CoarseVideoScale(
            label_nc_per_frame, n_frames_G, ngf=ngf, n_downsample=n_downsample, n_blocks=n_blocks, norm=norm,
            use_fg=use_fg, fg_labels=fg_labels, warp_features=warp_features, flow_scale=flow_scale,
            warp_mode=warp_mode, zero_init_frames=zero_init_frames)])
        for s in range(1, n_scales):
            width = ngf // 2**s
            self.scales.append(FineVideoScale(
                label_nc_per_frame, n_frames_G, ngf=width, n_blocks=n_blocks_local, norm=norm, use_fg=use_fg,
                fg_labels=fg_labels, fg_ngf=fg_width(width, n_downsample), flow_scale=flow_scale * 2**s,
                warp_mode=warp_mode))
        self.active_scales = n_scales  # progressive training: the coarsest k scales run (set_active_scales)

    def set_active_scales(self, k: int) -> None:
        if not 1 <= k <= len(self.scales):
            raise ValueError(f"active scales must be in [1, {len(self.scales)}], got {k}")
        self.active_scales = k

    def forward(self, labels: torch.Tensor, prev_frames: torch.Tensor,
                prev_features: list[torch.Tensor] | None = None, *, raw_only: bool = False,
                coarse_frames: Sequence[torch.Tensor] | None = None, shown: torch.Tensor | None = None
                ) -> VideoOutput:
        k = self.active_scales
        if k == 1:
            return self.scales[0](labels, prev_frames, prev_features, raw_only=raw_only, shown=shown)
        label_levels = pyramid(labels, k)  # coarsest first
        frame_levels = pyramid(prev_frames, k) if coarse_frames is None else [*coarse_frames, prev_frames]
        outputs = [self.scales[0](label_levels[0], frame_levels[0], prev_features, raw_only=raw_only)]
        for s in range(1, k):
            c = outputs[-1]
            outputs.append(self.scales[s](label_levels[s], frame_levels[s], c.image_features[-1], c.flow_features,
                                          c.fg_features, raw_only=raw_only))
        return replace(outputs[-1], coarser=outputs[:-1])


def build_video_generator(cfg) -> VideoGenerator:
    """VideoGenerator from a Config (model.*: ngf, n_downsample, n_blocks, norm, n_frames_G, use_fg,
    warp_features, n_scales_spatial, n_blocks_local; data.*: label_nc, use_instance, condition, face, fg_labels),
    every scale built (progressive training only changes the active ones). The registry's `vid2vid` entry."""
    m, d = cfg.model, cfg.data
    check_fg_labels(cfg)
    G = VideoGenerator(semantic_channels(d), m.n_frames_G, ngf=m.ngf,
                       n_downsample=m.n_downsample, n_blocks=m.n_blocks, norm=m.norm, use_fg=m.use_fg,
                       fg_labels=d.fg_labels, warp_features=m.warp_features, warp_mode=m.warp_mode,
                       n_scales=m.n_scales_spatial, n_blocks_local=m.n_blocks_local,
                       zero_init_frames=m.zero_init_frames)
    set_flow_options(G, trained_by=m.flow_trained_by, prior=m.flow_prior, gate=m.warp_gate,
                     gate_window=m.warp_gate_window, gate_margin=m.warp_gate_margin,
                     gate_tolerance=m.warp_gate_tolerance, gate_opening=m.warp_gate_opening,
                     deadzone=m.flow_deadzone, blend=m.blend,
                     fine_power=m.blend_fine_power)
    return G
