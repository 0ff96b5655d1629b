"""Image quality of generated videos without downloaded weights: segmentation consistency, PSNR, L1
(and FID when the user supplies Inception weights).

Segmentation consistency (the pix2pixHD / SPADE / vid2vid evaluation, with our own segmenter): a small
segmentation network S is trained once on the REAL frames and label maps of the dataset's training split
and cached in the dataset folder. Frames that carry the semantics of their label maps are segmented back
into those labels; the score of S on the real held-out frames is the ceiling.

Definitions (every frame of every held-out sequence, in the order of <root>/<phase>_A):
  - frame t of a video is resized to the size of label map L_t (area when shrinking, bilinear when
    enlarging): scores are taken at the label maps' stored resolution. S sees the frame scaled so that its
    longer side is `max_side` px; its class scores are upsampled (bilinear) to the label size, argmax.
  - C[i, j] = number of pixels with true id i and predicted id j, summed over all frames of all sequences
    (pixels whose true id is in `ignore_ids` are skipped).
  - IoU_c = C[c,c] / (sum_j C[c,j] + sum_i C[i,c] - C[c,c]). A class absent from both the truth and the
    prediction over the whole set (zero denominator) is excluded; every other class counts, so a class
    only ever predicted (a false positive) or never found scores 0.
  - mIoU = mean of IoU_c over the counted classes; pixel accuracy = sum_c C[c,c] / sum C.
  - PSNR = 10 log10(1 / MSE) and L1 = mean |O - R| per sequence over all its pixels and channels, frames
    in [0, 1] at the label size against the real frames R; the row's value is the mean over sequences.
  - FID (only with user-supplied weights): Frechet distance between Gaussian fits of torchvision
    inception_v3 pool features (2048-d, frames resized to 299x299) of the real held-out frames and of the
    video's frames, all sequences pooled.

Limits: S is small and trained only on this dataset's real frames, so it rewards frames whose colours and
textures look like each class's real appearance at the right place; it is not a judge of realism (a
blurry frame with the right colours scores well: S is trained with mild blur and colour jitter so that it
does not punish small shifts) and it says nothing about temporal stability (E_warp, tOF). It can also
score from position alone: `prior_only_miou` (S on frames replaced by their mean colour) shows how much.
Thin or rare classes (poles, people) have the lowest IoU even on real frames: read every score against
the real frames' row, and compare videos only under one segmenter (one cache entry). FID numbers are not
comparable with published ones (other Inception weights than the TF-FID network, and far fewer frames
than feature dimensions: the estimate is biased upward); compare them only between videos at equal counts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from vid2vid.config import Size
from vid2vid.data.sequences import LAYOUT, SequenceFiles, read_ids, scan
from vid2vid.errors import DataError, UserError
from vid2vid.eval.detail import DEFINITIONS as DETAIL_DEFINITIONS
from vid2vid.eval.detail import detail_record
from vid2vid.eval.metrics import mean_abs_error, psnr
from vid2vid.eval.segmenter import (
    N_IDS,
    Dataset,
    Log,
    Segmenter,
    SegmenterSettings,
    dataset_root,
    frames_of,
    resize_image,
    to_input,
    train_segmenter,
)
from vid2vid.video_io import iter_frames, probe

DEFAULT_SETTINGS = SegmenterSettings()
REAL = "real frames"


INCEPTION_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, n_classes: int,
                     ignore_ids: Sequence[int] = ()) -> np.ndarray:
    """C [n,n] int64, C[i, j] = pixels with truth i and prediction j. pred, truth: int arrays of one shape with
    ids in 0..n-1; pixels whose truth is in ignore_ids (or outside 0..n-1) are skipped."""
    pred, truth = np.asarray(pred).astype(np.int64).ravel(), np.asarray(truth).astype(np.int64).ravel()
    if pred.shape != truth.shape:
        raise UserError(f"confusion_matrix: prediction and truth differ in size ({pred.size} vs {truth.size})")
    keep = (truth >= 0) & (truth < n_classes) & ~np.isin(truth, list(ignore_ids))
    if ((pred[keep] < 0) | (pred[keep] >= n_classes)).any():
        raise UserError(f"confusion_matrix: predicted ids must be in 0..{n_classes - 1}")
    return np.bincount(truth[keep] * n_classes + pred[keep], minlength=n_classes**2).reshape(n_classes, n_classes)


@dataclass
class SegmentationScores:
    miou: float  # nan when no class counts (no pixel scored)
    pixel_accuracy: float
    per_class_iou: dict[int, float]  # the counted classes only

    def as_dict(self) -> dict:
        return {"miou": self.miou, "pixel_accuracy": self.pixel_accuracy,
                "per_class_iou": {str(c): v for c, v in self.per_class_iou.items()}}


def scores_from_confusion(conf: np.ndarray) -> SegmentationScores:
    """mIoU, pixel accuracy and per-class IoU of a confusion matrix (definitions in the module docstring)."""
    conf = np.asarray(conf, dtype=np.float64)
    hits = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - hits
    counted = np.flatnonzero(union > 0)
    iou = {int(c): float(hits[c] / union[c]) for c in counted}
    total = conf.sum()
    return SegmentationScores(float(np.mean(list(iou.values()))) if iou else math.nan,
                              float(hits.sum() / total) if total else math.nan, iou)


def segmentation_scores(pred: np.ndarray, truth: np.ndarray, n_classes: int,
                        ignore_ids: Sequence[int] = ()) -> SegmentationScores:
    """Scores of predicted ids against true ids (int arrays of one shape, ids 0..n_classes-1)."""
    return scores_from_confusion(confusion_matrix(pred, truth, n_classes, ignore_ids))


def _fid_fix(path: Path) -> str:
    return (f"--fid-weights needs torchvision's inception_v3 ImageNet state dict: download {INCEPTION_URL} "
            f"on a machine with internet access and pass its path (now {path})")


def load_inception(path: str | os.PathLike, device: str = "cpu") -> nn.Module:
    """torchvision inception_v3 with the state dict at path (.safetensors, or a torch file read with
    weights_only=True) -> a module mapping [N,3,299,299] ImageNet-normalised images to [N,2048] pool features.
    A missing or ill-formed file is a UserError saying what to fetch."""
    from torchvision.models import inception_v3  # here: torchvision's model zoo, only for FID

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found; {_fid_fix(path)}")
    try:
        if path.suffix == ".safetensors":
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable or unsafe payload
        raise UserError(f"{path}: cannot read it as a state dict ({type(e).__name__}: {e}); {_fid_fix(path)}") \
            from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: not a state dict of tensors; {_fid_fix(path)}")
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    try:
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, assign=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[1:2] or [str(e)]
        raise UserError(f"{path}: not an inception_v3 state dict ({first[0].strip()[:200]}); {_fid_fix(path)}") \
            from None
    net.fc = nn.Identity()
    return net.eval().to(device)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@torch.inference_mode()
def inception_features(net: nn.Module, frames: np.ndarray, device: str = "cpu", batch: int = 16) -> np.ndarray:
    """uint8 RGB [N,H,W,3] -> float64 [N,2048] (bilinear resize to 299x299, ImageNet normalisation)."""
    mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    out = []
    for start in range(0, len(frames), batch):
        x = to_input(frames[start:start + batch], device) * 0.5 + 0.5
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        out.append(net((x - mean) / std).double().cpu())
    return torch.cat(out).numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance of Gaussians fitted to feature sets a [N,D], b [M,D]:
    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2) (symmetric form, eigh only)."""
    if len(a) < 2 or len(b) < 2:
        raise UserError(f"FID needs at least 2 frames per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(np.square(mu_a - mu_b).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def read_video(path: str | os.PathLike, n_frames: int, size: Size, exact: bool, sequence: str) -> np.ndarray:
    """The first n_frames frames of a video file or frame folder as uint8 [n,H,W,3] at `size`. Its frame count
    must equal n_frames (exact) or be at least n_frames; its aspect ratio must match size's."""
    path = Path(path)
    info = probe(path)
    if info.n_frames < n_frames or (exact and info.n_frames != n_frames):
        need = f"{n_frames}" if exact else f"at least {n_frames}"
        raise DataError(f"{path}: {info.n_frames} frames, but held-out sequence {sequence!r} has {need}; each "
                        "video must hold one frame per label map of its sequence, in the same order")
    if abs(info.height / info.width - size.h / size.w) > 0.02 * size.h / size.w:
        raise DataError(f"{path}: frames are {info.height}x{info.width} but the label maps of {sequence!r} are "
                        f"{size}; the aspect ratios differ, so the video is not aligned with the labels")
    frames = []
    for frame in iter_frames(path):
        if len(frames) == n_frames:
            break
        frames.append(resize_image(frame, size))
    return np.stack(frames)


@dataclass
class _Row:
    """Accumulates one video set's scores over the sequences."""

    ignore_ids: tuple[int, ...]
    detail_skip: int = 0  # frames left out of the detail figures (vid2vid.eval.detail)
    conf: np.ndarray = field(default_factory=lambda: np.zeros((N_IDS, N_IDS), np.int64))
    sequences: list[dict] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)

    def add(self, name: str, path: str | None, pred: np.ndarray, labels: np.ndarray, frames: np.ndarray,
            real: np.ndarray) -> None:
        conf = confusion_matrix(pred, labels, N_IDS, self.ignore_ids)
        self.conf += conf
        scores = scores_from_confusion(conf)
        record = {"sequence": name, "path": path, "miou": scores.miou, "pixel_accuracy": scores.pixel_accuracy,
                  "psnr": None, "l1": None, **detail_record(frames, real, (0, 255), self.detail_skip)}
        if frames is not real:
            video, truth = torch.from_numpy(frames), torch.from_numpy(real)
            record.update(psnr=psnr(video, truth, (0, 255)), l1=mean_abs_error(video, truth, (0, 255)))
        self.sequences.append(record)

    def summary(self, real_features: np.ndarray | None) -> dict:
        scores = scores_from_confusion(self.conf).as_dict()
        values = {k: [r[k] for r in self.sequences if r[k] is not None] for k in ("psnr", "l1", "detail",
                                                                                  "detail_aligned")}
        means = {k: float(np.mean(v)) if v else None for k, v in values.items()}
        fid = frechet_distance(real_features, np.concatenate(self.features)) \
            if real_features is not None and self.features else None
        return {**scores, **means, "fid": fid, "sequences": self.sequences}


