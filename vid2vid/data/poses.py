"""The original vid2vid's pose layout as a clip dataset (data.condition: pose):

    <root>/<phase>_openpose/<seq>/<frame>.json       OpenPose's keypoints of the frame (vid2vid.data.openpose)
    <root>/<phase>_img/<seq>/<frame>.png|jpg         the RGB frames (or <root>/<phase>_img/<seq>.<ext>, a video file)
    <root>/<phase>_densepose/<seq>/<frame>_IUV.png   DensePose's IUV of the frame, unless data.pose.openpose_only
    <root>/<phase>_mask/<seq>/<frame>.png            the body mask, 0/255, with data.pose.mask

Files pair by sorted name, as the original pairs them (a DensePose folder holding *_IUV.png files is read for those
alone: DensePose writes *_INDS.png beside them). Each frame is made as the original's pose dataset makes it: the
OpenPose rendering drawn at the frame's own size (vid2vid.data.pose_input.draw_openpose, the original's drawing), the
IUV read, both with training's random drops (data.pose.random_drop_prob, remove_face_labels: pose_input's rng,
drawn per clip from (seed, epoch, index); in any other phase no rng, nothing random), then the clip's one resize and
crop, nearest neighbour as the original resizes them (the frames: area / bilinear), each normalised to [-1,1] as the
original does (densepose_input, to_signed; the mask 0/255 -> -1/1), and, with data.pose.central_columns, only the
central columns of the input, the labels and the frames kept (central_columns). No flip: the original never flips a
pose clip (data.flip's rule), and neither do we. Items:

    cond   [T,C,H,W'] float32 in [-1,1]  DensePose (3, unless openpose_only), OpenPose (3), mask (1, with mask)
    labels [T,H,W'] int64                the DensePose part ids 0..24; without DensePose 1 on the body (the mask, else
                                         where the rendering is drawn): the instance map and the sample pictures
    frames [T,3,H,W'] in [-1,1]
    face_box [T,4] float32               the face points' tight box in pixels of this view (x0, y0, x1, y1; pixel i
                                         covers [i, i+1)): OpenPose's 70 face points of the first person with at
                                         least 2 found in view, else BODY_25's head points 0, 15-18 (face_box)
    face_valid [T] bool                  whether the frame has such a box (False: face_box is zeros)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from vid2vid.data import transforms
from vid2vid.data.encoding import pose_options
from vid2vid.data.openpose import Person, move_people, read_openpose
from vid2vid.data.pose_input import (
    DENSEPOSE_PARTS,
    PoseOptions,
    central_columns,
    densepose_input,
    draw_openpose,
    drop_densepose_parts,
    to_signed,
)
from vid2vid.data.sequences import ClipDataset, SequenceFiles, _match, _same_size, _subfolders, layout_sequences
from vid2vid.errors import DataError
from vid2vid.video_io import probe, read_image

DROP_STREAM = 1  # the random drops' own stream of a clip's seed (seed, epoch, index, DROP_STREAM)


@dataclass
class PoseSequence(SequenceFiles):
    """A pose sequence: `labels` holds its OpenPose .json files; densepose / mask their files when read."""

    densepose: list[Path] | None = None
    mask: list[Path] | None = None


def _side_folder(root: Path, phase: str, kind: str, jsons: dict[str, list[Path]], folder_o: Path, fix: str
                 ) -> tuple[Path, dict[str, list[Path]]]:
    """<phase>_<kind>: its sequence folders, matched to those of <phase>_openpose, and their PNG files (only the
    *_IUV.png ones where a folder has them)."""
    folder = root / f"{phase}_{kind}"
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; {fix}")
    files = {}
    for name, path in _subfolders(folder).items():
        iuv = sorted(path.glob("*_IUV.png"))
        files[name] = iuv or sorted(p for p in path.glob("*.png") if p.is_file())
    _match(files, jsons, kind, folder, folder_o)
    return folder, files


def scan_poses(root: str | Path, phase: str, pose) -> list[PoseSequence]:
    """The sequences of one phase of the pose layout (names and counts checked, not contents); pose: the data.pose
    section (which folders are read)."""
    root = Path(root)
    folder_o, folder_i, jsons, frames = layout_sequences(root, phase, "pose", "*.json", "OpenPose .json files")
    sides: dict[str, tuple[Path, dict[str, list[Path]]]] = {}  # "DensePose" / "mask" -> (folder, files)
    if not pose.openpose_only:
        sides["DensePose"] = _side_folder(root, phase, "densepose", jsons, folder_o, "data.pose.openpose_only is "
                                          "false: the input starts with DensePose's IUV (<phase>_densepose/<seq>/"
                                          "*_IUV.png); add it or set data.pose.openpose_only=true")
    if pose.mask:
        sides["mask"] = _side_folder(root, phase, "mask", jsons, folder_o, "data.pose.mask is true: the input ends "
                                     "with the body mask (<phase>_mask/<seq>/*.png, 0/255; `vid2vid prepare video IN "
                                     "OUT --labels pose` writes it); add it or set data.pose.mask=false")
    out = []
    for name, files in jsons.items():
        source = frames[name]
        n = probe(source).n_frames if isinstance(source, Path) else len(source)
        where = source if isinstance(source, Path) else folder_i / name
        if n != len(files):
            raise DataError(f"{folder_o / name}: {len(files)} OpenPose .json files but {where} has {n} frames; every "
                            "frame needs its own OpenPose file (they pair by sorted name)")
        for kind, (folder, side) in sides.items():
            if len(side[name]) != n:
                raise DataError(f"{folder / name}: {len(side[name])} {kind} .png files but {where} has {n} frames; "
                                "every frame needs its own (they pair by sorted name)")
        dense, masks = (sides[kind][1][name] if kind in sides else None for kind in ("DensePose", "mask"))
        out.append(PoseSequence(name, files, source, None, None, None, dense, masks))
    return out


def read_iuv(path: Path) -> np.ndarray:
    """A DensePose IUV picture -> uint8 [H,W,3] (RGB as read; the third channel the part id 0..24)."""
    iuv = read_image(path)
    top = int(iuv[..., 2].max())
    if top > DENSEPOSE_PARTS:
        raise DataError(f"{path}: part id {top} in the third channel; DensePose's IUV holds the part id 0..24 there "
                        "(its *_IUV.png, written by DensePose's infer_simple.py), not a colour rendering")
    return iuv


def read_mask(path: Path) -> np.ndarray:
    """A body mask -> uint8 [H,W] (0: background, 255: the person)."""
    mask = read_image(path, cv2.IMREAD_UNCHANGED)
    if mask.ndim != 2 or mask.dtype != np.uint8:
        shape = f"{mask.shape[2]} channels" if mask.ndim == 3 else f"{mask.dtype} values"
        raise DataError(f"{path}: the body mask has {shape}; it must be a single-channel 8-bit picture, 0 for the "
                        "background and 255 for the person")
    return mask


class PoseClipDataset(ClipDataset):
    """Clips of the pose layout: the pose input drawn per frame (see the module's docstring)."""

    def __init__(self, sequences: list[PoseSequence], *, pose, central_columns: bool = True, **settings):
        super().__init__(sequences, **settings)
        if self.flip:
            raise ValueError("PoseClipDataset: no flip (the original never flips a pose clip); pass flip=False")
        self.options, self.with_mask, self.central = pose_options(pose), pose.mask, central_columns

    def __getitem__(self, index) -> dict:
        key = self.key(index)
        seq = self.sequences[key.index % len(self.sequences)]
        start, step, tf = self.sample(key)
        idx = [start + k * step for k in range(key.n_frames)]
        rng = np.random.default_rng([self.seed, key.epoch, key.index, DROP_STREAM]) if self.augment else None
        return {**self.load(seq, idx, tf, rng=rng), "sequence": seq.name, "start": start, "step": step}

    def load(self, seq: PoseSequence, idx: list[int], tf: transforms.ClipTransform, anchor: int | None = None,
             rng: np.random.Generator | None = None) -> dict:
        """Frames idx of a sequence -> {cond, labels, frames}. rng: training's random drops (None: none). anchor:
        unused (the face dataset's)."""
        rgb = self._rgb(seq, idx)
        h, w = rgb[0].shape[:2]
        first = seq.frames if seq.is_video else seq.frames[idx[0]]
        conds, labels, boxes = [], [], []
        for i, image in zip(idx, rgb):
            _same_size(image, (h, w), seq.frames if seq.is_video else seq.frames[i], first)
            iuv = mask = None
            if not self.options.openpose_only:
                iuv = read_iuv(seq.densepose[i])
                _same_size(iuv, (h, w), seq.densepose[i], first)
            if self.with_mask:
                mask = read_mask(seq.mask[i])
                _same_size(mask, (h, w), seq.mask[i], first)
            people = read_openpose(seq.labels[i])
            cond, parts = frame_input(people, h, w, tf, self.options, iuv=iuv, mask=mask, central=self.central, rng=rng)
            boxes.append(face_box(frame_people(people, h, w, tf, self.central)))
            conds.append(cond)
            labels.append(parts)
        return {
            "cond": torch.from_numpy(np.stack(conds)),  # [T,C,H,W'] in [-1,1]
            "labels": torch.from_numpy(np.stack(labels).astype(np.int64)),  # [T,H,W']
            "frames": torch.from_numpy(np.stack([frame_target(x, tf, self.central) for x in rgb])),  # [T,3,H,W']
            "face_box": torch.from_numpy(np.stack([box for box, _ in boxes])),  # [T,4]
            "face_valid": torch.tensor([valid for _, valid in boxes], dtype=torch.bool),  # [T]
        }


def frame_input(people: list[Person], h: int, w: int, tf: transforms.ClipTransform, options: PoseOptions, *,
                iuv: np.ndarray | None = None, mask: np.ndarray | None = None, central: bool = True,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One frame's pose input as this dataset builds it (the ONE builder: the clips here, vid2vid render for pose
    models): the people's OpenPose rendering drawn at the frame's size h x w (after the DensePose IUV uint8 [h,w,3]
    unless options.openpose_only; then the body mask uint8 [h,w] 0/255 when given), each through the transform tf
    (nearest neighbour), normalised to [-1,1], and with `central` only the central columns of tf's crop ->
    (cond float32 [C,crop.h,W'], labels uint8 [crop.h,W']: DensePose's part ids, else 1 on the mask, else 1 where
    the rendering is drawn). rng: training's random drops (drop_densepose_parts, then draw_openpose's); None: the
    test phase, nothing random."""
    maps, parts = [], None
    if not options.openpose_only:
        if iuv is None:
            raise ValueError("frame_input: the DensePose IUV is needed unless options.openpose_only")
        if rng is not None:
            iuv = drop_densepose_parts(iuv, options, rng)
        iuv = transforms.apply_ids(iuv, tf)
        maps.append(densepose_input(iuv))
        parts = iuv[..., 2]
    drawn = transforms.apply_ids(draw_openpose(people, h, w, options, rng), tf)
    maps.append(to_signed(drawn))
    if mask is not None:
        mask = transforms.apply_ids(mask, tf)
        maps.append(to_signed(mask[..., None]))
        parts = (mask > 127).astype(np.uint8) if parts is None else parts
    labels = drawn.any(-1).astype(np.uint8) if parts is None else parts
    cols = central_columns(tf.crop.w) if central else slice(None)
    return np.ascontiguousarray(np.concatenate(maps)[..., cols]), np.ascontiguousarray(labels[..., cols])


def frame_pixels(rgb: np.ndarray, tf: transforms.ClipTransform, central: bool = True) -> np.ndarray:
    """A frame uint8 [h,w,3] framed as this dataset frames it: through tf (area / bilinear), the central columns
    with `central` -> uint8 [crop.h,W',3] (what a pose model renders: its frames are this view)."""
    image = transforms.apply_image(rgb, tf)
    return np.ascontiguousarray(image[:, central_columns(tf.crop.w)] if central else image)


def frame_target(rgb: np.ndarray, tf: transforms.ClipTransform, central: bool = True) -> np.ndarray:
    """A frame uint8 [h,w,3] as this dataset gives it (the real frame of frame_input's input): frame_pixels ->
    float32 [3,crop.h,W'] in [-1,1]."""
    image = frame_pixels(rgb, tf, central)
    return np.ascontiguousarray(np.moveaxis(image, -1, 0)).astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def frame_people(people: list[Person], h: int, w: int, tf: transforms.ClipTransform, central: bool = True
                 ) -> list[Person]:
    """People with points in a frame of h x w pixels -> in frame_pixels' view of it: every found point (confidence
    > 0) through tf (transforms.apply_points), then less the central columns' first column with `central`; a point
    that falls outside the view (x outside [0, W'), y outside [0, crop.h)) becomes zeros, as a point not found is
    written. People with no point left stay in the list (as Persons of zeros)."""
    cols = central_columns(tf.crop.w) if central else slice(0, tf.crop.w)
    return move_people(people, lambda xy: transforms.apply_points(xy, (h, w), tf) - [cols.start, 0],
                       (tf.crop.h, cols.stop - cols.start))


HEAD_POINTS = (0, 15, 16, 17, 18)  # BODY_25: nose, right eye, left eye, right ear, left ear


def face_box(people: list[Person]) -> tuple[np.ndarray, bool]:
    """People in a view (frame_people: points outside it are zeros) -> (the face's tight box float32 [4] = x0, y0,
    x1, y1 in pixels of the view, pixel i covering [i, i+1), so a point at pixel centre x gives the edge x + 0.5;
    whether there is one). The face is the first person's (OpenPose's order) with at least 2 of its 70 face points
    found, else at least 2 of its BODY_25 head points (0, 15-18); none: (zeros, False)."""
    for person in people:
        for points in (person.face, person.pose[list(HEAD_POINTS)]):
            found = points[points[:, 2] > 0, :2]
            if len(found) >= 2:
                lo, hi = found.min(0) + 0.5, found.max(0) + 0.5
                return np.array([lo[0], lo[1], hi[0], hi[1]], np.float32), True
    return np.zeros(4, np.float32), False
