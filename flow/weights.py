"""Loading RAFT weights: torchvision-format files and the original implementation's checkpoints.

- torchvision format (torchvision's module names, which `flow.raft` shares): loaded as is.
- original format (princeton-vl/RAFT, saved from DataParallel): every key starts with "module.";
  the names are mapped to torchvision's (`original_to_torchvision`) and the large context
  encoder's duplicated `layerL.0.norm3.*` entries (the same module as `downsample.1`) are dropped.
Small vs large is read from the keys. Loading is strict and uses torch.load(weights_only=True).
"""

import re
from pathlib import Path

import torch

from flow.errors import FlowError, load_failure_reason
from flow.raft import RAFT, raft_large, raft_small

DOWNLOAD_URL = "https://download.pytorch.org/models/{}"
# torchvision's published files, preferred first; the first of each model is torchvision's default.
TORCHVISION_FILES = {
    "raft_large": (
        "raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        "raft_large_C_T_V2-1bb1363a.pth",
        "raft_large_C_T_SKHT_K_V2-b5c70766.pth",
        "raft_large_C_T_SKHT_V1-0b8c9e55.pth",
        "raft_large_C_T_V1-22a6c225.pth",
        "raft_large_C_T_SKHT_K_V1-4a6a5039.pth",
    ),
    "raft_small": ("raft_small_C_T_V2-01064c6d.pth", "raft_small_C_T_V1-ad48884c.pth"),
}
BUILDERS = {"raft_small": raft_small, "raft_large": raft_large}

_RENAMES = (  # (original pattern, torchvision replacement), applied in order after the prefix
    (r"^fnet\.", "feature_encoder."),
    (r"^cnet\.", "context_encoder."),
    (r"^(\w+_encoder)\.conv1\.", r"\1.convnormrelu.0."),
    (r"^(\w+_encoder)\.norm1\.", r"\1.convnormrelu.1."),
    (r"^(\w+_encoder)\.conv2\.", r"\1.conv."),
    (r"\.(layer\d\.\d)\.conv(\d)\.", r".\1.convnormrelu\2.0."),
    (r"\.(layer\d\.\d)\.norm(\d)\.", r".\1.convnormrelu\2.1."),
    (r"^update_block\.encoder\.convc1\.", "update_block.motion_encoder.convcorr1.0."),
    (r"^update_block\.encoder\.convc2\.", "update_block.motion_encoder.convcorr2.0."),
    (r"^update_block\.encoder\.convf1\.", "update_block.motion_encoder.convflow1.0."),
    (r"^update_block\.encoder\.convf2\.", "update_block.motion_encoder.convflow2.0."),
    (r"^update_block\.encoder\.conv\.", "update_block.motion_encoder.conv.0."),
    (r"^update_block\.gru\.conv([zrq])([12])\.", r"update_block.recurrent_block.convgru\2.conv\1."),
    (r"^update_block\.gru\.conv([zrq])\.", r"update_block.recurrent_block.convgru1.conv\1."),
    (r"^update_block\.mask\.0\.", "mask_predictor.convrelu.0."),
    (r"^update_block\.mask\.2\.", "mask_predictor.conv."),
)


def is_original_format(state_dict: dict) -> bool:
    return any(k.startswith(("module.", "fnet.", "cnet.", "update_block.encoder.")) for k in state_dict)


def original_to_torchvision(state_dict: dict) -> dict:
    """Rename an original-format RAFT state dict to torchvision's names (drops duplicated norm3)."""
    converted = {}
    for key, value in state_dict.items():
        name = key.removeprefix("module.")
        # Residual blocks: norm3 is registered twice (also as downsample.1); keep downsample.1 only.
        # Bottleneck blocks have a real norm3 (their third conv's norm), kept by the rename below.
        if re.search(r"\.layer\d\.\d\.norm3\.", name) and _is_residual_norm3(name, state_dict):
            continue
        for pattern, replacement in _RENAMES:
            name = re.sub(pattern, replacement, name)
        converted[name] = value
    return converted


