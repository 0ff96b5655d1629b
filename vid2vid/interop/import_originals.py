"""`vid2vid import`: NVIDIA's released pix2pixHD / SPADE / vid2vid generator checkpoints -> our export folder.

    vid2vid import spade latest_net_G.pth exports/spade_coco --preset coco
    vid2vid import pix2pixhd latest_net_G.pth exports/p2phd --opt-file opt.txt --option ngf=32
    vid2vid import vid2vid latest_net_G0.pth latest_net_G1.pth latest_net_G2.pth exports/city --preset label2city_2048
    vid2vid import vid2vid-single edge2face_single/latest_net_G.pth exports/face_single --preset edge2face_512 \
        --features edge2face_single/features.npy      # its encoder: --encoder, default latest_net_E.pth beside G

The original's options (with the ORIGINAL's names) come from the original's defaults, then a preset or the
opt.txt its training wrote, then --option NAME=VALUE. vid2vid.interop.originals maps them to our config and renames the
state dict strictly; the result is written with checkpoint.export_generator, so that load_generator /
load_export / render read it like a trained model. tools/check_original_parity.py goes through the same
`generator_from_original`.

Checkpoints are read with torch.load(weights_only=True) only: a file that needs pickle code execution is refused.
"""

from __future__ import annotations

import ast
import difflib
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from flow.errors import load_failure_reason
from vid2vid.checkpoint import (
    EXPORT_CONFIG,
    EXPORT_ENCODER,
    EXPORT_FEATURE_BANK,
    EXPORT_WEIGHTS,
    Export,
    export_generator,
)
from vid2vid.config import Config, from_dict
from vid2vid.errors import ConfigError, UserError
from vid2vid.interop.original_faces import feature_bank_of, is_face, read_features
from vid2vid.interop.originals import OPTION_MAPS, VID2VID_FACE_SINGLE, load_original, vid2vid_state_dict
from vid2vid.models.build import build_feature_bank, build_feature_encoder, build_generator

# Our command's architecture name -> (the originals' key-map / option-map name, the original project).
ARCHITECTURES = {"pix2pixhd": ("pix2pixhd", "NVIDIA/pix2pixHD"), "spade": ("spade", "NVlabs/SPADE"),
                 "vid2vid": ("vid2vid", "NVIDIA/vid2vid"),
                 "vid2vid-single": ("vid2vid_single", "NVIDIA/vid2vid (single-frame generator)")}

# The original code's defaults for every option the conversion reads (its option parsers' defaults; SPADE's
# norm_G is the one SPADEGenerator sets).
ORIGINAL_DEFAULTS: dict[str, dict] = {
    "pix2pixhd": {"label_nc": 35, "input_nc": 3, "output_nc": 3, "netG": "global", "ngf": 64,
                  "n_downsample_global": 4, "n_blocks_global": 9, "n_local_enhancers": 1, "n_blocks_local": 3,
                  "norm": "instance", "no_instance": False, "instance_feat": False, "label_feat": False,
                  "feat_num": 3, "loadSize": 1024, "resize_or_crop": "scale_width"},
    "spade": {"label_nc": 182, "output_nc": 3, "netG": "spade", "ngf": 64, "num_upsampling_layers": "normal",
              "norm_G": "spectralspadesyncbatch3x3", "contain_dontcare_label": False, "no_instance": False,
              "use_vae": False, "z_dim": 256, "crop_size": 256, "load_size": 256, "aspect_ratio": 1.0},
    "vid2vid": {"label_nc": 0, "input_nc": 3, "output_nc": 3, "netG": "composite", "ngf": 128, "n_downsample_G": 3,
                "n_blocks": 9, "n_blocks_local": 3, "norm": "batch", "n_frames_G": 3, "n_scales_spatial": 1,
                "use_instance": False, "fg": False, "fg_labels": "26", "loadSize": 512, "no_first_img": False,
                "use_single_G": False},
}
# vid2vid's single-frame generators read these of vid2vid's options (and take its presets): load_single_G picks
# the network by loadSize; n_blocks, n_local_enhancers and n_blocks_local size it
# (vid2vid.interop.originals.VID2VID_SINGLE_G).
# single_ngf / single_nef (ours, not the original's: its load_single_G hard-codes 64 and 16) are the widths of
# edge2face's single-frame generator and its encoder, for fixtures made at a small width.
ORIGINAL_DEFAULTS["vid2vid-single"] = {"label_nc": 0, "loadSize": 512, "n_blocks": 9, "n_local_enhancers": 1,
                                       "n_blocks_local": 3, "dataset_mode": "temporal", "single_ngf": 64,
                                       "single_nef": 16}
