"""`vid2vid prepare video IN OUT --labels face [--landmarks dlib|mediapipe] [--smooth none|one-euro]`: the original
vid2vid's face layout from one video of a face.

    OUT/<phase>_img/<seq>/00000.png        the frames (at --size when given)
    OUT/<phase>_keypoints/<seq>/00000.txt  dlib's 68 landmarks of that frame, `x,y` lines in its pixels

The split into train/test sequences is the one of `prepare video` (split_sequences: by time, the test phase the
video's last frames). One face is followed through
the whole video (vid2vid.landmarks.FaceTracker: the largest face of the first frame with one, then the nearest);
frames where it is not found get points interpolated between the frames around them (held at the ends), and the
summary says how many there were. Landmarks are detected on the frames as written (after --size). With --smooth
one-euro[:MIN_CUTOFF,BETA] the points are smoothed over time (vid2vid.landmarks.smoothing: the One-Euro filter at the
video's frame rate, restarted after each frame without the face) before the gaps are filled. A video with no face at
all is a DataError naming it, and nothing is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from flow import atomic_dir
from vid2vid.config import Size
from vid2vid.data.keypoint_files import write_keypoints
from vid2vid.data.prepare import frame_places, plan_sequences, resized
from vid2vid.errors import DataError
from vid2vid.landmarks import FaceTracker, NoFaceError, fill_gaps, open_backend
from vid2vid.landmarks.smoothing import DEFAULT_FPS, OneEuro, smooth_points
from vid2vid.video_io import iter_frames, probe, write_image

MANY_MISSING = 0.2  # the share of frames without a face above which the summary warns


def prepare_face_video(input: str | os.PathLike, out: str | os.PathLike, *, landmarks: str = "dlib",
                       size: Size | None = None, seq_len: int = 30, test_fraction: float = 0.2,
                       max_frames: int | None = None, test_seq_len: int | None = None,
                       smooth: OneEuro | None = None) -> str:
    """Write the face layout (<phase>_img, <phase>_keypoints) of one video. Returns a summary."""
    input, out = Path(input), Path(out)
    n, plan = plan_sequences(input, out, seq_len, test_fraction, max_frames, test_seq_len)
    where, counters = frame_places(plan)
    backend = open_backend(landmarks)
    try:
        with atomic_dir(out) as tmp:
            shape, places, points, found = _write_frames(input, n, size, where, FaceTracker(backend), tmp)
            if smooth is not None:
                points = smooth_points(points, found, probe(input).fps or DEFAULT_FPS, smooth)
            try:
                track = fill_gaps(points, found)  # [T,68,2]
            except NoFaceError:
                raise DataError(f"{input}: {landmarks} found no face in the {len(found)} frames it read; use a video "
                                "with a visible, roughly frontal face (or try --landmarks mediapipe)") from None
            for (phase, name, j), face in zip(places, track):
                write_keypoints(tmp / f"{phase}_keypoints" / name / f"{j:05d}.txt", face)
    finally:
        backend.close()
    frames = {p: sum(c for ph, _, c in plan if ph == p) for p in counters}
    no_face = len(found) - sum(found)
    summary = (f"wrote {out}: {counters['train']} train sequences ({frames['train']} frames), {counters['test']} "
               f"test sequences ({frames['test']} frames), {shape[0]}x{shape[1]}, face landmarks by {landmarks}"
               f"{f' smoothed ({smooth})' if smooth else ''}\n"
               f"{no_face} of {len(found)} frames had no face (their points are interpolated between the frames "
               "around them)")
    if no_face >= MANY_MISSING * len(found):
        hint = "; --landmarks mediapipe finds turned faces more often" if landmarks == "dlib" else ""
        summary += (f"\nwarning: {no_face / len(found):.0%} of the frames had no face: across long gaps the "
                    f"interpolated points do not follow the head{hint}")
    return summary


def _write_frames(input: Path, n: int, size: Size | None, where: dict, tracker: FaceTracker, tmp: Path):
    """Decode the first n frames, write those of the plan as <phase>_img PNGs and follow the face on them ->
    (frame shape, their places, points per frame (None before the first face), whether each had the face)."""
    shape, decoded, places, points, found = None, 0, [], [], []
    for i, frame in zip(range(n), iter_frames(input)):
        decoded += 1
        if i not in where:
            continue
        frame = resized(frame, size)
        shape = frame.shape[:2]
        phase, name, j = where[i]
        folder = tmp / f"{phase}_img" / name
        folder.mkdir(parents=True, exist_ok=True)
        write_image(folder / f"{j:05d}.png", frame)
        points.append(tracker.update(frame))
        found.append(tracker.found)
        places.append(where[i])
    if decoded < n:
        raise DataError(f"{input}: decoded {decoded} frames but the container says {n}; the video is truncated or "
                        "damaged; re-encode it")
    return shape, places, points, found

