"""`vid2vid check-data`: read every file of a dataset once, fail with a DataError naming the first bad
file, and summarise what is there."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vid2vid.data.faces import scan_faces
from vid2vid.data.keypoint_files import read_keypoints
from vid2vid.data.openpose import read_openpose
from vid2vid.data.poses import read_iuv, read_mask, scan_poses
from vid2vid.data.sequences import SequenceFiles, phases, read_flow, read_ids, read_labels, scan
from vid2vid.data.synthetic import ensure_dataset
from vid2vid.errors import DataError
from vid2vid.video_io import iter_frames, read_image

CITYSCAPES_NAMES = (
    "unlabeled", "ego vehicle", "rectification border", "out of roi", "static", "dynamic", "ground", "road",
    "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail", "bridge", "tunnel", "pole",
    "polegroup", "traffic light", "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "caravan", "trailer", "train", "motorcycle", "bicycle", "license plate",
)


@dataclass
class PhaseSummary:
    phase: str
    sequences: int = 0
    frames: int = 0
    sizes: Counter = field(default_factory=Counter)  # "HxW" -> frames
    video_sequences: int = 0
    has_inst: bool = False
    has_flow: bool = False
    histogram: np.ndarray | None = None  # [label_nc] pixel counts
    people: Counter = field(default_factory=Counter)  # poses: people in a frame -> frames
    pose_sources: str = ""  # poses: what the input is drawn from


@dataclass
class DatasetSummary:
    root: Path
    label_nc: int
    use_instance: bool
    phases: list[PhaseSummary]
    condition: str = "labels"

    def format(self) -> str:
        lines = [f"dataset {self.root}"]
        names = CITYSCAPES_NAMES if self.label_nc == len(CITYSCAPES_NAMES) else None
        for p in self.phases:
            sizes = ", ".join(f"{s} ({n} frames)" for s, n in p.sizes.most_common())
            rgb = f"{p.video_sequences} video files, {p.sequences - p.video_sequences} image folders"
            inst = "yes" if p.has_inst else (
                "MISSING (data.use_instance is true: the boundary channel will be all zeros)"
                if self.use_instance else "none")
            lines.append(f"  {p.phase}: {p.sequences} sequences, {p.frames} frames; sizes {sizes}")
            if self.condition == "face":
                lines.append(f"    RGB: {rgb}; 68 landmarks per frame (the face input is drawn from them)")
                continue
            if self.condition == "pose":
                people = ", ".join(f"{n} in {k} frames" for n, k in sorted(p.people.items()))
                lines.append(f"    RGB: {rgb}; the pose input: {p.pose_sources}; OpenPose's people per frame: "
                             f"{people}")
                continue
            lines.append(f"    RGB: {rgb}; instance maps: {inst}; exact flow: {'yes' if p.has_flow else 'no'}")
            total = p.histogram.sum()
            used = [(i, c) for i, c in enumerate(p.histogram) if c]
            used.sort(key=lambda item: -item[1])
            parts = [f"{i}{' ' + names[i] if names else ''} {100 * c / total:.1f}%" for i, c in used]
            lines.append(f"    labels ({len(used)} of data.label_nc={self.label_nc} ids used, % of pixels): "
                         + ", ".join(parts))
        return "\n".join(lines)


def _check_sequence(seq: SequenceFiles, label_nc: int, summary: PhaseSummary) -> None:
    size, first = None, seq.labels[0]

    def same(shape: tuple, path: Path) -> None:
        if shape[:2] != size:
            raise DataError(f"{path}: size {shape[0]}x{shape[1]} differs from {first} ({size[0]}x{size[1]}); "
                            "every frame, label and instance map of a sequence must have the same size")

    for path in seq.labels:
        labels = read_labels(path, label_nc)
        size = size or labels.shape
        same(labels.shape, path)
        summary.histogram += np.bincount(labels.ravel(), minlength=label_nc)[:label_nc]
    if seq.is_video:
        n = 0
        for frame in iter_frames(seq.frames):
            same(frame.shape, seq.frames)
            n += 1
        if n != len(seq):
            raise DataError(f"{seq.frames}: decoded {n} frames but the container says {len(seq)} (and there are "
                            f"{len(seq)} label maps); the video is truncated or damaged; re-encode it")
        summary.video_sequences += 1
    else:
        for path in seq.frames:
            same(read_image(path).shape, path)
    for path in seq.inst or []:
        same(read_ids(path, "instance").shape, path)
    for path in (seq.flow_fw or []) + (seq.flow_bw or []):
        same(read_flow(path).shape, path)
    summary.sizes[f"{size[0]}x{size[1]}"] += len(seq)


def check_phase(root: Path, phase: str, label_nc: int) -> PhaseSummary:
    sequences = scan(root, phase)
    summary = PhaseSummary(phase, len(sequences), sum(len(s) for s in sequences),
                           has_inst=sequences[0].inst is not None, has_flow=sequences[0].flow_fw is not None,
                           histogram=np.zeros(label_nc, np.int64))
    for seq in sequences:
        _check_sequence(seq, label_nc, summary)
    return summary


def check_face_phase(root: Path, phase: str) -> PhaseSummary:
    """The face layout: every keypoint file parses (68 points) and every frame decodes, one size per sequence."""
    sequences = scan_faces(root, phase)
    summary = PhaseSummary(phase, len(sequences), sum(len(s) for s in sequences))
    for seq in sequences:
        for path in seq.labels:
            read_keypoints(path)
        size = _frame_sizes(seq)
        summary.video_sequences += seq.is_video
        summary.sizes[f"{size[0]}x{size[1]}"] += len(seq)
    return summary


def _frame_sizes(seq: SequenceFiles) -> tuple[int, int]:
    """Decode every frame of a sequence; they must share one size -> (H, W)."""
    frames = iter_frames(seq.frames) if seq.is_video else (read_image(p) for p in seq.frames)
    size = None
    for i, frame in enumerate(frames):
        size = size or frame.shape[:2]
        if frame.shape[:2] != size:
            where = seq.frames if seq.is_video else seq.frames[i]
            raise DataError(f"{where}: size {frame.shape[0]}x{frame.shape[1]} differs from the sequence's first "
                            f"frame ({size[0]}x{size[1]}); every frame of a sequence must have the same size")
    return size


def check_pose_phase(root: Path, phase: str, pose) -> PhaseSummary:
    """The pose layout: every OpenPose file parses, every frame decodes (one size per sequence), and every DensePose
    IUV and body mask read (data.pose) decodes at the frames' size."""
    sequences = scan_poses(root, phase, pose)
    summary = PhaseSummary(phase, len(sequences), sum(len(s) for s in sequences))
    read = [*([] if pose.openpose_only else ["DensePose IUV (3)"]), "the OpenPose rendering (3)",
            *(["the body mask (1)"] if pose.mask else [])]
    unread = [f"{phase}_{kind} (data.pose.{key} is {str(value).lower()})"
              for kind, key, value in (("densepose", "openpose_only", pose.openpose_only), ("mask", "mask", pose.mask))
              if (root / f"{phase}_{kind}").is_dir() and value == (kind == "densepose")]
    summary.pose_sources = " + ".join(read) + (f"; not read: {', '.join(unread)}" if unread else "")
    for seq in sequences:
        for path in seq.labels:
            summary.people[len(read_openpose(path))] += 1
        size = _frame_sizes(seq)
        for path, read in [*((p, read_iuv) for p in seq.densepose or []), *((p, read_mask) for p in seq.mask or [])]:
            shape = read(path).shape[:2]
            if shape != size:
                raise DataError(f"{path}: size {shape[0]}x{shape[1]} differs from the sequence's frames "
                                f"({size[0]}x{size[1]}); DensePose's IUV and the body mask must have the frames' size")
        summary.video_sequences += seq.is_video
        summary.sizes[f"{size[0]}x{size[1]}"] += len(seq)
    return summary


def check_dataset(data_cfg) -> DatasetSummary:
    """Validate every file of every phase of the dataset (data_cfg.phase must be among them)."""
    root = ensure_dataset(data_cfg)
    condition = data_cfg.condition
    names = phases(root, condition)
    if data_cfg.phase not in names:  # raises the error that explains what is missing
        {"face": scan_faces, "pose": lambda r, p: scan_poses(r, p, data_cfg.pose)}.get(condition, scan)(
            root, data_cfg.phase)
    ordered = [data_cfg.phase] + [p for p in names if p != data_cfg.phase]
    check = {"face": check_face_phase, "pose": lambda r, p: check_pose_phase(r, p, data_cfg.pose)}.get(
        condition, lambda r, p: check_phase(r, p, data_cfg.label_nc))
    checked = [check(root, p) for p in ordered]
    return DatasetSummary(root, data_cfg.label_nc, data_cfg.use_instance, checked, data_cfg.condition)
