"""Option and state-dict key maps from the original NVIDIA checkpoints to our modules, one section per
architecture, and one strict converter for all of them.

Each architecture has a name function `original key -> our key` (rules written from the key layouts in
shared/fixtures/README_originals.md) and an options function `original option dict -> builder keyword
arguments`. `convert_state_dict` applies a name function and checks the result against the target model:
every original key must be used and every entry of the model's state dict must be set, with equal shapes;
otherwise a ConfigError lists each mismatch by name and shape. (The originals' own loaders silently fall
back to a partial load; this one never does.)

Sections: pix2pixHD (`pix2pixhd`: GlobalGenerator and LocalEnhancer), SPADE (`spade`), vid2vid scale 0
(`vid2vid_G0`), the whole vid2vid generator with its finer spatial scales (`vid2vid`: G0 plus the
CompositeLocalGenerators G1, G2, ..., one checkpoint per scale merged by vid2vid_state_dict) and vid2vid's
single-frame (first-frame) generators (`vid2vid_single`: pix2pixHD layouts whose instance norms carry running
statistics, checked and dropped). Each options function returns a tree of our config keys (`OPTION_MAPS`), so
that an imported model is built by the same registry as a trained one (vid2vid.models.build).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from vid2vid.errors import ConfigError
from vid2vid.families import SPADE_UPSAMPLINGS
from vid2vid.interop.original_faces import face_data, is_face
from vid2vid.models.video import VideoGenerator

# ----------------------------------------------------------------------------------------------
# pix2pixHD: the original GlobalGenerator / LocalEnhancer -> vid2vid.models.image (same classes' layout)
# ----------------------------------------------------------------------------------------------

# vid2vid's Global_with_z (edge2face's single-frame generator): our GlobalGeneratorWithFeatures has its module names
_GLOBAL_WITH_Z = ("model_downsample", "model_resnet", "model_upsample", "model_upsample_conv")
_PIX2PIXHD_ENHANCER = re.compile(r"model(\d+)_([12])")  # enhancer n (1 = coarsest): _1 its input branch, _2 the rest


def pix2pixhd_name(key: str) -> str:
    """An original pix2pixHD generator key -> ours. `model.*` (the global generator, also inside a LocalEnhancer)
    and vid2vid's Global_with_z modules (_GLOBAL_WITH_Z) keep their names and flat indices; enhancer n's
    `model{n}_1.*` -> `local_down.{n-1}.*` and `model{n}_2.*` ->
    `local_up.{n-1}.*`, with the same indices. Raises KeyError for a key outside the layout."""
    module, index, rest = _split_key(key)
    if module in _GLOBAL_WITH_Z or module == "model":
        return key
    match = _PIX2PIXHD_ENHANCER.fullmatch(module)
    if match is None or int(match[1]) < 1:
        raise KeyError(key)
    branch = "local_down" if match[2] == "1" else "local_up"
    return f"{branch}.{int(match[1]) - 1}.{index}.{rest}"


def pix2pixhd_config(options: Mapping) -> dict:
    """The original pix2pixHD options -> our config tree (model.name pix2pixhd)."""
    _require(options.get("label_nc", 0) > 0, "label_nc 0 (RGB inputs of input_nc channels) is not supported yet")
    _require(options.get("output_nc", 3) == 3, f"output_nc {options.get('output_nc')}: only 3 (RGB) is supported")
    _require(not (options.get("instance_feat") or options.get("label_feat")),
             "instance_feat/label_feat (the feature encoder's extra input channels) are not supported yet")
    net = options.get("netG", "global")
    _require(net in ("global", "local"), f"netG {net!r}: only global and local are pix2pixHD generators")
    enhancers = options["n_local_enhancers"] if net == "local" else 0
    stride = 2 ** (options["n_downsample_global"] + enhancers)
    return {
        "data": {"label_nc": options["label_nc"], "use_instance": not options.get("no_instance", False),
                 "fg_labels": [], **_sizes(options.get("loadSize", 1024) // 2, options.get("loadSize", 1024), stride)},
        "model": {"name": "pix2pixhd", "ngf": options["ngf"], "n_downsample": options["n_downsample_global"],
                  "n_blocks": options["n_blocks_global"], "n_local_enhancers": enhancers,
                  "n_blocks_local": options.get("n_blocks_local", 3), "norm": options.get("norm", "instance"),
                  "feat_num": 0},
    }


# ----------------------------------------------------------------------------------------------
# SPADE: the original SPADEGenerator -> vid2vid.models.image.SPADEGenerator
# ----------------------------------------------------------------------------------------------

# The original's spectral norm (weight_orig / weight_u / weight_v) -> torch's spectral-norm parametrization.
_SPADE_SPECTRAL = {"weight_orig": "parametrizations.weight.original", "weight_u": "parametrizations.weight.0._u",
                   "weight_v": "parametrizations.weight.0._v"}
_SPADE_BLOCK = re.compile(r"(head_0|G_middle_[01]|up_[0-4])\.(conv_[01s])\.(\w+)")
_SPADE_NORM = re.compile(r"(spectral)?spade(syncbatch|batch|instance)(\d+)x(\d+)")


def spade_name(key: str) -> str:
    """An original SPADE generator key -> ours: the module names are the same; a spectral-normed block conv's
    `weight_orig`, `weight_u`, `weight_v` become `parametrizations.weight.{original, 0._u, 0._v}`."""
    match = _SPADE_BLOCK.fullmatch(key)
    if match is not None and match[3] in _SPADE_SPECTRAL:
        return f"{match[1]}.{match[2]}.{_SPADE_SPECTRAL[match[3]]}"
    return key


def spade_norm(norm_G: str) -> str:
    """The original norm_G ('spectralspadesyncbatch3x3') -> our model.norm ('spectralbatch'); synchronized
    batch norm is plain batch norm on one device."""
    match = _SPADE_NORM.fullmatch(norm_G)
    _require(match is not None and match[3] == match[4] == "3",
             f"norm_G {norm_G!r}: only [spectral]spade{{syncbatch,batch,instance}}3x3 is supported")
    return (match[1] or "") + ("instance" if match[2] == "instance" else "batch")


def spade_config(options: Mapping) -> dict:
    """The original SPADE options -> our config tree (model.name spade). Output size: the original starts from
    sw = crop_size / 2^k, sh = round(sw / aspect_ratio) (k = 5/6/7 for normal/more/most) and doubles k times."""
    _require(options.get("netG", "spade") == "spade", f"netG {options.get('netG')!r}: only spade is supported")
    _require(not options.get("use_vae"), "use_vae (the VAE encoder, netE) is not supported yet")
    _require(options.get("output_nc", 3) == 3, f"output_nc {options.get('output_nc')}: only 3 (RGB) is supported")
    ups = options.get("num_upsampling_layers", "normal")
    _require(ups in SPADE_UPSAMPLINGS, f"num_upsampling_layers {ups!r}: expected normal, more or most")
    dontcare, instance = bool(options.get("contain_dontcare_label")), not options.get("no_instance", False)
    semantic_nc = options["label_nc"] + dontcare + instance
    _require(options.get("semantic_nc", semantic_nc) == semantic_nc,
             f"semantic_nc {options.get('semantic_nc')} disagrees with label_nc + dontcare + instance = {semantic_nc}")
    stride = 2 ** SPADE_UPSAMPLINGS[ups]
    sw = options["crop_size"] // stride
    sh = round(sw / options.get("aspect_ratio", 1.0))
    size = f"{sh * stride}x{sw * stride}"
    return {
        "data": {"label_nc": options["label_nc"], "contain_dontcare_label": dontcare, "use_instance": instance,
                 "fg_labels": [], "load_size": size, "crop_size": size},
        "model": {"name": "spade", "ngf": options["ngf"], "num_upsampling_layers": ups,
                  "norm": spade_norm(options.get("norm_G", "spectralspadesyncbatch3x3")), "use_vae": False},
    }


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
    """The original vid2vid option namespace (as a dict) -> VideoGenerator keyword arguments (scale 0 and the
    finer scales of n_scales_spatial, warp_features off, i.e. exactly the original network)."""
    if options.get("netG", "composite") != "composite":
        raise ConfigError(f"original options: netG {options['netG']!r}: only the composite generator converts")
    fg_labels = options.get("fg_labels", [])
    if isinstance(fg_labels, str):
        fg_labels = [int(i) for i in fg_labels.split(",") if i.strip()]
    return {
        "label_nc_per_frame": vid2vid_input_nc(options) + (1 if options.get("use_instance") else 0),
        "n_frames_G": options["n_frames_G"],
        "ngf": options["ngf"],
        "n_downsample": options["n_downsample_G"],
        "n_blocks": options["n_blocks"],
        "norm": options["norm"],
        "use_fg": bool(options.get("fg")),
        "fg_labels": list(fg_labels),
        "warp_features": False,
        "n_scales": options.get("n_scales_spatial", 1),
        "n_blocks_local": options.get("n_blocks_local", 3),
    }


# ----------------------------------------------------------------------------------------------
# vid2vid, finer scales s >= 1: the original CompositeLocalGenerator (latest_net_G<s>.pth) -> VideoGenerator.scales.s
# ----------------------------------------------------------------------------------------------

# Original module -> ours (FineVideoScale); the flat Sequential indices carry over unchanged.
_VID2VID_LOCAL = {"model_down_seg": "label_encoder", "model_down_img": "frame_encoder",
                  "model_up_img": "image_decoder", "model_up_flow": "flow_decoder", "model_final_img": "to_image",
                  "model_final_flow": "to_flow", "model_final_w": "to_weight", "indv_down": "fg_encoder",
                  "indv_up": "fg_decoder", "indv_final": "fg_to_image"}
_VID2VID_SCALE_KEY = re.compile(r"G(\d+)\.(.+)")


def vid2vid_local_name(key: str, scale: int) -> str:
    """A key of the original G<scale> (scale >= 1) -> ours, e.g. ('model_up_img.3.weight', 1) ->
    'scales.1.image_decoder.3.weight'. Raises KeyError for a key outside the layout."""
    module, index, rest = _split_key(key)
    if scale < 1 or module not in _VID2VID_LOCAL:
        raise KeyError(key)
    return f"scales.{scale}.{_VID2VID_LOCAL[module]}.{index}.{rest}"


def vid2vid_name(key: str) -> str:
    """A key of a whole original vid2vid generator as vid2vid_state_dict writes it, 'G<s>.<key of
    latest_net_G<s>.pth>' -> ours (a key without the prefix is G0's)."""
    match = _VID2VID_SCALE_KEY.fullmatch(key)
    if match is None:
        return vid2vid_g0_name(key)
    scale = int(match[1])
    return vid2vid_g0_name(match[2]) if scale == 0 else vid2vid_local_name(match[2], scale)


def vid2vid_state_dict(state_dicts: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The original's per-scale checkpoints (latest_net_G0.pth, G1, ...: coarsest first) -> one state dict with
    keys 'G<s>.<key>', which the `vid2vid` key map (vid2vid_name) reads."""
    return {f"G{s}.{key}": value for s, sd in enumerate(state_dicts) for key, value in sd.items()}


