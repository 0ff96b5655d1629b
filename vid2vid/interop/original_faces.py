"""The original vid2vid's edge2face checkpoints: their options -> our face config (data.condition face), and a safe
reader for the instance-wise feature file of its single-frame generator (features.npy).

features.npy is `np.save` of a dict {part label: [N, feat_num + 1] float array} (the original loads it with
`np.load(...).item()`, i.e. a pickle). A pickle can run any code while it is read, so `read_features` never uses
`allow_pickle=True`: it reads the .npy header itself and unpickles the payload with `SafeUnpickler`, which resolves
only numpy's array reconstruction names; dicts, lists, ints and floats need no lookup. Anything else (a payload that
would call a function, import a module or build another object) is refused with the file and the name it asked for.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from vid2vid.errors import ConfigError, UserError

FACE_PART_LABELS = 7  # the original face dataset's part labels 0..6 (vid2vid.data.face_input)
FACE_INPUT_NC = 15  # 1 edge map + 14 distance maps per frame
FACE_INPUT_NC_NO_DIST = 1  # --no_dist_map: the edge map alone


def is_face(options: Mapping) -> bool:
    return options.get("dataset_mode") == "face"


def face_data(options: Mapping) -> dict:
    """The original's face options -> our data tree: data.condition face, the 7 part labels as the instance map
    (never a generator channel), the square face crop of loadSize."""
    no_dist = bool(options.get("no_dist_map"))
    expected = FACE_INPUT_NC_NO_DIST if no_dist else FACE_INPUT_NC
    if options.get("label_nc", 0) != 0 or options.get("input_nc") != expected:
        raise ConfigError(f"original options: dataset_mode face with label_nc {options.get('label_nc')}, input_nc "
                          f"{options.get('input_nc')}: the face dataset gives label_nc 0 and input_nc {expected} "
                          f"(no_dist_map {no_dist}); fix the options (--preset edge2face_512 has them)")
    if options.get("use_instance") or options.get("fg"):
        raise ConfigError("original options: dataset_mode face with use_instance or fg: the face model has no "
                          "instance-edge channel and no foreground branch; drop those options")
    load = options.get("loadSize", 512)
    return {"condition": "face", "face": {"no_dist_map": no_dist, "no_canny_edge": bool(options.get("no_canny_edge"))},
            "label_nc": FACE_PART_LABELS, "use_instance": False, "contain_dontcare_label": False, "fg_labels": [],
            "load_size": f"{load}x{load}", "crop_size": f"{load}x{load}"}


# ----------------------------------------------------------------------------------------------
# features.npy, read without running code
# ----------------------------------------------------------------------------------------------

# (module, name) -> what it resolves to. numpy 1.x pickles name numpy.core, numpy 2.x numpy._core.
_NUMPY_ARRAY_NAMES = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                      ("numpy", "ndarray"), ("numpy", "dtype")}


def _numpy_name(module: str, name: str):
    if name == "_reconstruct":
        return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own array reconstructor, wherever it lives
    return getattr(np, name)


class SafeUnpickler(pickle.Unpickler):
    """Admits numpy arrays (and their dtypes), dicts, lists, tuples, strings and numbers: every global lookup other
    than numpy's array reconstruction is refused (pickle.UnpicklingError), so nothing in the file can run."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_ARRAY_NAMES:
            return _numpy_name(module, name)
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which is not a numpy array")


def read_features(path: str | Path) -> dict[int, np.ndarray]:
    """The original's features.npy -> {part label: [N, C] float array}, read with SafeUnpickler (never
    np.load(allow_pickle=True)). Raises UserError naming the file and what is wrong."""
    path = Path(path)
    fix = "pass the features.npy of the original edge2face_single checkpoint, or re-save it from a trusted copy"
    try:
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in header:
                raise ValueError(f".npy format version {version[0]}.{version[1]}, not 1.0 or 2.0")
            _, _, dtype = header[version](f)  # the header only, no data
            payload = f.read()
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable .npy file ({e}); {fix}") from None
    if dtype != np.dtype(object):
        raise UserError(f"{path}: a plain {dtype} array, not the dict of per-part feature arrays np.save writes; {fix}")
    try:
        loaded = SafeUnpickler(io.BytesIO(payload), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise UserError(f"{path}: refused: reading it would run code ({e}); features.npy holds arrays only; "
                        f"{fix}") from None
    except Exception as e:  # noqa: BLE001 - a damaged pickle fails in many ways
        raise UserError(f"{path}: not a readable features file ({type(e).__name__}: {e}); {fix}") from None
    return _feature_dict(loaded, path, fix)


def _feature_dict(loaded, path: Path, fix: str) -> dict[int, np.ndarray]:
    """The unpickled object array -> its dict {int label: 2-D float array}, checked."""
    value = loaded.item() if isinstance(loaded, np.ndarray) and loaded.shape == () else loaded
    if not isinstance(value, dict) or not value:
        raise UserError(f"{path}: holds a {type(value).__name__}, not a dict of per-part feature arrays; {fix}")
    for label, feats in value.items():
        if not isinstance(label, (int, np.integer)) or not isinstance(feats, np.ndarray) or feats.ndim != 2 \
                or feats.dtype.kind != "f":
            what = f"{type(feats).__name__} {getattr(feats, 'shape', '')}".strip()
            raise UserError(f"{path}: entry {label!r} is {what}, not a 2-D float array under an int part label; {fix}")
    return {int(label): feats for label, feats in value.items()}


def feature_bank_of(features: Mapping[int, np.ndarray], feat_num: int, path: str | Path) -> dict[str, torch.Tensor]:
    """read_features' {part label: [rows, feat_num + 1]} -> the state dict of our FeatureBank holding one row per
    training image (model.feature_bank images): centers [7, N, feat_num] (the last column, not a feature, dropped as
    the original drops it), counts [7] = N. N is the rows of part 6, the number of training images the original
    compares with (get_face_features); every part must have the labels 0..6 and at least N rows of feat_num + 1
    values (the original reads N rows of each part it finds). Raises UserError naming the file and the fix."""
    fix = ("pass the features.npy that came with the edge2face_single checkpoint (one row of "
           f"{feat_num + 1} values per training image for each face part 0..{FACE_PART_LABELS - 1})")
    labels = sorted(features)
    if labels != list(range(FACE_PART_LABELS)):
        raise UserError(f"{path}: part labels {labels}, but edge2face's features are per face part 0.."
                        f"{FACE_PART_LABELS - 1}; {fix}")
    n = features[FACE_PART_LABELS - 1].shape[0]
    for label in labels:
        rows, cols = features[label].shape
        if cols != feat_num + 1 or rows < max(n, 1):
            raise UserError(f"{path}: part {label} has {rows} rows of {cols} values; the generator needs "
                            f"{feat_num} features + 1 per row and at least {max(n, 1)} rows (part "
                            f"{FACE_PART_LABELS - 1}'s, one per training image); {fix}")
    centers = np.stack([features[label][:n, :feat_num] for label in labels]).astype(np.float32)  # [7,N,feat_num]
    return {"centers": torch.from_numpy(centers), "counts": torch.full((FACE_PART_LABELS,), n, dtype=torch.long)}