# Our architecture -> the one whose presets it takes.
PRESETS_OF = {"vid2vid-single": "vid2vid"}

# The released checkpoints' options (README_originals.md: the repos' test scripts plus the dataset defaults).
PRESETS: dict[str, tuple[str, dict]] = {
    # test.py --name label2city_1024p --netG local --ngf 32 --resize_or_crop none: Cityscapes frames unresized,
    # 2048x1024 (loadSize given here only to size our config).
    "label2city_1024p": ("pix2pixhd", {"label_nc": 35, "netG": "local", "ngf": 32, "resize_or_crop": "none",
                                       "loadSize": 2048}),
    "coco": ("spade", {"label_nc": 182, "contain_dontcare_label": True, "no_instance": False, "crop_size": 256,
                       "load_size": 256, "aspect_ratio": 1.0}),
    "ade20k": ("spade", {"label_nc": 150, "contain_dontcare_label": True, "no_instance": True, "crop_size": 256,
                         "load_size": 256, "aspect_ratio": 1.0}),
    "cityscapes": ("spade", {"label_nc": 35, "contain_dontcare_label": False, "no_instance": False,
                             "crop_size": 512, "load_size": 512, "aspect_ratio": 2.0,
                             "num_upsampling_layers": "more"}),
    "label2city_2048": ("vid2vid", {"label_nc": 35, "loadSize": 2048, "n_scales_spatial": 3, "use_instance": True,
                                    "fg": True, "use_single_G": True}),
    "label2city_1024_g1": ("vid2vid", {"label_nc": 35, "loadSize": 1024, "n_scales_spatial": 3,
                                       "n_downsample_G": 2, "use_instance": True, "fg": True, "use_single_G": True}),
    "edge2face_512": ("vid2vid", {"dataset_mode": "face", "input_nc": 15, "loadSize": 512, "use_single_G": True}),
}


# ----------------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------------


def parse_value(text: str):
    """An option value as the original's opt.txt or a command line writes it -> a Python value:
    True/False, None, inf, ints, floats and [lists]; anything else stays a string."""
    text = text.strip()
    if text in ("inf", "-inf"):
        return float(text)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def read_opt_file(path: str | Path) -> dict:
    """The opt.txt the original training writes (`name: value` lines between dashed rulers, SPADE adds
    `[default: ...]`) -> {name: value}."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the option file ({e}); pass the opt.txt of the original run") from None
    options = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or name.strip().startswith("-") or not name.strip().isidentifier():
            continue
        options[name.strip()] = parse_value(value.split("\t[default:")[0])
    if not options:
        raise UserError(f"{path}: no 'name: value' lines; pass the opt.txt the original training wrote")
    return options


def parse_option(arch: str, text: str) -> tuple[str, object]:
    """'ngf=32' -> ('ngf', 32); the name must be one the conversion reads."""
    name, sep, value = text.partition("=")
    name = name.strip().removeprefix("--")
    known = ORIGINAL_DEFAULTS[arch]
    if not sep:
        raise UserError(f"--option {text!r}: expected NAME=VALUE with the original's option name, e.g. ngf=32")
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise UserError(f"--option {name}: not an option the {arch} conversion reads; {hint}known: {', '.join(known)}")
    return name, parse_value(value)


def original_options(arch: str, *, preset: str | None = None, opt_file: str | Path | None = None,
                     options: Sequence[str] = ()) -> dict:
    """The original's options: its defaults, then the preset or the opt.txt, then NAME=VALUE overrides."""
    if preset is not None and opt_file is not None:
        raise UserError("give --preset or --opt-file, not both")
    merged = dict(ORIGINAL_DEFAULTS[arch])
    if preset is not None:
        merged.update(preset_options(arch, preset))
    if opt_file is not None:
        merged.update(read_opt_file(opt_file))
    merged.update(parse_option(arch, text) for text in options)
    return merged


