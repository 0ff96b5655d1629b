"""The sequential generator with a SPADE decoder (model.backbone: spade; the default backbone is pix2pixHD's).

One generated frame t (N = n_frames_G, C = semantic channels per frame, d = n_downsample >= 2, all at one
spatial scale):

    labels      [B,N,C,H,W]    semantics of frames t-N+1 .. t, oldest first (one-hot + optional edge)
    prev_frames [B,N-1,3,H,W]  the N-1 previous outputs, oldest first
      -> history encoder over cat(label history, previous frames): conv7, d stride-2 conv3,
         n_blocks - n_blocks//2 residual blocks                                          [B,ngf*2^d,H/2^d,W/2^d]
         (this starting map replaces SPADE's z / downsampled-segmentation start)
      -> n_blocks//2 SPADE residual blocks at the bottleneck, conditioned on labels_t    [B,ngf*2^d,H/2^d,W/2^d]
      -> d levels: x2 nearest upsampling, SPADE residual block halving the width         level i: [B,ngf*2^(d-1-i),
         levels 0..d-3 conditioned on labels_t [B,C,H,W];                                          H/2^(d-1-i),.]
         before level d-2, the flow + weight head reads the decoder features x           [B,4*ngf,H/4,W/4]
             -> 2 transposed-conv levels -> flow_features                                [B,ngf,H,W]
             -> conv7 * flow_scale: flow (pixels, t -> t-1)                              [B,2,H,W]
             -> conv7 + sigmoid: weight w_t                                              [B,1,H,W]
             warped = backward_warp(final_{t-1}, flow)                                   [B,3,H,W]
         levels d-2 and d-1 conditioned on cat(labels_t, warped, w_t)                    [B,C+4,H,W]
      -> LeakyReLU 0.2, conv3, tanh: raw h_t                                             [B,3,H,W]
      final_t = w_t * h_t + (1 - w_t) * warped         (the composition rule of vid2vid.models.video)

The label history in the encoder tells the flow head how the scene moved (labels_t alone only says where things
are now). With a foreground branch (use_fg) the pix2pixHD backbone's label-only foreground generator is used as
it is, and composed by the same rule (fg * mask + x * (1 - mask), mask = the foreground ids of labels_t).

warp_features: the flow exists only from level d-2 on, so the previous frame's outputs of the last two levels
are warped with it (resized to each level) and added through zero-initialised 1x1 convs; the earlier levels are
not fused. Spatial scales: this backbone has one (coarse-to-fine scales are the pix2pixHD backbone's).

SPADE's hidden width is min(128, 2 * ngf): SPADE's 128 at ngf 64, narrower for small CPU models.
The outputs are a vid2vid.models.video.VideoOutput, so temporal.unroll, the trainer, the renderer and the
export treat both backbones alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from flow import backward_warp
from vid2vid.data.encoding import semantic_channels
from vid2vid.families import fg_width, foreground_labels
from vid2vid.models.layers import SPADEResnetBlock, base_norm, is_spectral, up_layers
from vid2vid.models.video import (
    FLOW_SCALE,
    VideoOutput,
    check_fg_labels,
    compose,
    composition_flow,
    encoder_layers,
    flow_head,
    foreground_layers,
    resize_flow,
    set_flow_options,
    zero_fusion_convs,
)

N_WARP_CONDITIONED = 2  # the last levels that also see the warped previous frame and the weight


class SpadeVideoGenerator(nn.Module):
    """The sequential generator with a SPADE decoder (see the module docstring).

    label_nc_per_frame: semantic channels per frame (one-hot labels first, then an optional edge channel);
    fg_labels index those one-hot channels. norm: the encoder's norm and SPADE's parameter-free norm
    (instance | batch, optionally spectral*). Sizes must be divisible by 2^n_downsample.
    """

    def __init__(self, label_nc_per_frame: int, n_frames_G: int = 3, *, ngf: int = 64, n_downsample: int = 3,
                 n_blocks: int = 9, norm: str = "instance", use_fg: bool = True, fg_labels: Sequence[int] = (),
                 warp_features: bool = True, flow_scale: float = FLOW_SCALE, warp_mode: str = "bilinear"):
        super().__init__()
        if n_frames_G < 2:
            raise ValueError(f"n_frames_G must be >= 2 (the generator warps the previous frame), got {n_frames_G}")
        if n_downsample < N_WARP_CONDITIONED:
            raise ValueError(f"n_downsample must be >= {N_WARP_CONDITIONED} (the warped frame conditions the last "
                             f"{N_WARP_CONDITIONED} upsampling levels), got {n_downsample}")
        self.n_frames_G, self.flow_scale, self.warp_features = n_frames_G, flow_scale, warp_features
        self.warp_mode = warp_mode
        self.fg_labels = foreground_labels(fg_labels, label_nc_per_frame, use_fg)
        label_nc, frame_nc, d = label_nc_per_frame * n_frames_G, 3 * (n_frames_G - 1), n_downsample
        self.first_warp_level = d - N_WARP_CONDITIONED
        self.encoder = nn.Sequential(*encoder_layers(label_nc + frame_nc, ngf, d, n_blocks - n_blocks // 2, norm))

        def block(fin: int, fout: int, cond_nc: int) -> SPADEResnetBlock:
            return SPADEResnetBlock(fin, fout, cond_nc, spectral=is_spectral(norm), param_free=base_norm(norm),
                                    hidden=min(128, 2 * ngf))

        top = ngf * 2**d
        self.middle = nn.ModuleList(block(top, top, label_nc_per_frame) for _ in range(n_blocks // 2))
        self.ups = nn.ModuleList(
            block(ngf * 2 ** (d - i), ngf * 2 ** (d - 1 - i),
                  label_nc_per_frame + (4 if i >= self.first_warp_level else 0)) for i in range(d))
        self.conv_img = nn.Conv2d(ngf, 3, 3, padding=1)
        self.flow_decoder = nn.Sequential(*up_layers(4 * ngf, 2 * ngf, norm), *up_layers(2 * ngf, ngf, norm))
        self.to_flow = flow_head(ngf)
        self.to_weight = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, 1, 7), nn.Sigmoid())
        if use_fg:  # the pix2pixHD backbone's foreground branch, as it is
            self.fg_encoder, self.fg_decoder, self.fg_to_image = foreground_layers(
                label_nc, fg_width(ngf, d), d, n_blocks, norm)
        if warp_features:
            self.feature_fusion = zero_fusion_convs([ngf * 2 ** (d - 1 - i) for i in range(self.first_warp_level, d)])

    def forward(self, labels: torch.Tensor, prev_frames: torch.Tensor,
                prev_features: list[torch.Tensor] | None = None, *, raw_only: bool = False) -> VideoOutput:
        """labels [B,N,C,H,W] (frames t-N+1..t), prev_frames [B,N-1,3,H,W] (t-N+1..t-1), both oldest first;
        prev_features: image_features of frame t-1 (used with warp_features); raw_only: final = raw."""
        label_stack = rearrange(labels, "b n c h w -> b (n c) h w")
        frame_stack = rearrange(prev_frames, "b n c h w -> b (n c) h w")
        labels_t = labels[:, -1]  # [B,C,H,W]
        x = self.encoder(torch.cat([label_stack, frame_stack], dim=1))  # [B,ngf*2^d,H/2^d,W/2^d]
        for block in self.middle:
            x = block(x, labels_t)
        image_features = []
        for level, block in enumerate(self.ups):
            if level == self.first_warp_level:  # x [B,4*ngf,H/4,W/4]
                flow_features = self.flow_decoder(x)  # [B,ngf,H,W]
                flow = self.to_flow(flow_features) * self.flow_scale
                weight = self.to_weight(flow_features)
                warped = backward_warp(prev_frames[:, -1], composition_flow(self, flow), self.warp_mode)
                cond = torch.cat([labels_t, warped, weight], dim=1)  # [B,C+4,H,W]
            x = block(F.interpolate(x, scale_factor=2, mode="nearest"),
                      cond if level >= self.first_warp_level else labels_t)
            if level >= self.first_warp_level:
                x = self._fuse(level, x, composition_flow(self, flow), prev_features)
            image_features.append(x)
        raw = torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))
        foreground = fg_features = None
        if self.fg_labels:
            fg_features = self.fg_decoder(self.fg_encoder(label_stack))[-1]
            foreground = self.fg_to_image(fg_features)
        final, raw, fg_mask = compose(raw, warped, weight, raw_only, labels_t, self.fg_labels, foreground)
        return VideoOutput(final=final, raw=raw, flow=flow, weight=weight, warped=warped, fg_mask=fg_mask,
                           foreground=foreground, image_features=image_features, flow_features=flow_features,
                           fg_features=fg_features)

    def _fuse(self, level: int, x: torch.Tensor, flow: torch.Tensor, prev_features: list[torch.Tensor] | None
              ) -> torch.Tensor:
        """warp_features: level features + conv1x1(the previous frame's level features warped by flow)."""
        if not self.warp_features or prev_features is None:
            return x
        warped = backward_warp(prev_features[level], resize_flow(flow, x.shape[-2:]), self.warp_mode)
        return x + self.feature_fusion[level - self.first_warp_level](warped)


def build_spade_video_generator(cfg) -> SpadeVideoGenerator:
    """SpadeVideoGenerator from a Config (model.*: ngf, n_downsample, n_blocks, norm, n_frames_G, use_fg,
    warp_features, warp_mode; data.*: label_nc, use_instance, condition, face, fg_labels). The registry's `vid2vid`
    entry with model.backbone: spade."""
    m, d = cfg.model, cfg.data
    check_fg_labels(cfg)
    G = SpadeVideoGenerator(semantic_channels(d), m.n_frames_G, ngf=m.ngf,
                            n_downsample=m.n_downsample, n_blocks=m.n_blocks, norm=m.norm, use_fg=m.use_fg,
                            fg_labels=d.fg_labels, warp_features=m.warp_features, warp_mode=m.warp_mode)
    set_flow_options(G, trained_by=m.flow_trained_by, prior=m.flow_prior)
    return G
