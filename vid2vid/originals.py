"""Option and state-dict key maps from the original NVIDIA checkpoints to our modules, one section per
architecture, and one strict converter for all of them.

Each architecture has a name function `original key -> our key` (rules written from the key layouts in
shared/fixtures/README_originals.md) and an options function `original option dict -> builder keyword
arguments`. `convert_state_dict` applies a name function and checks the result against the target model:
every original key must be used and every entry of the model's state dict must be set, with equal shapes;
otherwise a ConfigError lists each mismatch by name and shape. (The originals' own loaders silently fall
back to a partial load; this one never does.)

Sections: vid2vid scale 0 (`vid2vid_G0`). pix2pixHD and SPADE follow the same pattern.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from vid2vid.errors import ConfigError

# ----------------------------------------------------------------------------------------------
# vid2vid, scale 0: the original CompositeGenerator -> vid2vid.models.video.VideoGenerator
# ----------------------------------------------------------------------------------------------

VID2VID_G0_PREFIX = "scales.0."

# Original module -> ours. Sequential indices carry over unchanged for these modules.
_VID2VID_G0_SAME_INDICES = {
    "model_down_seg": "label_encoder",
    "model_down_img": "frame_encoder",
    "indv_down": "fg_encoder",
    "model_res_img": "image_decoder.blocks",
    "model_res_flow": "flow_decoder.blocks",
    "indv_res": "fg_decoder.blocks",
    "model_final_img": "to_image",
    "model_final_flow": "to_flow",
    "model_final_w": "to_weight",
    "indv_final": "fg_to_image",
}
# Original flat decoder Sequentials (3 layers per level: ConvT, norm, ReLU) -> our per-level Sequentials.
_VID2VID_G0_UP = {"model_up_img": "image_decoder.ups", "model_up_flow": "flow_decoder.ups", "indv_up": "fg_decoder.ups"}


def vid2vid_g0_name(key: str) -> str:
    """An original vid2vid G0 state-dict key -> our VideoGenerator key (e.g. 'model_up_img.3.weight' ->
    'scales.0.image_decoder.ups.1.0.weight'). Raises KeyError for a key outside the layout."""
    module, index, rest = _split_key(key)
    if module in _VID2VID_G0_SAME_INDICES:
        return f"{VID2VID_G0_PREFIX}{_VID2VID_G0_SAME_INDICES[module]}.{index}.{rest}"
    if module in _VID2VID_G0_UP:
        level, layer = divmod(index, 3)
        return f"{VID2VID_G0_PREFIX}{_VID2VID_G0_UP[module]}.{level}.{layer}.{rest}"
    raise KeyError(key)


def vid2vid_g0_kwargs(options: Mapping) -> dict:
    """The original vid2vid option namespace (as a dict) -> VideoGenerator keyword arguments (scale 0,
    warp_features off, i.e. exactly the original network)."""
    if options.get("n_scales_spatial", 1) != 1:
        raise ConfigError(f"n_scales_spatial {options['n_scales_spatial']}: only scale 0 converts so far")
    if options.get("label_nc", 0) == 0:
        raise ConfigError("vid2vid options with label_nc 0 (RGB/edge inputs, input_nc) are not supported yet")
    fg_labels = options.get("fg_labels", [])
    if isinstance(fg_labels, str):
        fg_labels = [int(i) for i in fg_labels.split(",") if i.strip()]
    return {
        "label_nc_per_frame": options["label_nc"] + (1 if options.get("use_instance") else 0),
        "n_frames_G": options["n_frames_G"],
        "ngf": options["ngf"],
        "n_downsample": options["n_downsample_G"],
        "n_blocks": options["n_blocks"],
        "norm": options["norm"],
        "use_fg": bool(options.get("fg")),
        "fg_labels": list(fg_labels),
        "warp_features": False,
    }


# ----------------------------------------------------------------------------------------------
# All architectures
# ----------------------------------------------------------------------------------------------

KEY_MAPS: dict[str, Callable[[str], str]] = {"vid2vid_G0": vid2vid_g0_name}
OPTION_MAPS: dict[str, Callable[[Mapping], dict]] = {"vid2vid_G0": vid2vid_g0_kwargs}


def _split_key(key: str) -> tuple[str, int, str]:
    """'model_up_img.3.weight' -> ('model_up_img', 3, 'weight')."""
    match = re.fullmatch(r"([A-Za-z_]\w*)\.(\d+)\.(.+)", key)
    if match is None:
        raise KeyError(key)
    return match[1], int(match[2]), match[3]


def convert_state_dict(arch: str, state_dict: Mapping[str, torch.Tensor], model: nn.Module, *,
                       source: str | Path = "the checkpoint") -> dict[str, torch.Tensor]:
    """Rename an original state dict for `model` (strict): -> our state dict, ready for load_state_dict.

    Raises ConfigError naming every original key that maps nowhere, every model entry left unset and every
    shape that differs."""
    if arch not in KEY_MAPS:
        raise ConfigError(f"unknown original architecture {arch!r}; known: {', '.join(KEY_MAPS)}")
    rename = KEY_MAPS[arch]
    targets = model.state_dict()
    converted, problems = {}, []
    for key, value in state_dict.items():
        try:
            name = rename(key)
        except KeyError:
            problems.append(f"  original key {key} {list(value.shape)} has no place in our model")
            continue
        if name not in targets:
            problems.append(f"  original key {key} {list(value.shape)} -> {name}, which our model lacks")
        elif targets[name].shape != value.shape:
            problems.append(f"  original key {key} {list(value.shape)} -> {name} {list(targets[name].shape)}: "
                            "shapes differ")
        else:
            converted[name] = value
    used = {rename_or_none(rename, key) for key in state_dict}
    problems += [f"  our {name} {list(t.shape)} is not set by any original key"
                 for name, t in targets.items() if name not in used]
    if problems:
        raise ConfigError(f"{source}: the {arch} state dict does not match the model built from its options "
                          f"({len(problems)} problems):\n" + "\n".join(problems)
                          + "\nFix: build the model with the checkpoint's own options (see OPTION_MAPS).")
    return converted


def rename_or_none(rename: Callable[[str], str], key: str) -> str | None:
    try:
        return rename(key)
    except KeyError:
        return None


def load_original(arch: str, model: nn.Module, state_dict: Mapping[str, torch.Tensor], *,
                  source: str | Path = "the checkpoint") -> nn.Module:
    """Load an original state dict into `model` strictly (see convert_state_dict); returns the model."""
    model.load_state_dict(convert_state_dict(arch, state_dict, model, source=source), strict=True)
    return model


def vid2vid_g0_from_original(options: Mapping, state_dict: Mapping[str, torch.Tensor], *,
                             source: str | Path = "the checkpoint") -> nn.Module:
    """A VideoGenerator built from the original's options, holding the original G0 weights (strict)."""
    from vid2vid.models.video import VideoGenerator

    return load_original("vid2vid_G0", VideoGenerator(**vid2vid_g0_kwargs(options)), state_dict, source=source)