def check_videos(videos: Mapping[str, Sequence[str | os.PathLike]], names: list[str], root: Path,
                 phase: str, condition: str = "labels") -> None:
    """One existing video per held-out sequence for each video set, none named like the real frames' row."""
    folder = f"{root}/{phase}_{LAYOUT[condition][0]}"
    for model, paths in videos.items():
        if model == REAL:
            raise UserError(f"{REAL!r} is the name of the real frames' row; name the video set otherwise")
        if isinstance(paths, (str, os.PathLike)) or len(paths) != len(names):
            count = 1 if isinstance(paths, (str, os.PathLike)) else len(paths)
            raise UserError(f"videos[{model!r}]: {count} paths for {len(names)} held-out sequences of {folder} "
                            f"({', '.join(names[:6])}); give one video per sequence, in that order")
        for path in paths:
            if not Path(path).exists():
                raise DataError(f"{path}: no such video file or folder of frames (videos[{model!r}])")


def evaluate_quality(data: Dataset, phase: str, videos: Mapping[str, Sequence[str | os.PathLike]], *,
                     segmenter: Segmenter | None = None, settings: SegmenterSettings = DEFAULT_SETTINGS,
                     train_phase: str = "train", cache_dir: str | os.PathLike | None = None, max_frames: int = 0,
                     fid_weights: str | os.PathLike | None = None, device: str = "cpu",
                     log: Log | None = None, detail_skip: int = 0) -> dict:
    """Segmentation consistency (mIoU, pixel accuracy), PSNR, L1 (and FID with fid_weights) of generated
    videos against the held-out sequences of a dataset's `phase` split, with the real frames as the ceiling row.

    data: the dataset root, or a DataConfig (its root; a synthetic dataset is generated when absent).
    videos: {name: one video file or frame folder per held-out sequence, in the order of
    vid2vid.data.sequences.scan(root, phase) (sorted sequence names)}; the real frames' row is made from the
    dataset itself (lossless), so no video may be named "real frames". Frame t of a video pairs with label
    map t of its sequence; frames are resized to the label maps' size. max_frames 0: a video must have exactly
    as many frames as its sequence; N > 0: the first min(N, length) frames are measured and a video needs at
    least that many. segmenter: a trained one (train_segmenter), else train_segmenter(root, settings,
    phase=train_phase, cache_dir=cache_dir) is called (loading its cache when there is one).

    Returns {"dataset", "phase", "sequences": [names], "frames": [measured frames per sequence],
    "segmenter": {settings, classes, steps_done, train_seconds, from_cache, cache, train_phase,
    prior_only_miou, ...}, "rows": {"real frames": row, name: row, ...}, "definitions": {metric: text}} with
    row = {"miou", "pixel_accuracy", "per_class_iou": {"id": IoU}, "psnr", "l1", "fid", "sequences":
    [{"sequence", "path", "miou", "pixel_accuracy", "psnr", "l1", "detail", "detail_aligned", ...}]} and the
    row's detail, detail_aligned: means over sequences of vid2vid.eval.detail's figures (frames t >= detail_skip).
    The row's miou and pixel_accuracy pool every frame of every sequence (one confusion matrix); psnr and l1
    are means over sequences; psnr, l1 are None for the real frames, fid None without fid_weights. Per-sequence
    mIoU is for inspection: its mean is not the row's mIoU.
    """
    log = log or (lambda message: None)
    root = dataset_root(data)
    if max_frames < 0:
        raise UserError(f"max_frames must be >= 0, got {max_frames}")
    held_out = scan(root, phase)
    names = [s.name for s in held_out]
    check_videos(videos, names, root, phase)
    inception = load_inception(fid_weights, device) if fid_weights else None
    if segmenter is None:
        segmenter = train_segmenter(root, settings, phase=train_phase, cache_dir=cache_dir, device=device, log=log)
    settings, ignore = segmenter.settings, segmenter.settings.ignore_ids
    rows = {name: _Row(ignore, detail_skip) for name in (REAL, *videos)}
    prior = _Row(ignore)  # the segmenter on content-free frames
    real_features = [] if inception is not None else None
    frame_counts = []
    for k, seq in enumerate(held_out):
        n = measured_frames(seq, max_frames, detail_skip)
        frame_counts.append(n)
        labels = _sequence_labels(seq, n, root, phase)
        size = Size(*labels.shape[1:])
        real = np.stack([resize_image(f, size) for f in frames_of(seq, list(range(n)))])
        sets = {REAL: (str(seq.frames if seq.is_video else seq.frames[0].parent), real)}
        for name, paths in videos.items():
            sets[name] = (str(paths[k]), read_video(paths[k], n, size, max_frames == 0, seq.name))
        _measure(seq.name, sets, labels, real, rows, prior, segmenter, inception, real_features, device, log)
    real_features = np.concatenate(real_features) if real_features else None
    info = {k: v for k, v in segmenter.meta.items() if k != "key"}
    info.update(settings=asdict(settings), train_phase=segmenter.meta["key"]["train_phase"],
                prior_only_miou=scores_from_confusion(prior.conf).miou)
    return {"dataset": str(root), "phase": phase, "sequences": names, "frames": frame_counts, "segmenter": info,
            "rows": {name: row.summary(real_features) for name, row in rows.items()},
            "definitions": DEFINITIONS}


