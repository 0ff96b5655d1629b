"""Measure the face landmark backends (vid2vid.landmarks) on real frames: per-frame detection time, detection rate,
and how far MediaPipe's mesh mapped to the 68 points (mediapipe68.MESH_TO_68) lies from dlib's points.

    python tools/eval_landmarks.py                         # the animated astronaut only
    python tools/eval_landmarks.py talk.mp4 --max-frames 240

Sources: `astronaut` (scikit-image's public-domain photo, 512x512, 40 frames moved by rotations of up to 10 degrees,
scales of +-15 % and shifts of up to 20 px) and each video given. NME: the mean point distance divided by the
inter-ocular distance (between dlib's two eye centres, points 36-41 and 42-47), over the frames where both backends
found a face, each dlib face paired with the nearest mapped mesh (a pair further apart than half the face's size is
two different faces and is left out). The jaw (0-16) is reported apart: the mesh's jaw vertices sit on the 3D face,
dlib's follow the silhouette.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vid2vid.errors import run_cli  # noqa: E402
from vid2vid.landmarks import open_backend  # noqa: E402
from vid2vid.landmarks.tracking import face_size, mean_distance  # noqa: E402

PARTS = {"jaw": slice(0, 17), "brows": slice(17, 27), "nose": slice(27, 36), "eyes": slice(36, 48),
         "mouth": slice(48, 68)}


def astronaut_frames(n: int = 40):
    """The astronaut photo [512,512,3] moved by smooth rotations, scales and shifts about the face."""
    import cv2
    import skimage.data

    image = skimage.data.astronaut()
    for t in range(n):
        m = cv2.getRotationMatrix2D((220, 125), 10 * np.sin(t / 6), 1 + 0.15 * np.sin(t / 9))
        m[:, 2] += (20 * np.sin(t / 5), 10 * np.cos(t / 7))
        yield cv2.warpAffine(image, m, (512, 512), borderMode=cv2.BORDER_REFLECT)


def video_frames(path: str, max_frames: int | None):
    from vid2vid.video_io import iter_frames

    for i, frame in enumerate(iter_frames(path)):
        if max_frames is not None and i >= max_frames:
            return
        yield frame


def detect_all(frames: list[np.ndarray], backend) -> tuple[list[list[np.ndarray]], float]:
    """Every frame's faces and the mean seconds per frame."""
    faces, start = [], time.perf_counter()
    for frame in frames:
        faces.append(backend.detect(frame))
    return faces, (time.perf_counter() - start) / max(1, len(frames))


def inter_ocular(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))


def paired_errors(dlib_faces: list[list[np.ndarray]], mesh_faces: list[list[np.ndarray]]) -> np.ndarray:
    """Per-point distances / inter-ocular distance [N,68] of each dlib face and its nearest mapped mesh."""
    rows = []
    for dlib_frame, mesh_frame in zip(dlib_faces, mesh_faces):
        for face in dlib_frame:
            if not mesh_frame:
                continue
            mesh = min(mesh_frame, key=lambda m: mean_distance(m, face))
            if mean_distance(mesh, face) <= 0.5 * face_size(face):
                rows.append(np.linalg.norm(mesh - face, axis=1) / inter_ocular(face))
    return np.array(rows).reshape(-1, 68)


def evaluate(name: str, frames: list[np.ndarray], backends: dict) -> list[str]:
    """Markdown table rows for one source."""
    h, w = frames[0].shape[:2]
    found, rows = {}, []
    for key, backend in backends.items():
        faces, seconds = detect_all(frames, backend)
        found[key] = faces
        hits = sum(bool(f) for f in faces)
        rows.append(f"| {name} ({len(frames)} frames, {h}x{w}) | {key} | {1000 * seconds:.0f} | "
                    f"{hits} / {len(frames)} | |")
    errors = paired_errors(found["dlib"], found["mediapipe"])
    if len(errors):
        per_face = errors.mean(1)
        parts = ", ".join(f"{part} {errors[:, s].mean():.3f}" for part, s in PARTS.items())
        rows.append(f"| {name} | mediapipe -> 68 vs dlib | | {len(errors)} faces paired | "
                    f"NME mean {errors.mean():.3f}, median {np.median(per_face):.3f}, without the jaw "
                    f"{errors[:, 17:].mean():.3f} ({parts}) |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", help="videos (or folders of frames) of faces to measure on too")
    parser.add_argument("--max-frames", type=int, default=None, help="frames of each video (default: all)")
    parser.add_argument("--no-astronaut", action="store_true", help="leave out the animated astronaut")
    args = parser.parse_args()
    backends = {name: open_backend(name) for name in ("dlib", "mediapipe")}
    sources = [] if args.no_astronaut else [("astronaut", list(astronaut_frames()))]
    sources += [(Path(v).name, list(video_frames(v, args.max_frames))) for v in args.videos]
    print("| source | backend | ms / frame | frames with a face | NME (inter-ocular) |")
    print("|---|---|---|---|---|")
    for name, frames in sources:
        for row in evaluate(name, frames, backends):
            print(row, flush=True)


if __name__ == "__main__":
    sys.exit(run_cli("eval_landmarks", main))
