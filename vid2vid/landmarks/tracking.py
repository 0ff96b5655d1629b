"""One face followed through a video.

FaceTracker (streaming): the first frame with a face picks the largest one; from then on each frame takes the
detected face nearest the previous points, if it is near enough (a face elsewhere is another person or a false
detection); a frame without it keeps the last points and counts as missing.
track_video (offline): the tracker over a whole video, then each gap filled by linear interpolation between the
points on both sides of it (held at the ends): fill_gaps.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from vid2vid.errors import DataError
from vid2vid.video_io import iter_frames

MAX_JUMP = 0.5  # the followed face moves at most this fraction of its size per frame (more: another face)


def face_size(points: np.ndarray) -> float:
    """The longer side of the points' bounding box [K,2] -> pixels."""
    return float((points.max(0) - points.min(0)).max())


def mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance between corresponding points of [K,2] arrays, in pixels."""
    return float(np.linalg.norm(a - b, axis=1).mean())


class NoFaceError(ValueError):
    """No frame of the sequence has a face."""


def pick_face(faces: list[np.ndarray], previous: np.ndarray | None, misses: int = 0) -> np.ndarray | None:
    """The face to follow among this frame's detections [68,2]: the largest when nothing is followed yet, else the
    nearest to `previous` if it lies within MAX_JUMP x its size per frame since it was last seen (misses: frames
    missed in a row, which widen the reach), else None."""
    if not faces:
        return None
    if previous is None:
        return max(faces, key=face_size)
    nearest = min(faces, key=lambda face: mean_distance(face, previous))
    reach = MAX_JUMP * face_size(previous) * (1 + misses)
    return nearest if mean_distance(nearest, previous) <= reach else None


class FaceTracker:
    """Follows one face through frames given one at a time.

        tracker = FaceTracker(open_backend("dlib"))
        points = tracker.update(frame)  # [68,2] float32, or None before the first face
        tracker.found, tracker.missing   # whether this frame had the face; frames without it so far
    """

    def __init__(self, backend):
        self.backend = backend
        self.points: np.ndarray | None = None
        self.found = False
        self.missing = 0
        self.misses_in_a_row = 0

    def update(self, frame: np.ndarray) -> np.ndarray | None:
        """RGB uint8 [H,W,3] -> the followed face's points [68,2] float32 (the last ones on a miss)."""
        face = pick_face(self.backend.detect(frame), self.points, self.misses_in_a_row)
        self.found = face is not None
        if self.found:
            self.points, self.misses_in_a_row = face, 0
        else:
            self.missing += 1
            self.misses_in_a_row += 1
        return None if self.points is None else self.points.copy()


def fill_gaps(points: list[np.ndarray | None], found: list[bool]) -> np.ndarray:
    """Per-frame points (any value where found is False) -> [T,68,2] float32 with each frame without a face
    replaced: linear between the nearest frames with one on both sides, the nearest one's points at the ends.
    At least one frame must have a face (NoFaceError otherwise)."""
    known = np.flatnonzero(found)
    if len(known) == 0:
        raise NoFaceError("no frame has a face")
    track = np.stack([points[i] for i in known]).astype(np.float32)  # [N,68,2]
    frames = np.arange(len(found))
    flat = track.reshape(len(known), -1)  # [N,136]
    filled = np.stack([np.interp(frames, known, flat[:, c]) for c in range(flat.shape[1])], axis=1)  # [T,136]
    return filled.reshape(len(found), *track.shape[1:]).astype(np.float32)


def track_frames(frames: Iterable[np.ndarray], backend) -> tuple[np.ndarray, list[int]]:
    """Frames (RGB uint8 [H,W,3]) -> (points [T,68,2] float32 with gaps filled, indices of frames without the
    face). NoFaceError when no frame has a face."""
    tracker = FaceTracker(backend)
    points, found = [], []
    for frame in frames:
        points.append(tracker.update(frame))
        found.append(tracker.found)
    missing = [i for i, ok in enumerate(found) if not ok]
    return fill_gaps(points, found), missing


def track_video(path: str | os.PathLike, backend, max_frames: int | None = None) -> tuple[np.ndarray, list[int]]:
    """A video file or folder of frames -> (points [T,68,2] float32, indices of frames without a face); frames
    without one get points interpolated between the frames around them. DataError naming the video when no frame
    has a face."""
    frames = iter_frames(path)
    if max_frames is not None:
        frames = (frame for _, frame in zip(range(max_frames), frames))
    try:
        return track_frames(frames, backend)
    except NoFaceError:
        raise DataError(f"{path}: {backend.name} found no face in any frame; use a video with a visible, "
                        "roughly frontal face (or try --landmarks mediapipe)") from None