def measured_frames(seq: SequenceFiles, max_frames: int, detail_skip: int) -> int:
    """The frames of a held-out sequence that are measured (all, or the first max_frames); detail_skip checked."""
    n = len(seq) if max_frames == 0 else min(max_frames, len(seq))
    if not 0 <= detail_skip < n:
        raise UserError(f"detail_skip {detail_skip}: held-out sequence {seq.name!r} has {n} measured frames; "
                        f"use 0..{n - 1} (the video model's n_frames_G - 1 seed frames, or 0)")
    return n


def _sequence_labels(seq: SequenceFiles, n: int, root: Path, phase: str) -> np.ndarray:
    """The first n label maps of a held-out sequence, [n,H,W]: one size, 8-bit ids (a DataError otherwise)."""
    labels = [read_ids(p, "label") for p in seq.labels[:n]]
    for path, ids in zip(seq.labels, labels):
        if ids.shape != labels[0].shape:
            raise DataError(f"{path}: size {ids.shape[0]}x{ids.shape[1]} differs from {seq.labels[0]}'s "
                            f"{labels[0].shape[0]}x{labels[0].shape[1]}; a sequence's label maps share one size")
    labels = np.stack(labels)
    if labels.max() >= N_IDS:
        raise DataError(f"{root}/{phase}_A/{seq.name}: label id {labels.max()} found; label maps hold ids "
                        f"0..{N_IDS - 1} (8-bit)")
    return labels