def _is_residual_norm3(name: str, state_dict: dict) -> bool:
    """True when `name` (a layer's norm3) belongs to a residual block, i.e. it has no conv3."""
    block = name.split(".norm3.")[0]
    return not any(k.removeprefix("module.").startswith(block + ".conv3.") for k in state_dict)


def detect_model(state_dict: dict) -> str:
    """'raft_large' or 'raft_small' from torchvision-format keys and shapes."""
    feature_out = state_dict.get("feature_encoder.conv.weight")
    if feature_out is not None:
        return "raft_large" if feature_out.shape[0] == 256 else "raft_small"
    large_keys = ("mask_predictor.", "update_block.recurrent_block.convgru2.")
    return "raft_large" if any(k.startswith(large_keys) for k in state_dict) else "raft_small"


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise FlowError(f"RAFT weights file {path} does not exist: pass the path of a .pth/.pt checkpoint")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors have many types; all mean "not a plain state dict"
        raise FlowError(f"cannot read RAFT weights {path} with torch.load(weights_only=True) "
                        f"({load_failure_reason(e)}); pass torchvision's raft_large/raft_small state dict") from None
    for wrapper in ("state_dict", "model"):  # training checkpoints that wrap the weights
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise FlowError(f"{path} does not hold a RAFT state dict (a dict of tensors)")
    return data


def build_from_state_dict(state_dict: dict, *, source: str = "state dict", corr: str = "all_pairs") -> RAFT:
    """Model (eval mode) from a torchvision- or original-format state dict, strictly."""
    if is_original_format(state_dict):
        state_dict = original_to_torchvision(state_dict)
    name = detect_model(state_dict)
    model = BUILDERS[name](corr=corr)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(
        f"{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    )
    if missing or unexpected or wrong_shape:
        raise FlowError(
            f"{source} does not match {name} ({len(state_dict)} keys, {len(expected)} expected)."
            f"\n  missing keys ({len(missing)}): {', '.join(missing) or '-'}"
            f"\n  unexpected keys ({len(unexpected)}): {', '.join(unexpected) or '-'}"
            f"\n  wrong shapes ({len(wrong_shape)}): {', '.join(wrong_shape) or '-'}"
            "\nUse a torchvision RAFT checkpoint (raft_small_*/raft_large_*.pth), an original RAFT "
            "checkpoint (raft-*.pth) or one written by `python -m flow train`."
        )
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_cached_weights(model: str | None = None) -> Path | None:
    """The first of torchvision's RAFT files present in the torch hub cache (for `model`, or any)."""
    names = TORCHVISION_FILES[model] if model else (*TORCHVISION_FILES["raft_large"], *TORCHVISION_FILES["raft_small"])
    for name in names:
        if (hub_checkpoint_dir() / name).is_file():
            return hub_checkpoint_dir() / name
    return None


def load_raft(path=None, *, model: str | None = None, corr: str = "all_pairs", device="cpu") -> RAFT:
    """RAFT in eval mode from `path` (torchvision or original format; small/large read from the keys).

    Without a path, torchvision's files are looked up in the torch hub cache
    (torch.hub.get_dir()/checkpoints), restricted to `model` ('raft_small' or 'raft_large') if given.
    """
    if model is not None and model not in BUILDERS:
        raise FlowError(f"unknown RAFT model {model!r}: use raft_small or raft_large")
    if path is None:
        path = find_cached_weights(model)
        if path is None:
            wanted = TORCHVISION_FILES[model or "raft_large"][0]
            raise FlowError(
                f"no RAFT weights given and none in the torch hub cache {hub_checkpoint_dir()}. Download "
                f"{DOWNLOAD_URL.format(wanted)} into {hub_checkpoint_dir()}/ (keep the file name {wanted}), "
                "or pass a checkpoint path (--weights), e.g. one trained with `python -m flow train`"
            )
    path = Path(path)
    net = build_from_state_dict(_read_state_dict(path), source=str(path), corr=corr)
    if model is not None and net is not None and detect_model(net.state_dict()) != model:
        raise FlowError(f"{path} holds {detect_model(net.state_dict())} weights, but {model} was asked for")
    return net.to(device)
