"""model.init_from: start the video generator's image branch from a trained per-frame pix2pixHD generator.

The per-frame global generator and scale 0 of the video generator (backbone pix2pixhd) share one layout:

    pix2pixHD   conv7 | n_downsample down convs | n_blocks residual blocks | n_downsample up convs | conv7 + tanh
    vid2vid     label_encoder (conv7, downs, the first n_blocks - n_blocks//2 blocks) | image_decoder (the other
                n_blocks//2 blocks, ups) | to_image

so those weights copy one to one, in order. The only difference is the first conv's input: the video model
reads n_frames_G label maps (oldest first), the per-frame model one; its weights go to the current frame's
channels and the older frames' channels start at zero. With the frame encoder's output added at the bottleneck
the copied branch is not exactly the per-frame model, but close: on the demo dataset its hallucinated frame is
within 21-22 dB PSNR of the per-frame model's output before any training, against 12 dB from a random start.
With model.zero_init_frames the frame encoder joins through a conv1x1 started at zero, and the hallucinated frame
starts as the per-frame model's exactly.
The frame encoder, the flow/weight head, warp_features' convs, the foreground branch (narrower than the
per-frame model) and the finer spatial scales start fresh.

Why: on a small budget the video model's output converges to its own hallucination (the blend keeps ~20% of
it every frame), so a hallucination as good as the per-frame model's is what keeps long renders from fading
to blur. Training then spends its steps on the flow, the blend and the foreground.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vid2vid.checkpoint import load_generator
from vid2vid.errors import ConfigError
from vid2vid.families import family

MATCHED = ("ngf", "n_downsample", "n_blocks", "norm")  # model.* keys both models must share


def image_branch(scale0: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The video generator's scale-0 image branch as (key, tensor) in the per-frame generator's order."""
    parts = (("label_encoder", scale0.label_encoder), ("image_decoder", scale0.image_decoder),
             ("to_image", scale0.to_image))
    return [(f"{name}.{key}", value) for name, part in parts for key, value in part.state_dict().items()]


def check_compatible(image_cfg, cfg, source: Path) -> None:
    """The exported per-frame model must be a plain pix2pixHD global generator of the video model's layout."""
    fix = (f"train the per-frame model with the same model.ngf / n_downsample / n_blocks / norm as this config "
           f"({', '.join(f'{k} {getattr(cfg.model, k)}' for k in MATCHED)}) or leave model.init_from empty")
    if not family(image_cfg).seeds_video_model or image_cfg.model.n_local_enhancers or image_cfg.model.feat_num:
        raise ConfigError(f"model.init_from: {source} holds a {image_cfg.model.name} model (n_local_enhancers "
                          f"{image_cfg.model.n_local_enhancers}, feat_num {image_cfg.model.feat_num}); it must be "
                          "a pix2pixhd global generator (n_local_enhancers 0, feat_num 0); " + fix)
    for key in MATCHED:
        theirs, ours = getattr(image_cfg.model, key), getattr(cfg.model, key)
        if theirs != ours:
            raise ConfigError(f"model.init_from: {source} has model.{key} {theirs}, this model {ours}; {fix}")


def warm_start(G: nn.Module, cfg) -> int:
    """Copy cfg.model.init_from's exported pix2pixHD weights into G's scale-0 image branch; returns how many
    tensors were copied. G: a VideoGenerator (model.name vid2vid, backbone pix2pixhd)."""
    source = Path(cfg.model.init_from)
    image_G, image_cfg = load_generator(source)
    check_compatible(image_cfg, cfg, source)
    theirs = list(image_G.state_dict().items())
    ours = image_branch(G.scales[0])
    if len(theirs) != len(ours):
        raise ConfigError(f"model.init_from: {source} has {len(theirs)} weight tensors where the video model's "
                          f"image branch has {len(ours)}; export the per-frame model again with this version")
    with torch.no_grad():
        for (key, dst), (src_key, value) in zip(ours, theirs):
            if dst.shape == value.shape:
                dst.copy_(value)
            elif dst.dim() == 4 and dst.shape[1] == G.n_frames_G * value.shape[1] and dst.shape[2:] == value.shape[2:]:
                dst.zero_()  # the first conv [ngf, n_frames_G * C, 7, 7] <- [ngf, C, 7, 7]: the current frame's
                dst[:, -value.shape[1]:] = value  # maps are the last C channels, the older frames' start at zero
            elif not key.endswith("._v"):  # spectral norm's power-iteration vector of that conv re-converges
                raise ConfigError(f"model.init_from: {source}: {src_key} {tuple(value.shape)} does not fit "
                                  f"{key} {tuple(dst.shape)}; use the same data.label_nc / use_instance "
                                  "(the semantic channels per frame) for both models")
    return len(ours)