def _measure(sequence: str, sets: dict[str, tuple[str, np.ndarray]], labels: np.ndarray, real: np.ndarray,
             rows: dict[str, _Row], prior: _Row, segmenter: Segmenter, inception: nn.Module | None,
             real_features: list | None, device: str, log: Log) -> None:
    """One held-out sequence: every row's frames (sets: {row name: (path, frames [n,H,W,3])}) segmented and scored
    (with Inception features when FID is on), and the segmenter on content-free frames (the prior row)."""
    for name, (path, frames) in sets.items():
        log(f"segmenting {sequence}: {name}")
        rows[name].add(sequence, path, segmenter.predict(frames), labels, frames, real)
        if inception is not None:
            features = inception_features(inception, frames, device)
            rows[name].features.append(features)
            if name == REAL:
                real_features.append(features)
    flat = np.broadcast_to(real.mean((1, 2), keepdims=True).round().astype(np.uint8), real.shape)
    prior.add(sequence, None, segmenter.predict(np.ascontiguousarray(flat)), labels, real, real)


DEFINITIONS = {
    "alignment": "frame t of each video is paired with label map t of its held-out sequence (sorted sequence "
    "names); frames are resized to the label maps' size (area when shrinking, bilinear when enlarging)",
    "segmenter": "a small U-Net trained on the real frames of the training split only (cached in the dataset "
    "folder); it sees frames scaled to max_side px on the longer side; scores are upsampled to the label size",
    "miou": "confusion matrix C summed over all frames of all sequences; IoU_c = C[c,c] / (row_c + col_c - "
    "C[c,c]); classes absent from both truth and prediction are excluded; mIoU = mean IoU_c",
    "pixel_accuracy": "trace(C) / sum(C)",
    "psnr": "10 log10(1 / MSE) per sequence, frames in [0, 1] against the real frames; mean over sequences",
    "l1": "mean |video - real| per sequence, frames in [0, 1]; mean over sequences",
    "fid": "Frechet distance of torchvision inception_v3 pool features (299x299 bilinear, ImageNet "
    "normalisation), real held-out frames vs the video's, all sequences pooled; not comparable with published "
    "FID (other Inception weights, far fewer frames: biased upward when frames < 2048)",
    **{k: v for k, v in DETAIL_DEFINITIONS.items() if k in ("detail", "detail_aligned")},
    "prior_only_miou": "the segmenter's mIoU on frames replaced by their mean colour: what position alone earns",
}
