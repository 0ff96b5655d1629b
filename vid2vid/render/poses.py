"""Pose render inputs (data.condition pose): a prepared sequence folder of the original's pose layout
(<root>/<phase>_openpose/<seq>/*.json, its frames <phase>_img/<seq> and, as the model reads them, <phase>_mask/<seq>
and <phase>_densepose/<seq>: vid2vid.data.poses.scan_poses checks them), or a video file whose person MediaPipe Holistic
finds while it streams (vid2vid.data.pose_keypoints.HolisticBackend, as `prepare video --labels pose` does: the frames
resized to `size` first, then the keypoints and, when the model reads it, the body mask). A frame without a person is
an empty pose (OpenPose's `"people": []`: nothing drawn) and is counted (PoseSource.missing); an input without a person
in any frame is a UserError (the render then leaves no output).

With `normalize` (a target dataset's root: Everybody Dance Now's global pose normalisation, vid2vid.data.pose_normalize)
the input is read twice: all its keypoints first (the source's far and near positions need the whole video), then
its frames again, each frame's keypoints (and mask / IUV) mapped before drawing. open_pose_input opens one, iter_poses
reads it frame by frame for VideoRenderer.step(people=..., frame=..., mask=..., iuv=...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from vid2vid.config import Size
from vid2vid.data import pose_normalize as pn
from vid2vid.data.openpose import has_person, read_openpose
from vid2vid.data.poses import read_iuv, read_mask, scan_poses
from vid2vid.data.prepare import resized
from vid2vid.data.sequences import layout_sequences
from vid2vid.errors import DataError, UserError
from vid2vid.video_io import IMAGE_EXTENSIONS, iter_frames, probe, read_image


class NormalizeError(UserError):
    """--pose-normalize cannot measure a person: the source's or the target's never shows its neck and an ankle in the
    same frame (the normalisation measures the whole body)."""


@dataclass
class PoseSource:
    name: str
    keypoints: list[Path] | None  # OpenPose JSON per frame, sorted by name; None: detected in the video `frames`
    frames: list[Path] | Path  # image files, or a video file
    masks: list[Path] | None = None  # a prepared folder's body masks (when the model reads them)
    densepose: list[Path] | None = None  # a prepared folder's DensePose IUV files (when the model reads them)
    detect_mask: bool = False  # a video: the body mask detected too
    size: Size | None = None  # a video: its frames resized to it before detection and drawing
    normalize: Path | None = None  # the target dataset's root: Everybody Dance Now's normalisation to its person
    real: Path | None = None  # (a label input's real frames; a pose model never takes its first frames from the source)
    missing: int = field(default=0, compare=False)  # frames read without a person (set while iter_poses reads)

    def __len__(self) -> int:
        return len(self.keypoints) if self.keypoints is not None else probe(self.frames).n_frames


def open_pose_input(path: str | Path, pose, *, size: Size | None, normalize: str | Path | None = None) -> PoseSource:
    """A pose sequence folder (<root>/<phase>_openpose/<seq>) with the folders the model's data.pose section `pose`
    reads, or a video file whose keypoints are detected (its frames resized to `size`) -> PoseSource."""
    path = Path(path)
    target = None if normalize is None else Path(normalize)
    if target is not None and not (target / "train_openpose").is_dir():
        raise UserError(f"--pose-normalize {target}: no {target / 'train_openpose'} folder; pass the root of the "
                        "dataset the model was trained on (the pose layout that `vid2vid prepare video --labels pose` "
                        "writes): its training keypoints give the target person's height and positions")
    if path.is_file() and path.suffix.lower() not in IMAGE_EXTENSIONS:
        if not pose.openpose_only:
            raise UserError(f"{path}: this pose model reads DensePose's IUV (data.pose.openpose_only false), which is "
                            "not detected while rendering; render a prepared sequence folder with its "
                            "<phase>_densepose (e.g. data/pose/test_openpose/seq_0000), or a model trained with "
                            "data.pose.openpose_only=true")
        from vid2vid.data.pose_keypoints import _import_holistic

        _import_holistic()  # a missing package fails before any output
        return PoseSource(path.stem, None, path, detect_mask=pose.mask, size=size, normalize=target)
    if size is not None:
        raise UserError(f"--size {size.h}x{size.w}: resizes a video file INPUT before its keypoints are detected; "
                        f"{path} is a prepared sequence, drawn at its frames' own size as the dataset draws it")
    if not path.is_dir():
        raise UserError(f"{path}: no such folder or video file; a pose model renders a video of a person or a "
                        "prepared sequence folder such as data/pose/test_openpose/seq_0000")
    if not path.parent.name.endswith("_openpose"):
        raise UserError(f"{path}: not a pose sequence folder (<root>/<phase>_openpose/<seq>, one OpenPose .json per "
                        "frame, its frames in <root>/<phase>_img/<seq>); or pass a video file of a person")
    root, phase = path.parent.parent, path.parent.name.removesuffix("_openpose")
    sequences = {seq.name: seq for seq in scan_poses(root, phase, pose)}
    if path.name not in sequences:
        raise UserError(f"{path}: no OpenPose .json files; a pose sequence folder holds one per frame")
    seq = sequences[path.name]
    return PoseSource(path.name, seq.labels, seq.frames, masks=seq.mask, densepose=seq.densepose, normalize=target)


def _frames(source: PoseSource, start: int, stop: int):
    """The frames start..stop-1 (resized to source.size)."""
    if isinstance(source.frames, Path):
        frames = islice(iter_frames(source.frames), start, stop)
    else:
        frames = (read_image(p) for p in source.frames[start:stop])
    for frame in frames:
        yield resized(frame, source.size)


def _read(source: PoseSource, start: int, stop: int):
    """{"people", "frame", "mask", "iuv"} per frame start..stop-1, as they are (detected or read)."""
    if source.keypoints is not None:
        for i, frame in zip(range(start, stop), _frames(source, start, stop)):
            yield {"people": read_openpose(source.keypoints[i]), "frame": frame,
                   "mask": None if source.masks is None else read_mask(source.masks[i]),
                   "iuv": None if source.densepose is None else read_iuv(source.densepose[i])}
        return
    from vid2vid.data.pose_keypoints import HolisticBackend

    backend = HolisticBackend(video=True, mask=source.detect_mask)
    try:
        for frame in _frames(source, start, stop):
            found = backend.detect(frame)
            yield {"people": found.people, "frame": frame, "mask": found.mask, "iuv": None}
    finally:
        backend.close()


def iter_poses(source: PoseSource, start: int = 0, count: int | None = None):
    """{"people": [Person], "frame": uint8 [H,W,3], "mask": uint8 [H,W] or None, "iuv": uint8 [H,W,3] or None} per
    frame from `start` (VideoRenderer.step's keywords), normalised to the target person with source.normalize.
    source.missing counts the frames without a person; none in any frame is a UserError (raised after the last frame
    when streaming, before the first with normalize). The normalisation measures the source over the frames read
    (start..start+count), all of them before the first is handed on."""
    stop = len(source) if count is None else min(len(source), start + count)
    source.missing, total = 0, 0
    if source.normalize is None:
        for item in _read(source, start, stop):
            total += 1
            source.missing += not has_person(item["people"])
            yield item
    else:
        read = [{k: v for k, v in item.items() if k != "frame"} for item in _read(source, start, stop)]
        total, source.missing = len(read), sum(not has_person(item["people"]) for item in read)
        if source.missing < total:
            maps = _normalisation(source, [item["people"] for item in read])
            for item, m, frame in zip(read, maps, _frames(source, start, stop)):
                size = frame.shape[:2]
                yield {"people": pn.mapped_people(item["people"], m, size), "frame": frame,
                       "mask": None if item["mask"] is None else pn.warped(item["mask"], m),
                       "iuv": None if item["iuv"] is None else pn.warped(item["iuv"], m)}
    if total < stop - start:
        raise DataError(f"{source.frames}: read {total} frames but expected {stop - start}; the video is truncated or "
                        "damaged; re-encode it")
    if total and source.missing == total:
        how = "MediaPipe Holistic found" if source.keypoints is None else "its OpenPose files hold"
        raise UserError(f"{source.frames}: {how} no person in any of its {total} frames; a pose model needs a "
                        "visible person (head and shoulders at least; the whole body with --pose-normalize)")


def _normalisation(source: PoseSource, people: list[list]) -> list[np.ndarray]:
    """The 2x3 map of each source frame (vid2vid.data.pose_normalize); a frame whose person shows no ankle takes the
    ankle point of the nearest frame that shows one."""
    measures = np.array([pn.measure(p.pose) if (p := pn.main_person(found)) is not None else (np.nan,) * 3
                         for found in people])  # [T,3] ankle x, ankle y, height
    own = pn.stance(measures[:, 1], measures[:, 2])
    if own is None:
        raise NormalizeError(f"--pose-normalize: {source.frames} never shows its person's neck and an ankle in the "
                             "same frame; the normalisation measures the whole body (neck to ankles): use a video "
                             "where the person is seen head to feet, or leave --pose-normalize out")
    height = _height(source.frames) if source.size is None else source.size.h
    target = target_stance(source.normalize, height)
    seen = np.flatnonzero(np.isfinite(measures[:, 1]))
    nearest = seen[np.abs(np.arange(len(people))[:, None] - seen[None, :]).argmin(1)]  # [T]
    return [pn.affine(measures[j, :2], own, target) for j in nearest]


def _height(frames: list[Path] | Path) -> int:
    """The height of a sequence's frames (a video file, or image files: the first one's)."""
    return probe(frames).height if isinstance(frames, Path) else read_image(frames[0]).shape[0]


def target_stance(root: Path, height: int) -> pn.Stance:
    """The target person's Stance from <root>/train_openpose (the main person of each frame), in a frame `height`
    pixels high (each sequence's points scaled from its frames' height)."""
    folder_o, _, jsons, frames = layout_sequences(root, "train", "pose", "*.json", "OpenPose .json files")
    measures = []
    for name, files in jsons.items():
        factor = height / _height(frames[name])
        for file in files:
            person = pn.main_person(read_openpose(file))
            if person is not None:
                x, y, h = pn.measure(person.pose)
                measures.append((y * factor, h * factor))
    found = pn.stance(*np.array(measures).T) if measures else None
    if found is None:
        raise NormalizeError(f"--pose-normalize {root}: no frame of {folder_o} shows the person's neck and an "
                             "ankle together; the normalisation needs the whole target body (neck to ankles) in its "
                             "training frames")
    return found
