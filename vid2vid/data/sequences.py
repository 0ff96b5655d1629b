"""The vid2vid folder layout as a torch Dataset of clips.

    <root>/<phase>_A/<seq>/*.png        label ids, single channel
    <root>/<phase>_B/<seq>/*.png|jpg    RGB frames, or <root>/<phase>_B/<seq>.<ext> a video file
    <root>/<phase>_inst/<seq>/*.png     instance ids (8- or 16-bit), optional
    <root>/<phase>_flow/<seq>/fw_*.flo, bw_*.flo   flow t -> t+1 and t+1 -> t, optional

Frames pair by sorted name. One item = one clip of n_frames frames from sequence `index`, at a
random start and temporal stride, with one random zoom/crop/flip for the whole clip; all of it is
drawn from (seed, epoch, index), so it does not depend on the process or DataLoader worker.
The training loader indexes with ClipKey(epoch, index, n_frames) from vid2vid.data.sampler, so that
no state has to reach the workers; dataset[int] uses the dataset's own epoch and n_frames.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from einops import rearrange

from flow.errors import FlowError
from flow.io import read_flo
from vid2vid.config import Size
from vid2vid.data import transforms
from vid2vid.data.sampler import ClipKey
from vid2vid.data.synthetic import ensure_dataset
from vid2vid.errors import DataError
from vid2vid.video_io import VideoIndex, image_files, probe, read_image

NOT_VIDEO = {".txt", ".md", ".json", ".yaml", ".yml", ".csv", ".db", ".ini", ".png", ".jpg", ".jpeg"}


@dataclass
class SequenceFiles:
    name: str
    labels: list[Path]
    frames: list[Path] | Path  # image files, or one video file
    inst: list[Path] | None
    flow_fw: list[Path] | None
    flow_bw: list[Path] | None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def is_video(self) -> bool:
        return isinstance(self.frames, Path)


# ----------------------------------------------------------------------------------------------
# Scanning the layout (structure only: names and counts)
# ----------------------------------------------------------------------------------------------


def _subfolders(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def _frame_sources(folder: Path) -> dict[str, list[Path] | Path]:
    """<phase>_B: sequence folders of images and/or video files named <seq>.<ext>."""
    out: dict[str, list[Path] | Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or (p.is_file() and p.suffix.lower() in NOT_VIDEO):
            continue
        name = p.name if p.is_dir() else p.stem
        if name in out:
            raise DataError(f"{folder}: sequence {name!r} is given twice (a folder and a video file, or two "
                            "videos); keep one")
        out[name] = image_files(p) if p.is_dir() else p
    return out


# The folders of each data.condition: (<phase>_<condition folder>, <phase>_<frames folder>)
LAYOUT = {"labels": ("A", "B"), "face": ("keypoints", "img"), "pose": ("openpose", "img")}


def phases(root: str | os.PathLike, condition: str = "labels") -> list[str]:
    """Phases present under root (folders named <phase>_A, <phase>_keypoints for faces, <phase>_openpose for poses),
    e.g. ['test', 'train']."""
    root, suffix = Path(root), "_" + LAYOUT[condition][0]
    if not root.is_dir():
        return []
    return sorted(p.name[: -len(suffix)] for p in root.iterdir() if p.is_dir() and p.name.endswith(suffix))


def held_out_phase(data_cfg) -> str:
    """The phase samples and held-out metrics come from: test when the dataset has it, else data.phase."""
    return "test" if "test" in phases(data_cfg.root, data_cfg.condition) else data_cfg.phase


def _match(names: dict, reference: dict, what: str, folder: Path, ref_folder: Path) -> None:
    missing = sorted(set(reference) - set(names))
    extra = sorted(set(names) - set(reference))
    if missing or extra:
        detail = (f"missing {', '.join(missing[:5])}" if missing else "") + \
            ("; " if missing and extra else "") + (f"extra {', '.join(extra[:5])}" if extra else "")
        raise DataError(f"{folder}: {what} sequences do not match those of {ref_folder} ({detail}); "
                        "every sequence needs the same name in each folder")


def _count(name: str, n: int, expected: int, where: Path, ref: Path) -> None:
    if n != expected:
        raise DataError(f"{where}: sequence {name!r} has {n} frames but {ref} has {expected}; "
                        "every sequence needs one frame per label map")


def layout_sequences(root: Path, phase: str, condition: str, pattern: str, what: str
                     ) -> tuple[Path, Path, dict[str, list[Path]], dict[str, list[Path] | Path]]:
    """The two folders of a phase in the layout of `condition` (LAYOUT: <phase>_A / <phase>_B, or <phase>_keypoints /
    <phase>_img), checked to exist -> (condition folder, frame folder, {sequence: its files matching `pattern`
    (`what` names them in the error when none)}, {sequence: its frame sources}), the sequence names matched."""
    a, b = LAYOUT[condition]
    first, second = root / f"{phase}_{a}", root / f"{phase}_{b}"
    if not root.is_dir():
        layout = "vid2vid" if condition == "labels" else f"original {condition}"
        raise DataError(f"{root}: dataset folder not found; set data.root to a folder in the {layout} layout "
                        f"(<phase>_{a}, <phase>_{b}) or use data.source: synthetic")
    for folder in (first, second):
        if not folder.is_dir():
            found = ", ".join(f"{p}_{a}" for p in phases(root, condition)) or "none"
            extra = "" if condition == "labels" else f" (data.condition {condition} reads <phase>_{a} and <phase>_{b})"
            raise DataError(f"{folder}: folder not found (phase {phase!r}; phases found: {found}); check data.root "
                            f"and data.phase{extra}")
    files = {name: sorted(p.glob(pattern)) for name, p in _subfolders(first).items()}
    files = {name: found for name, found in files.items() if found}
    if not files:
        raise DataError(f"{first}: empty dataset: no sequence folder with {what}")
    frames = _frame_sources(second)
    _match(frames, files, "frame", second, first)
    return first, second, files, frames


def scan(root: str | os.PathLike, phase: str) -> list[SequenceFiles]:
    """The sequences of one phase, with their files; checks names and frame counts (not contents)."""
    root = Path(root)
    folder_a, folder_b, labels, frames = layout_sequences(root, phase, "labels", "*.png", "PNG label maps")
    folder_i, folder_f = root / f"{phase}_inst", root / f"{phase}_flow"
    inst = None
    if folder_i.is_dir():
        inst = {name: sorted(p.glob("*.png")) for name, p in _subfolders(folder_i).items()}
        _match(inst, labels, "instance", folder_i, folder_a)
    flows = None
    if folder_f.is_dir():
        flows = {name: (sorted(p.glob("fw_*.flo")), sorted(p.glob("bw_*.flo")))
                 for name, p in _subfolders(folder_f).items()}
        _match(flows, labels, "flow", folder_f, folder_a)
    out = []
    for name, label_files in labels.items():
        n = len(label_files)
        source = frames[name]
        n_frames = probe(source).n_frames if isinstance(source, Path) else len(source)
        _count(name, n_frames, n, source if isinstance(source, Path) else folder_b / name, folder_a / name)
        if inst is not None:
            _count(name, len(inst[name]), n, folder_i / name, folder_a / name)
        fw = bw = None
        if flows is not None:
            fw, bw = flows[name]
            for kind, files in (("fw", fw), ("bw", bw)):
                if len(files) != n - 1:
                    raise DataError(f"{folder_f / name}: {len(files)} {kind}_*.flo files for {n} frames; "
                                    f"expected {n - 1} (one per consecutive pair)")
        out.append(SequenceFiles(name, label_files, source, inst[name] if inst else None, fw, bw))
    return out


# ----------------------------------------------------------------------------------------------
# Reading one frame's files, with checks that name the file
# ----------------------------------------------------------------------------------------------


def read_ids(path: Path, what: str) -> np.ndarray:
    """A label or instance map read unchanged; must be single-channel."""
    ids = read_image(path, cv2.IMREAD_UNCHANGED)
    if ids.ndim != 2:
        raise DataError(f"{path}: {what} map has {ids.shape[2]} channels; it must be a single-channel image of "
                        "ids (8-bit grayscale for labels, 8- or 16-bit for instances), not a colour rendering")
    return ids


def read_labels(path: Path, label_nc: int) -> np.ndarray:
    labels = read_ids(path, "label")
    top = int(labels.max())
    if top >= label_nc:
        raise DataError(f"{path}: label id {top} found but data.label_nc is {label_nc}; ids must be "
                        f"0..label_nc-1: set data.label_nc to at least {top + 1} or remap the labels")
    return labels


def read_flow(path: Path) -> np.ndarray:
    try:
        return read_flo(path)
    except FlowError as e:
        raise DataError(str(e)) from None


def _same_size(image: np.ndarray, size: tuple[int, int], path: Path, ref: Path) -> None:
    if image.shape[:2] != size:
        raise DataError(f"{path}: size {image.shape[0]}x{image.shape[1]} differs from {ref} "
                        f"({size[0]}x{size[1]}); every frame, label and instance map of a sequence must "
                        "have the same size")


def compose_flows(flows: list[np.ndarray]) -> np.ndarray:
    """Chain flows [H,W,2] (first applied first): f(x) = f1(x) + f2(x + f1(x)) + ... (bilinear)."""
    total = flows[0].copy()
    h, w = total.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)
    for nxt in flows[1:]:
        pos = grid + total
        total += cv2.remap(nxt, pos[..., 0], pos[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return total


# ----------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------


class ClipDataset(torch.utils.data.Dataset):
    """Clips of the vid2vid layout. Item i is a clip from sequence i % len(sequences)."""

    def __init__(self, sequences: list[SequenceFiles], *, n_frames: int, max_t_step: int, label_nc: int,
                 load_size: Size, crop_size: Size, max_zoom: float = 1.0, flip: bool = False,
                 augment: bool = True, seed: int = 0):
        if not sequences:
            raise DataError("empty dataset: no sequences")
        self.sequences = sequences
        self.label_nc, self.max_t_step = label_nc, max_t_step
        self.load_size, self.crop_size = Size(*load_size), Size(*crop_size)
        self.max_zoom, self.flip, self.augment, self.seed = max_zoom, flip, augment, seed
        self.epoch = 0
        self.shortest = min(len(s) for s in sequences)
        if n_frames > self.shortest:
            name = min(sequences, key=len).name
            raise DataError(f"sequence {name!r} has only {self.shortest} frames but data.n_frames is {n_frames}; "
                            f"lower data.n_frames to at most {self.shortest} or remove short sequences")
        self.n_frames = n_frames
        self._videos: dict[str, VideoIndex] = {}  # built on first use, per process

    def __len__(self) -> int:
        return len(self.sequences)

    def set_epoch(self, epoch: int) -> None:
        """The epoch of dataset[int] in this process (a loader's workers get theirs from the ClipKeys)."""
        self.epoch = epoch

    def set_n_frames(self, n: int) -> int:
        """The clip length of dataset[int] in this process, capped at the shortest sequence; returns it.
        Training changes it through the loader's keys (vid2vid.data.sampler.BatchStream.set_n_frames)."""
        if n < 1:
            raise ValueError(f"set_n_frames: n must be >= 1, got {n}")
        self.n_frames = min(n, self.shortest)
        return self.n_frames

    @property
    def has_flow(self) -> bool:
        return self.sequences[0].flow_fw is not None

    @property
    def has_inst(self) -> bool:
        return self.sequences[0].inst is not None

    def key(self, index: int | ClipKey) -> ClipKey:
        """The full key of an item: a plain index draws with the dataset's current epoch and n_frames."""
        if isinstance(index, tuple):
            key = ClipKey(*index)
            if not 1 <= key.n_frames <= self.shortest:
                raise ValueError(f"{key}: n_frames must be in 1..{self.shortest} (the shortest sequence)")
            return key
        return ClipKey(self.epoch, int(index), self.n_frames)

    def sample(self, index: int | ClipKey) -> tuple[int, int, transforms.ClipTransform]:
        """(start, step, transform) of an item: a ClipKey, or an index for the current epoch."""
        epoch, index, n = self.key(index)
        seq = self.sequences[index % len(self.sequences)]
        if not self.augment:
            return 0, 1, transforms.centre_transform(load_size=self.load_size, crop_size=self.crop_size)
        rng = np.random.default_rng([self.seed, epoch, index])
        max_step = max(1, min(self.max_t_step, (len(seq) - 1) // max(1, n - 1)))
        step = int(rng.integers(1, max_step + 1))
        start = int(rng.integers(0, len(seq) - (n - 1) * step))
        tf = transforms.draw_transform(rng, load_size=self.load_size, crop_size=self.crop_size,
                                       max_zoom=self.max_zoom, flip=self.flip)
        return start, step, tf

    def _rgb(self, seq: SequenceFiles, indices: list[int]) -> list[np.ndarray]:
        if not seq.is_video:
            return [read_image(seq.frames[i]) for i in indices]
        if seq.name not in self._videos:
            self._videos[seq.name] = VideoIndex(seq.frames)
        return self._videos[seq.name].read(indices)

    def __getitem__(self, index: int | ClipKey) -> dict:
        key = self.key(index)
        seq = self.sequences[key.index % len(self.sequences)]
        start, step, tf = self.sample(key)
        idx = [start + k * step for k in range(key.n_frames)]
        return {**self.load(seq, idx, tf), "sequence": seq.name, "start": start, "step": step}

    def load(self, seq: SequenceFiles, idx: list[int], tf: transforms.ClipTransform, anchor: int | None = None
             ) -> dict:
        """Frames idx of a sequence, transformed -> {labels, frames, inst?, flow_*?} (anchor: see FaceClipDataset)."""
        labels = [read_labels(seq.labels[i], self.label_nc) for i in idx]
        size = labels[0].shape
        rgb = self._rgb(seq, idx)
        for i, image in zip(idx, rgb):
            _same_size(image, size, seq.frames if seq.is_video else seq.frames[i], seq.labels[idx[0]])
        for i, lab in zip(idx, labels):
            _same_size(lab, size, seq.labels[i], seq.labels[idx[0]])
        out = {
            "labels": torch.from_numpy(np.stack([transforms.apply_ids(x, tf) for x in labels]).astype(np.int64)),
            "frames": rearrange(torch.from_numpy(np.stack([transforms.apply_image(x, tf) for x in rgb])),
                                "t h w c -> t c h w").float() / 127.5 - 1.0,  # [T,3,H,W] in [-1,1]
        }
        if seq.inst is not None:
            inst = [read_ids(seq.inst[i], "instance") for i in idx]
            for i, x in zip(idx, inst):
                _same_size(x, size, seq.inst[i], seq.labels[idx[0]])
            out["inst"] = torch.from_numpy(np.stack([transforms.apply_ids(x, tf) for x in inst]).astype(np.int64))
        if seq.flow_fw is not None:
            step = idx[1] - idx[0] if len(idx) > 1 else 1
            for key, files in (("flow_fw", seq.flow_fw), ("flow_bw", seq.flow_bw)):
                flows = []
                for a in idx[:-1]:
                    parts = [read_flow(files[j]) for j in range(a, a + step)]
                    for j, f in zip(range(a, a + step), parts):
                        _same_size(f, size, files[j], seq.labels[idx[0]])
                    if key == "flow_bw":
                        parts = parts[::-1]  # t+step -> t+step-1 -> ... -> t
                    flows.append(transforms.apply_flow(compose_flows(parts), tf))
                out[key] = rearrange(torch.from_numpy(np.stack(flows)) if flows else
                                     torch.zeros(0, *self.crop_size, 2), "t h w c -> t c h w")
        return out


def build_dataset(data_cfg, phase: str | None = None, seed: int = 0, augment: bool | None = None) -> ClipDataset:
    """The clip dataset of data_cfg (generating the synthetic dataset first when configured): the label layout, or
    the face layout with data.condition face (vid2vid.data.faces), the pose layout with data.condition pose
    (vid2vid.data.poses). Training phase (or augment True): random start,
    stride, zoom, crop, flip; any other phase (or augment False): the first n_frames frames of each sequence,
    resized and centre-cropped."""
    phase = phase or data_cfg.phase
    root = ensure_dataset(data_cfg)
    settings = dict(n_frames=data_cfg.n_frames, max_t_step=data_cfg.max_t_step, label_nc=data_cfg.label_nc,
                    load_size=data_cfg.load_size, crop_size=data_cfg.crop_size, max_zoom=data_cfg.max_zoom,
                    flip=data_cfg.flip, augment=phase == "train" if augment is None else augment, seed=seed)
    if data_cfg.condition == "face":
        from vid2vid.data.faces import FaceClipDataset, scan_faces  # faces.py builds on this module

        return FaceClipDataset(scan_faces(root, phase), face=data_cfg.face, **settings)
    if data_cfg.condition == "pose":
        from vid2vid.data.poses import PoseClipDataset, scan_poses  # poses.py builds on this module

        return PoseClipDataset(scan_poses(root, phase, data_cfg.pose), pose=data_cfg.pose,
                               central_columns=data_cfg.pose.central_columns, **settings)
    return ClipDataset(scan(root, phase), **settings)


def whole_sequences(data_cfg, phase: str, max_frames: int = 0) -> list[tuple[str, dict]]:
    """(name, item) for every sequence of a split as evaluation sees it: whole frames (resized to
    data.load_size, not cropped), unaugmented, the first max_frames frames (0: the shortest sequence's length)."""
    data = replace(data_cfg, n_frames=1, crop_size=data_cfg.load_size)
    shortest = build_dataset(data, phase=phase).shortest
    n = shortest if max_frames <= 0 else min(max_frames, shortest)
    dataset = build_dataset(replace(data, n_frames=n), phase=phase)
    return [(seq.name, dataset[i]) for i, seq in enumerate(dataset.sequences)]