def vid2vid_config(options: Mapping) -> dict:
    """The original vid2vid options -> our config tree (model.name vid2vid, scale 0, warp_features off). The
    original's test.py never calls .eval(): its BatchNorm uses batch statistics at inference, and so does the
    imported model (model.norm_at_inference batch_stats). dataset_mode face -> data.condition face
    (vid2vid.interop.original_faces)."""
    kwargs = vid2vid_g0_kwargs(options)  # raises for what does not convert
    _require_label_maps(options)
    width = options.get("loadSize", 512)
    data = face_data(options) if is_face(options) else {
        "label_nc": options["label_nc"], "use_instance": bool(options.get("use_instance")),
        "fg_labels": kwargs["fg_labels"] if kwargs["use_fg"] else [],
        **_sizes(width // 2, width, 2 ** (kwargs["n_downsample"] + kwargs["n_scales"] - 1))}
    return {
        "data": data,
        "model": {"name": "vid2vid", "ngf": kwargs["ngf"], "n_downsample": kwargs["n_downsample"],
                  "n_blocks": kwargs["n_blocks"], "norm": kwargs["norm"], "n_frames_G": kwargs["n_frames_G"],
                  "n_scales_spatial": kwargs["n_scales"], "n_blocks_local": kwargs["n_blocks_local"],
                  "use_fg": kwargs["use_fg"], "warp_features": False, "warp_mode": "bilinear",
                  "first_frame": "zeros" if options.get("no_first_img") else "real",
                  "norm_at_inference": "batch_stats"},
    }


def vid2vid_input_nc(options: Mapping) -> int:
    """Channels of one frame's input map in the original vid2vid: label_nc one-hot channels, or input_nc
    real-valued channels when label_nc is 0 (edge2face: 15, pose2body: 6), before the instance-edge channel."""
    return options.get("label_nc", 0) or options.get("input_nc", 3)


def _require_label_maps(options: Mapping) -> None:
    """Our pipeline feeds one-hot label maps (+ instance edges) or the face input (dataset_mode face): refuse other
    label_nc 0 models (pose2body), whose weights convert (vid2vid_g0_from_original) but nothing here could feed."""
    if options.get("label_nc", 0) != 0 or is_face(options):
        return
    raise ConfigError(
        f"original options: label_nc 0 with dataset_mode {options.get('dataset_mode')!r}: this model takes "
        f"{options.get('input_nc')} real-valued input channels per frame, which only the face input (dataset_mode "
        "face, --preset edge2face_512) makes here; its weights convert (vid2vid_g0_from_original) but could not be "
        "rendered. Fix: none yet for pose inputs")


# ----------------------------------------------------------------------------------------------
# vid2vid's single-frame generators (inference with --use_single_G makes the first frames with them):
# pix2pixHD GlobalGenerator / LocalEnhancer layouts whose instance norms track running statistics
# ----------------------------------------------------------------------------------------------

# The statistics an InstanceNorm2d(track_running_stats=True) saves; vid2vid's 'instance' norm is one.
INSTANCE_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")
# Architectures whose instance norms carry those statistics in the state dict.
TRACKED_INSTANCE_NORMS = {"vid2vid_single"}

# vid2vid's load_single_G picks the Cityscapes network by loadSize: (netG, ngf, n_downsampling), always on the 35
# one-hot label channels alone (the instance-edge channel is cut off, even with --use_instance); n_blocks,
# n_local_enhancers and n_blocks_local come from the options (defaults 9, 1, 3).
VID2VID_SINGLE_G = {512: ("global", 64, 3), 1024: ("global", 64, 4), 2048: ("local", 32, 4)}
VID2VID_SINGLE_G_LABEL_NC = 35
_VID2VID_MAX_WIDTH = 1024  # vid2vid's GlobalGenerator caps its widths here; ours does not


# edge2face's single-frame generator (load_single_G, face branch): Global_with_z(15 + 16 -> 3, ngf 64, 3 downsamplings,
# opt.n_blocks) with feat_num 16 fixed, and its encoder Encoder(3 -> 16, ngf 16, 4 downsamplings), both instance norm.
# The widths are not options of the original (load_single_G hard-codes them); `single_ngf` / `single_nef` (ours) set
# them for fixtures made at a small width.
VID2VID_FACE_SINGLE = {"n_downsample": 3, "feat_num": 16, "n_downsample_E": 4}


def vid2vid_single_config(options: Mapping) -> dict:
    """The original vid2vid options (its street presets) -> our config tree for its single-frame generator
    (model.name pix2pixhd, instance norm, labels only). The original runs it without .eval(): its instance
    norms normalise with each frame's own statistics, which is what our InstanceNorm2d always does, so the
    running statistics in the checkpoint are checked and dropped (split_instance_norm_stats).
    dataset_mode face: edge2face's Global_with_z (vid2vid_face_single_config)."""
    if is_face(options):
        return vid2vid_face_single_config(options)
    _require(options.get("label_nc") == VID2VID_SINGLE_G_LABEL_NC,
             f"label_nc {options.get('label_nc')}: vid2vid's single-frame generators are the Cityscapes ones, "
             f"built with {VID2VID_SINGLE_G_LABEL_NC} label channels (--preset label2city_2048 or label2city_1024_g1)")
    load = options.get("loadSize")
    _require(load in VID2VID_SINGLE_G, f"loadSize {load}: vid2vid has single-frame generators for loadSize "
             f"{', '.join(map(str, VID2VID_SINGLE_G))} only (load_single_G)")
    net, ngf, depth = VID2VID_SINGLE_G[load]
    enhancers = options.get("n_local_enhancers", 1) if net == "local" else 0
    _require(ngf * 2 ** (depth + enhancers) <= _VID2VID_MAX_WIDTH,
             f"n_local_enhancers {enhancers}: the global generator would be wider than the original's cap of "
             f"{_VID2VID_MAX_WIDTH} channels, which our pix2pixHD generator does not reproduce")
    return {
        "data": {"label_nc": VID2VID_SINGLE_G_LABEL_NC, "use_instance": False, "fg_labels": [],
                 **_sizes(load // 2, load, 2 ** (depth + enhancers))},
        "model": {"name": "pix2pixhd", "ngf": ngf, "n_downsample": depth, "n_blocks": options.get("n_blocks", 9),
                  "n_local_enhancers": enhancers, "n_blocks_local": options.get("n_blocks_local", 3),
                  "norm": "instance", "feat_num": 0},
    }


def vid2vid_face_single_config(options: Mapping) -> dict:
    """edge2face's single-frame generator -> our config tree: the face input (data.condition face, 15 channels, the
    part labels as the instance map), pix2pixhd with feat_num 16 joining every level (model.feat_join every_level),
    its encoder (nef, n_downsample_E 4) and a bank of training images (model.feature_bank images; n_clusters, the
    number of training images, comes from features.npy: import_originals sets it)."""
    face = VID2VID_FACE_SINGLE
    return {
        "data": face_data(options),
        "model": {"name": "pix2pixhd", "ngf": options.get("single_ngf", 64), "n_downsample": face["n_downsample"],
                  "n_blocks": options.get("n_blocks", 9), "n_local_enhancers": 0, "norm": "instance",
                  "feat_num": face["feat_num"], "feat_join": "every_level", "nef": options.get("single_nef", 16),
                  "n_downsample_E": face["n_downsample_E"], "feature_bank": "images"},
    }


def split_instance_norm_stats(state_dict: Mapping[str, torch.Tensor], model: nn.Module,
                              rename: Callable[[str], str]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """An original state dict whose instance norms track running statistics -> (the state dict without them,
    problems). Strict: every statistic must belong to one of our model's InstanceNorm2d layers (after `rename`)
    with its width, and every such layer must have all of INSTANCE_NORM_STATS."""
    norms = {name: m.num_features for name, m in model.named_modules() if isinstance(m, nn.InstanceNorm2d)}
    kept, found, problems = {}, set(), []
    for key, value in state_dict.items():
        leaf = key.rpartition(".")[2]
        if leaf not in INSTANCE_NORM_STATS:
            kept[key] = value
            continue
        layer = (rename_or_none(rename, key) or "").rpartition(".")[0]
        shape = [] if leaf == "num_batches_tracked" else [norms.get(layer)]
        if layer not in norms:
            problems.append(f"  original key {key} {list(value.shape)} is a running statistic, but "
                            f"{layer or 'its layer'} is not an instance norm of our model")
        elif list(value.shape) != shape:
            problems.append(f"  original key {key} {list(value.shape)}: our instance norm {layer} needs {shape}")
        else:
            found.add((layer, leaf))
    problems += [f"  our instance norm {layer} [{width}] has no {leaf} in the checkpoint (the original's instance "
                 "norms track running statistics)"
                 for layer, width in norms.items() for leaf in INSTANCE_NORM_STATS if (layer, leaf) not in found]
    return kept, problems


# ----------------------------------------------------------------------------------------------
# All architectures
# ----------------------------------------------------------------------------------------------

# architecture -> (original key -> our key)
KEY_MAPS: dict[str, Callable[[str], str]] = {"pix2pixhd": pix2pixhd_name, "spade": spade_name,
                                             "vid2vid_G0": vid2vid_g0_name, "vid2vid_single": pix2pixhd_name}
# architecture -> (original option dict -> our config tree)
OPTION_MAPS: dict[str, Callable[[Mapping], dict]] = {"pix2pixhd": pix2pixhd_config, "spade": spade_config,
                                                     "vid2vid_G0": vid2vid_config,
                                                     "vid2vid_single": vid2vid_single_config}
# the whole vid2vid generator, every spatial scale (keys 'G<s>.<key>': vid2vid_state_dict)
KEY_MAPS["vid2vid"], OPTION_MAPS["vid2vid"] = vid2vid_name, vid2vid_config


def _require(ok: bool, problem: str) -> None:
    """A ConfigError for an original option that does not convert."""
    if not ok:
        raise ConfigError(f"original options: {problem}")


def _sizes(height: int, width: int, stride: int) -> dict:
    """data.load_size / data.crop_size for a frame of about height x width, rounded down to the stride."""
    size = f"{max(height // stride, 1) * stride}x{max(width // stride, 1) * stride}"
    return {"load_size": size, "crop_size": size}


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
    problems: list[str] = []
    if arch in TRACKED_INSTANCE_NORMS:
        state_dict, problems = split_instance_norm_stats(state_dict, model, rename)
    converted = {}
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
    return load_original("vid2vid_G0", VideoGenerator(**vid2vid_g0_kwargs(options)), state_dict, source=source)
