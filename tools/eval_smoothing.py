"""Measure what One-Euro smoothing (vid2vid.landmarks.smoothing) does to face landmarks: jitter and lag on a real
video, error against the truth on a synthetic track with detector-like noise.

    python tools/eval_smoothing.py talk.mp4 [--landmarks mediapipe] [--max-frames 240] [--noise 1.0]

Video: one face followed by the FaceTracker (frames without it are gaps the filter restarts after). jitter: mean
|x[t+1] - 2 x[t] + x[t-1]| over the 68 points of every three consecutive frames with the face (px per frame^2: the
detector's frame-to-frame noise plus the head's and the camera's own acceleration); shape jitter: the same after
each frame's points are fitted onto the first frame's by a similarity (rotation, scale, shift: the rigid motion
removed, what is left is the detector's noise and the face's expression); lag: mean |smoothed - raw| (px) over the
frames with the face. Synthetic: the exact landmarks of vid2vid.data.synthetic_faces' talking face (the video's size and
frame rate, 240 frames) plus Gaussian noise of --noise px per coordinate; error: mean |track - truth| (px).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vid2vid.config import Size  # noqa: E402
from vid2vid.data.synthetic_faces import face_motion, place, template_face  # noqa: E402
from vid2vid.errors import run_cli  # noqa: E402
from vid2vid.landmarks import BACKENDS, FaceTracker, open_backend  # noqa: E402
from vid2vid.landmarks.smoothing import OneEuro, smooth_track  # noqa: E402
from vid2vid.video_io import iter_frames, probe  # noqa: E402

SETTINGS = [OneEuro(c, b) for c in (0.5, 1.0, 2.0, 4.0) for b in (0.0, 0.01, 0.05, 0.2, 1.0)]


def detected_track(path: str, backend, max_frames: int | None) -> np.ndarray:
    """[T,68,2] float32: the followed face's points, NaN in frames without it."""
    tracker, track = FaceTracker(backend), []
    for _, frame in zip(range(max_frames or sys.maxsize), iter_frames(path)):
        points = tracker.update(frame)
        track.append(points if tracker.found else np.full((68, 2), np.nan, np.float32))
    return np.stack(track)


def jitter(track: np.ndarray) -> float:
    """Mean second difference |x[t+1] - 2 x[t] + x[t-1]| (px) over the points of frames with three in a row."""
    second = np.linalg.norm(track[2:] - 2 * track[1:-1] + track[:-2], axis=-1)  # [T-2,68], NaN across gaps
    return float(np.nanmean(second))


def aligned(track: np.ndarray) -> np.ndarray:
    """Each frame's points [68,2] moved by the similarity (rotation, scale, shift) that best fits them onto the first
    frame's with a face (least squares): the shape without the head's and the camera's motion, NaN frames kept."""
    reference = track[np.flatnonzero(~np.isnan(track[:, 0, 0]))[0]].astype(np.float64)
    ref = reference - reference.mean(0)
    out = np.full(track.shape, np.nan)
    for t, points in enumerate(track.astype(np.float64)):
        if np.isnan(points).any():
            continue
        centred = points - points.mean(0)
        u, sigma, vt = np.linalg.svd(centred.T @ ref)  # Umeyama: rotation u @ vt, scale sum(sigma) / |centred|^2
        out[t] = centred @ (u @ vt) * (sigma.sum() / np.square(centred).sum()) + reference.mean(0)
    return out


def mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.nanmean(np.linalg.norm(a - b, axis=-1)))


def synthetic_track(size: Size, frames: int = 240) -> np.ndarray:
    """The exact landmarks [T,68,2] of a synthetic talking face (slow sway, roll and mouth motion)."""
    params = np.array([1.0, 1.0, 0.05, 2.5])
    return np.stack([place(template_face(m), cx, cy, s, r)
                     for cx, cy, s, r, m in (face_motion(t, frames, size, params) for t in range(frames))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", help="a video (or folder of frames) of a face")
    parser.add_argument("--landmarks", default="mediapipe", choices=BACKENDS)
    parser.add_argument("--max-frames", type=int, default=None, help="frames of the video (default: all)")
    parser.add_argument("--noise", type=float, default=1.0, help="synthetic detector noise, px per coordinate")
    args = parser.parse_args()
    info = probe(args.video)
    fps = info.fps or 30.0
    backend = open_backend(args.landmarks)
    try:
        raw = detected_track(args.video, backend, args.max_frames)
    finally:
        backend.close()
    truth = synthetic_track(Size(info.height, info.width))
    noisy = truth + np.random.default_rng(0).normal(0, args.noise, truth.shape)
    found = int((~np.isnan(raw[:, 0, 0])).sum())
    print(f"{Path(args.video).name}: {len(raw)} frames {info.height}x{info.width} at {fps:.2f} fps, face in {found} "
          f"({args.landmarks}); synthetic: {len(truth)} frames, noise {args.noise:g} px\n")
    print("| smoothing | video jitter px | video shape jitter px | video lag px | synthetic jitter px | "
          "synthetic error px |")
    print("|---|---|---|---|---|---|")
    print(f"| none | {jitter(raw):.3f} | {jitter(aligned(raw)):.3f} | 0 | {jitter(noisy):.3f} | "
          f"{mean_distance(noisy, truth):.3f} |")
    for params in SETTINGS:
        video, synthetic = smooth_track(raw, fps, params), smooth_track(noisy, fps, params)
        print(f"| {params} | {jitter(video):.3f} | {jitter(aligned(video)):.3f} | {mean_distance(video, raw):.3f} | "
              f"{jitter(synthetic):.3f} | {mean_distance(synthetic, truth):.3f} |", flush=True)
    print(f"\n(the truth's own jitter: {jitter(truth):.3f} px)")


if __name__ == "__main__":
    sys.exit(run_cli("eval_smoothing", main))