def preset_options(arch: str, preset: str) -> dict:
    if preset not in PRESETS:
        close = difflib.get_close_matches(preset, PRESETS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise UserError(f"--preset {preset}: unknown; {hint}presets: " +
                        ", ".join(f"{name} ({a})" for name, (a, _) in PRESETS.items()))
    preset_arch, values = PRESETS[preset]
    if preset_arch != PRESETS_OF.get(arch, arch):
        raise UserError(f"--preset {preset} is a {preset_arch} checkpoint, not {arch}; "
                        f"run vid2vid import {preset_arch} ... --preset {preset}")
    return values


# ----------------------------------------------------------------------------------------------
# Checkpoints and conversion
# ----------------------------------------------------------------------------------------------


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """An original checkpoint (a saved state dict) -> {key: tensor}, read with torch.load(weights_only=True):
    a file whose unpickling would run code is refused, never executed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file; pass the original's latest_net_G*.pth")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(f"{path}: refused: reading it would execute code stored in the file "
                        f"({load_failure_reason(e)}). Original checkpoints are plain state dicts and load with "
                        "weights_only=True; re-save only the state dict with a trusted copy of the original "
                        "code") from None
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file fails in many ways (EOFError, KeyError, ...)
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({load_failure_reason(e)}); pass the "
                        "original's latest_net_G*.pth") from None
    return _state_dict(loaded, path)


def _state_dict(loaded, path: Path) -> dict[str, torch.Tensor]:
    """A loaded object -> its tensors: a state dict, or a dict holding one under 'state_dict'; a DataParallel
    'module.' prefix on every key is dropped."""
    if isinstance(loaded, Mapping) and not all(torch.is_tensor(v) for v in loaded.values()):
        loaded = loaded.get("state_dict")
    if not isinstance(loaded, Mapping) or not loaded or not all(torch.is_tensor(v) for v in loaded.values()):
        raise UserError(f"{path}: not a generator state dict (a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in loaded):
        return {k.removeprefix("module."): v for k, v in loaded.items()}
    return dict(loaded)


def read_checkpoints(arch: str, options: Mapping, checkpoints: Sequence[str | Path]) -> dict[str, torch.Tensor]:
    """The generator checkpoint files -> the one state dict the key map reads: one file, or for vid2vid one per
    spatial scale (latest_net_G0.pth, G1, ... coarsest first: the options' n_scales_spatial of them), merged by
    originals.vid2vid_state_dict."""
    expected = options.get("n_scales_spatial", 1) if arch == "vid2vid" else 1
    if len(checkpoints) != expected:
        names = " ".join(f"latest_net_G{s}.pth" for s in range(expected)) if arch == "vid2vid" else "latest_net_G.pth"
        scales = (f"; the options have n_scales_spatial {expected} (a preset, --opt-file or --option "
                  "n_scales_spatial=K sets it; K = the number of files, coarsest first)") if arch == "vid2vid" else ""
        raise UserError(f"{arch}: expected {expected} generator checkpoint{'s' if expected > 1 else ''} ({names}), "
                        f"got {len(checkpoints)}{scales}")
    if arch != "vid2vid":
        return read_checkpoint(checkpoints[0])
    return vid2vid_state_dict([read_checkpoint(path) for path in checkpoints])


def import_config(arch: str, options: Mapping, *, overrides: Sequence[str] = ()) -> Config:
    """The original options -> our checked Config (vid2vid.interop.originals.OPTION_MAPS)."""
    tree = OPTION_MAPS[ARCHITECTURES[arch][0]](options)
    return from_dict(tree, list(overrides))


def generator_from_original(arch: str, options: Mapping, state_dict: Mapping[str, torch.Tensor], *,
                            source: str | Path = "the checkpoint", overrides: Sequence[str] = ()
                            ) -> tuple[nn.Module, Config]:
    """(our generator holding the original weights, strictly converted; its Config), on the CPU."""
    cfg = import_config(arch, options, overrides=overrides)
    model = build_generator(cfg)
    return load_original(ARCHITECTURES[arch][0], model, state_dict, source=source), cfg


def face_single_export(options: Mapping, state_dict: Mapping[str, torch.Tensor],
                       encoder_state: Mapping[str, torch.Tensor], bank: Mapping[str, torch.Tensor], *,
                       source: str | Path = "the checkpoint", encoder_source: str | Path = "the encoder") -> Export:
    """edge2face's single-frame generator, its encoder (both strictly converted, running statistics checked and
    dropped) and its bank of training images (original_faces.feature_bank_of) -> our Export on the CPU, in eval
    mode, as load_export reads the written folder (tools/check_original_parity.py runs the same)."""
    arch = ARCHITECTURES["vid2vid-single"][0]
    overrides = [f"model.n_clusters={bank['centers'].shape[1]}"]  # one bank row per training image
    model, cfg = generator_from_original("vid2vid-single", options, state_dict, source=source, overrides=overrides)
    encoder = load_original(arch, build_feature_encoder(cfg), encoder_state, source=encoder_source)
    feature_bank = build_feature_bank(cfg)
    feature_bank.load_state_dict(dict(bank))
    return Export(model.eval(), cfg, encoder.eval(), feature_bank.eval())


FACE_ENCODER_FILE = "latest_net_E.pth"  # edge2face_single's encoder, next to its latest_net_G.pth


def face_single_files(checkpoints: Sequence[str | Path], encoder: str | Path | None,
                      features: str | Path | None) -> tuple[Path, Path]:
    """edge2face's single-frame generator needs its encoder (--encoder, default latest_net_E.pth next to the
    generator checkpoint) and its features.npy (--features) -> (encoder path, features path), or a UserError."""
    if features is None:
        raise UserError("vid2vid-single --preset edge2face_512: the single-frame face generator needs its training "
                        "images' features; pass --features edge2face_single/features.npy (it came with the "
                        "checkpoint)")
    path = Path(encoder) if encoder is not None else Path(checkpoints[0]).parent / FACE_ENCODER_FILE
    if not path.is_file():
        given = "--encoder" if encoder is not None else f"the default {FACE_ENCODER_FILE} next to the generator"
        raise UserError(f"{path}: no such encoder checkpoint ({given}); edge2face's single-frame generator needs "
                        f"its encoder: pass --encoder edge2face_single/{FACE_ENCODER_FILE}")
    return path, Path(features)


def import_checkpoint(arch: str, checkpoints: Sequence[str | Path], out_dir: str | Path, *,
                      preset: str | None = None, opt_file: str | Path | None = None,
                      options: Sequence[str] = (), features: str | Path | None = None,
                      encoder: str | Path | None = None) -> str:
    """`vid2vid import`: convert and write our export folder -> a summary for the user. edge2face's single-frame
    generator (vid2vid-single, dataset_mode face) also takes its encoder (`encoder`, default latest_net_E.pth next to
    the generator) and `features` (features.npy, read without running code: original_faces.read_features); the
    export then holds encoder.safetensors and the training images' features as feature_bank.safetensors."""
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    opts = original_options(arch, preset=preset, opt_file=opt_file, options=options)
    face_single = arch == "vid2vid-single" and is_face(opts)
    if encoder is not None and not face_single:
        raise UserError(f"--encoder {encoder}: only edge2face's single-frame generator has an encoder here; give it "
                        "with vid2vid-single --preset edge2face_512, or drop it")
    if features is not None and not face_single:
        raise UserError(f"--features {features}: features.npy belongs to edge2face's single-frame generator; give it "
                        "with vid2vid-single --preset edge2face_512, or drop it")
    feats = None if features is None else read_features(features)  # without running code, before anything else
    try:
        import_config(arch, opts)  # refuse unsupported options before reading large files
    except ConfigError as e:
        raise ConfigError(f"{'preset ' + preset + ': ' if preset else ''}{e}") from None
    source = ", ".join(str(path) for path in checkpoints)
    extra = ""
    if face_single:
        encoder_path, features_path = face_single_files(checkpoints, encoder, features)
        bank = feature_bank_of(feats, VID2VID_FACE_SINGLE["feat_num"], features_path)  # checked before any read
        export = face_single_export(opts, read_checkpoints(arch, opts, checkpoints), read_checkpoint(encoder_path),
                                    bank, source=source, encoder_source=encoder_path)
        model, cfg = export.generator, export.cfg
        export_generator(model.state_dict(), cfg, out_dir, encoder=export.encoder.state_dict(), feature_bank=bank)
        extra = (f"\nencoder {encoder_path}: {sum(p.numel() for p in export.encoder.parameters()):,} parameters -> "
                 f"{Path(out_dir) / EXPORT_ENCODER}; features of {bank['centers'].shape[1]:,} training images -> "
                 f"{Path(out_dir) / EXPORT_FEATURE_BANK}")
    else:
        model, cfg = generator_from_original(arch, opts, read_checkpoints(arch, opts, checkpoints), source=source)
        export_generator(model.state_dict(), cfg, out_dir)
    params = sum(p.numel() for p in model.parameters())
    render = (f"vid2vid render talk.mp4 OUT.mp4 -m {out_dir} --labels face" if face_single
              else f"vid2vid render LABELS_DIR OUT.mp4 -m {out_dir}")
    return (f"imported {ARCHITECTURES[arch][1]} {source}: {params:,} parameters, "
            f"{len(model.state_dict())} tensors, every key used -> {Path(out_dir) / EXPORT_CONFIG}, "
            f"{Path(out_dir) / EXPORT_WEIGHTS}{extra}\nrender with: {render}"
            + (f"\nor make a video model's first frames with it: --first-frame image-model:{out_dir}"
               if arch == "vid2vid-single" else ""))
