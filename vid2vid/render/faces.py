"""Face render inputs: a sequence folder of keypoint files in the original face layout
(<root>/<phase>_keypoints/<seq>/*.txt, 68 `x,y` lines each) with its frames (<root>/<phase>_img/<seq>, images or a
video file), which give each frame's size and its Canny background edges, as the original's test does; or a video
file whose landmarks a detector finds while it streams (vid2vid.landmarks: FaceTracker, the largest face first,
then the nearest; a frame without the face keeps the last points; optionally smoothed over time by the One-Euro filter,
restarted after each frame without the face). open_face_input opens one, iter_faces reads it
frame by frame for VideoRenderer.step(landmarks=..., frame=...)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from vid2vid.data.keypoint_files import read_keypoints
from vid2vid.errors import UserError
from vid2vid.landmarks.smoothing import DEFAULT_FPS, OneEuro, OneEuroFilter
from vid2vid.video_io import IMAGE_EXTENSIONS, image_files, iter_frames, probe, read_image

log = logging.getLogger(__name__)


@dataclass
class FaceSource:
    name: str
    keypoints: list[Path] | None  # one file per frame, sorted by name; None: detected in the video `frames`
    frames: list[Path] | Path  # image files, or a video file
    real: Path | None = None  # (a label input's real frames; a face model takes its first frames from `frames`)
    detector: str | None = None  # the landmark backend of a video without keypoint files ("dlib", "mediapipe")
    smooth: OneEuro | None = None  # detected landmarks smoothed over time (vid2vid.landmarks.smoothing)

    def __len__(self) -> int:
        return len(self.keypoints) if self.keypoints is not None else probe(self.frames).n_frames


def _frames_of(folder: Path) -> list[Path] | Path | None:
    """<root>/<phase>_img/<seq> (a folder of images) or <root>/<phase>_img/<seq>.<ext> (a video), or None."""
    if folder.is_dir():
        return image_files(folder)
    videos = sorted(p for p in folder.parent.glob(f"{folder.name}.*") if p.is_file()) if folder.parent.is_dir() else []
    return videos[0] if videos else None


def open_face_input(path: str | Path, landmarks: str | None = None, smooth: OneEuro | None = None) -> FaceSource:
    """A keypoint sequence folder of the face layout (its frames found beside it), or a video file whose landmarks
    the `landmarks` backend (default dlib) detects while rendering, smoothed over time with `smooth` -> FaceSource."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() not in IMAGE_EXTENSIONS:
        from vid2vid.landmarks import open_backend

        open_backend(landmarks or "dlib").close()  # a missing package or unknown name fails before any output
        return FaceSource(path.stem, None, path, detector=landmarks or "dlib", smooth=smooth)
    if smooth is not None:
        raise UserError(f"--smooth {smooth}: smooths the landmarks detected in a video file INPUT; {path} is not one "
                        "(smooth keypoint files when preparing them: vid2vid prepare video --labels face --smooth)")
    if landmarks is not None:
        raise UserError(f"--landmarks {landmarks}: detects the landmarks of a video file INPUT; {path} is not one "
                        "(a keypoint sequence folder brings its own)")
    if not path.is_dir():
        raise UserError(f"{path}: no such folder; a face model renders a keypoint sequence folder such as "
                        "data/face/test_keypoints/seq0 (68 `x,y` lines per frame)")
    keypoints = sorted(p for p in path.iterdir() if p.suffix == ".txt" and p.is_file())
    if not keypoints:
        raise UserError(f"{path}: no keypoint .txt files; a face model renders a keypoint sequence folder such as "
                        "data/face/test_keypoints/seq0 (one file of 68 `x,y` lines per frame)")
    frames = None
    if path.parent.name.endswith("_keypoints"):
        phase = path.parent.name.removesuffix("_keypoints")
        frames = _frames_of(path.parent.parent / f"{phase}_img" / path.name)
    if frames is None:
        raise UserError(f"{path}: the frames of this keypoint sequence were not found (<root>/<phase>_img/"
                        f"{path.name}); the face input needs each frame (its size for the face crop, its Canny "
                        "background edges)")
    n = probe(frames).n_frames if isinstance(frames, Path) else len(frames)
    if n != len(keypoints):
        raise UserError(f"{frames}: {n} frames for the {len(keypoints)} keypoint files of {path}; they pair by sorted "
                        "name, one per frame")
    return FaceSource(path.name, keypoints, frames)


def iter_faces(source: FaceSource, start: int = 0, count: int | None = None):
    """{"landmarks": float32 [68,2], "frame": uint8 [H,W,3]} per frame from `start` (VideoRenderer.step's keywords)."""
    if source.keypoints is None:
        yield from _detected_faces(source, start, count)
        return
    stop = len(source) if count is None else min(len(source), start + count)
    frames = (islice(iter_frames(source.frames), start, stop) if isinstance(source.frames, Path)
              else (read_image(p) for p in source.frames[start:stop]))
    for file, frame in zip(source.keypoints[start:stop], frames):
        yield {"landmarks": read_keypoints(file), "frame": frame}


def _detected_faces(source: FaceSource, start: int, count: int | None):
    """iter_faces of a video without keypoint files: FaceTracker on each frame. Frames before the face is first
    found wait for it and get its first points; a video without a face is a UserError naming it."""
    from vid2vid.landmarks import FaceTracker, open_backend

    backend = open_backend(source.detector)
    tracker, waiting, total = FaceTracker(backend), [], 0
    smoother = OneEuroFilter(probe(source.frames).fps or DEFAULT_FPS, source.smooth) if source.smooth else None
    stop = None if count is None else start + count
    try:
        for frame in islice(iter_frames(source.frames), start, stop):
            total += 1
            points = tracker.update(frame)
            if smoother is not None and points is not None:
                if tracker.found:
                    smoothed = smoother(points).astype(np.float32)
                else:
                    smoother.reset()  # a gap: the filter restarts at the face's next frame; the gap keeps the last
                points = smoothed.copy()
            if points is None:
                waiting.append(frame)
                continue
            for earlier in waiting:
                yield {"landmarks": np.array(points), "frame": earlier}
            waiting = []
            yield {"landmarks": points, "frame": frame}
    finally:
        backend.close()
    if waiting and len(waiting) == total:
        raise UserError(f"{source.frames}: no face found in its {total} frames by --landmarks {source.detector}; "
                        "a face model needs a visible face (try --landmarks mediapipe, which finds turned faces more "
                        "often)")
    missed = tracker.missing
    if missed:
        log.warning("%s: %d of %d frames had no face; they kept the last landmarks", source.frames, missed, total)
