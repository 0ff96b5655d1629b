"""The model families: one entry per model.name, the one answer to "which kind of model is this?".

A family's facts need no model code: the stride a crop size must be divisible by, whether the generator is
sequential (one frame at a time through vid2vid.temporal), which encoders train with it, and its config rules
(small functions of the resolved config that yield the problems they find). vid2vid.config checks a config with
them and vid2vid.models.build pairs each family with its builder, so this module sits below both; it imports
nothing of the project but vid2vid.errors.

    family(cfg).sequential        # the video model?
    family("spade").stride(cfg.model)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from vid2vid.errors import ConfigError

SPADE_UPSAMPLINGS = {"normal": 5, "more": 6, "most": 7}  # SPADE's num_upsampling_layers -> stride 2^n


class Problem(NamedTuple):
    """A broken config rule: the key, its value and the rule (vid2vid.config raises it as a ConfigError)."""

    key: str
    value: Any
    rule: str


def fg_labels_problem(fg_labels: Sequence[int], label_nc: int, *, required: bool) -> str | None:
    """The one rule of the video model's foreground label ids (data.fg_labels): ids in [0, label_nc), and, when the
    foreground branch is on (required), at least one. None when they are fine."""
    if any(not 0 <= i < label_nc for i in fg_labels):
        return f"every id must be in [0, data.label_nc={label_nc})"
    if required and not fg_labels:
        return "must name the foreground label ids with model.use_fg: true; list them or set model.use_fg: false"
    return None


def foreground_labels(fg_labels: Sequence[int], label_nc: int, use_fg: bool) -> list[int]:
    """The foreground ids a video generator composes with: fg_labels when use_fg (checked by fg_labels_problem,
    a ValueError otherwise), else none."""
    if not use_fg:
        return []
    problem = fg_labels_problem(fg_labels, label_nc, required=True)
    if problem is not None:
        raise ValueError(f"fg_labels {list(fg_labels)}: {problem}")
    return list(fg_labels)


def fg_width(ngf: int, n_downsample: int) -> int:
    """The foreground branch's width at a scale of width ngf: ngf // 2 when the GLOBAL n_downsample > 2, else ngf
    (the original's rule, at every scale)."""
    return ngf // 2 if n_downsample > 2 else ngf


def scales_problem(ngf: int, n_downsample: int, n_scales: int, use_fg: bool) -> str | None:
    """Why these widths cannot make n_scales spatial scales (scale s has width ngf / 2^s), or None."""
    if n_scales < 1:
        return f"n_scales_spatial must be >= 1, got {n_scales}"
    finest = ngf // 2 ** (n_scales - 1)
    if ngf % 2 ** (n_scales - 1) or (use_fg and fg_width(finest, n_downsample) < 1):
        least = 2 ** (n_scales - 1) * (2 if use_fg and n_downsample > 2 else 1)
        return (f"n_scales_spatial {n_scales} halves the width at every finer scale: ngf ({ngf}) must be a multiple "
                f"of {2 ** (n_scales - 1)} and at least {least} (the foreground branch's width is at least 1)")
    return None


# ----------------------------------------------------------------------------------------------
# Per-family config rules (cfg: a vid2vid.config.Config)
# ----------------------------------------------------------------------------------------------


def _per_frame_rules(cfg: Any) -> Iterator[Problem]:
    """What only the video model has: a backbone choice, a warm start, finer spatial scales, a blend init."""
    m = cfg.model
    if m.init_from:
        yield Problem("model.init_from", m.init_from,
                      "starts a vid2vid model with backbone pix2pixhd only; leave it empty for this model")
    if m.backbone != "pix2pixhd":
        yield Problem("model.backbone", m.backbone,
                      "only model.name: vid2vid has a backbone choice; for a per-frame SPADE set model.name: spade")
    if m.n_scales_spatial > 1:
        yield Problem("model.n_scales_spatial", m.n_scales_spatial, "finer spatial scales exist for model.name: "
                      "vid2vid with the pix2pixhd backbone only; set it to 1")
    if m.blend_init is not None:
        yield Problem("model.blend_init", m.blend_init, "applies to model.name: vid2vid only; set it to null")
    yield from _video_options_off(m, "model.name: vid2vid")


# model.* options of the pix2pixhd video generator only: (key, its off value, that value as a config spells it)
PIX2PIXHD_VIDEO_OPTIONS = (("flow_prior", "none", "none"), ("warp_gate", "none", "none"), ("flow_deadzone", 0, "0"),
                           ("zero_init_frames", False, "false"), ("blend", "linear", "linear"))


def _video_options_off(m: Any, owner: str) -> Iterator[Problem]:
    """A Problem for each PIX2PIXHD_VIDEO_OPTIONS key that is on in a model other than `owner` says."""
    for key, off, spelled in PIX2PIXHD_VIDEO_OPTIONS:
        if getattr(m, key) != off:
            yield Problem(f"model.{key}", getattr(m, key), f"applies to {owner} only; set it to {spelled}")


def _needs_norm(norm: str) -> Iterator[Problem]:
    if norm == "none":
        yield Problem("model.norm", norm, "spade (and model.backbone: spade) needs a parameter-free norm to modulate: "
                      "instance, batch, spectralinstance or spectralbatch")


def _spade_rules(cfg: Any) -> Iterator[Problem]:
    m = cfg.model
    yield from _per_frame_rules(cfg)
    yield from _needs_norm(m.norm)
    if m.num_upsampling_layers == "most" and m.ngf < 2:
        yield Problem("model.ngf", m.ngf, "must be >= 2 with num_upsampling_layers: most (its last block has ngf/2)")


def _vid2vid_rules(cfg: Any) -> Iterator[Problem]:
    m, d = cfg.model, cfg.data
    if m.n_frames_G > d.n_frames:
        yield Problem("model.n_frames_G", m.n_frames_G,
                      f"must be <= data.n_frames ({d.n_frames}): a clip must hold the history")
    if d.condition != "labels" and m.use_fg:
        yield Problem("model.use_fg", m.use_fg, f"the foreground branch needs label maps (data.fg_labels); set it to "
                      f"false with data.condition {d.condition}")
    if d.contain_dontcare_label:
        yield Problem("data.contain_dontcare_label", d.contain_dontcare_label,
                      "the video model has no don't-care channel: set it to false")
    if m.backbone == "spade":
        if m.init_from:
            yield Problem("model.init_from", m.init_from,
                          "starts a vid2vid model with backbone pix2pixhd only; leave it empty for this model")
        yield from _video_options_off(m, "the pix2pixhd backbone")
        yield from _needs_norm(m.norm)
        if m.n_downsample < 2:
            yield Problem("model.n_downsample", m.n_downsample, "must be >= 2 with model.backbone: spade (the warped "
                          "previous frame conditions its last two levels)")
    if m.n_scales_spatial > 1:
        if m.backbone != "pix2pixhd":
            yield Problem("model.n_scales_spatial", m.n_scales_spatial, "finer spatial scales exist for model.name: "
                          "vid2vid with the pix2pixhd backbone only; set it to 1")
        problem = scales_problem(m.ngf, m.n_downsample, m.n_scales_spatial, m.use_fg)
        if problem is not None:
            yield Problem("model.ngf", m.ngf, problem)


# ----------------------------------------------------------------------------------------------
# The families
# ----------------------------------------------------------------------------------------------


def _pix2pixhd_stride(m: Any) -> int:
    stride = 2 ** (m.n_downsample + m.n_local_enhancers)
    return max(stride, 2**m.n_downsample_E) if m.feat_num else stride


@dataclass(frozen=True)
class Family:
    """What the rest of the code needs to know about one generator family (model.name)."""

    name: str
    stride: Callable[[Any], int]  # model section -> what crop sizes must be divisible by
    rules: Callable[[Any], Iterator[Problem]] = _per_frame_rules  # config -> its problems for this family
    sequential: bool = False  # the video generator: one frame at a time through temporal.unroll
    encoders: tuple[str, ...] = ()  # the config switches of the encoders trained with G (network "E")
    seeds_video_model: bool = False  # its plain export can start a video model's image branch (model.init_from)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("pix2pix", lambda m: 2**m.unet_downs),
    Family("pix2pixhd", _pix2pixhd_stride, encoders=("model.feat_num",), seeds_video_model=True),
    Family("spade", lambda m: 2 ** SPADE_UPSAMPLINGS[m.num_upsampling_layers], _spade_rules,
           encoders=("model.use_vae",)),
    Family("vid2vid", lambda m: 2 ** (m.n_downsample + m.n_scales_spatial - 1), _vid2vid_rules, sequential=True),
)}


def family(cfg_or_name: Any) -> Family:
    """The family of a model name, a model section (cfg.model) or a whole config."""
    name = cfg_or_name if isinstance(cfg_or_name, str) else getattr(cfg_or_name, "model", cfg_or_name).name
    if name not in FAMILIES:
        raise ConfigError(f"model.name: {name!r} is not a known generator; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def is_sequential(cfg_or_name: Any) -> bool:
    """The video model (a history of frames, temporal.unroll / step) rather than a per-frame model."""
    return family(cfg_or_name).sequential
