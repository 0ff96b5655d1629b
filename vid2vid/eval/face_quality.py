"""Quality of generated face videos on a face dataset's held-out sequences (the original face layout:
<phase>_keypoints/<seq>/*.txt + <phase>_img/<seq>): landmark consistency (NME, face found), PSNR, L1 and detail, with
the real frames as the floor row. No segmenter: part labels drawn from the same landmarks would only repeat them.

Geometry: a face model renders the face crop (VideoRenderer.step): the square of the sequence's first landmarks
(face_crop_box), resized to data.load_size, its centre data.crop_size. The real frames are cropped the same way
(FaceView.frame) and the conditioning landmarks mapped into the crop's pixels (FaceView.points); a video must be
rendered from the sequence's first frame (render --start 0) for its crop to be this one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vid2vid.config import Size
from vid2vid.data.face_input import FaceView, face_crop_box
from vid2vid.data.faces import scan_faces
from vid2vid.data.keypoint_files import read_keypoints
from vid2vid.errors import UserError
from vid2vid.eval.detail import DEFINITIONS as DETAIL_DEFINITIONS
from vid2vid.eval.detail import detail_record
from vid2vid.eval.metrics import mean_abs_error, psnr
from vid2vid.eval.quality import DEFINITIONS as QUALITY_DEFINITIONS
from vid2vid.eval.quality import REAL, check_videos, measured_frames, read_video
from vid2vid.eval.segmenter import Log, frames_of
from vid2vid.landmarks import open_backend
from vid2vid.landmarks.consistency import landmark_consistency
from vid2vid.video_io import probe

DEFAULT_SIZE = Size(256, 256)


@dataclass
class _FaceRow:
    """Accumulates one video set's per-sequence records."""

    detail_skip: int = 0
    sequences: list[dict] = field(default_factory=list)

    def add(self, name: str, path: str, frames: np.ndarray, real: np.ndarray, targets: list, backend) -> None:
        """frames, real: uint8 [n,h,w,3]; targets: [68,2] per frame in the frames' pixels."""
        record = {"sequence": name, "path": path, **landmark_consistency(frames, targets, backend),
                  "psnr": None, "l1": None, **detail_record(frames, real, (0, 255), self.detail_skip)}
        if frames is not real:
            video, truth = torch.from_numpy(frames), torch.from_numpy(real)
            record.update(psnr=psnr(video, truth, (0, 255)), l1=mean_abs_error(video, truth, (0, 255)))
        self.sequences.append(record)

    def summary(self) -> dict:
        """nme pooled over every frame with a face found, found over every frame; the rest means over sequences."""
        hits = [r["found"] * r["frames"] for r in self.sequences]
        scored = [(r["nme"], h) for r, h in zip(self.sequences, hits) if r["nme"] is not None]
        means = {k: [r[k] for r in self.sequences if r[k] is not None] for k in ("psnr", "l1", "detail",
                                                                                 "detail_aligned")}
        return {"nme": sum(v * h for v, h in scored) / sum(h for _, h in scored) if scored else None,
                "found": sum(hits) / sum(r["frames"] for r in self.sequences),
                **{k: float(np.mean(v)) if v else None for k, v in means.items()}, "sequences": self.sequences}


def face_sizes(videos: Mapping[str, Sequence[str | os.PathLike]], load: Size | None, crop: Size | None
               ) -> tuple[Size, Size]:
    """(load, crop): crop given, else the first video's frame size, else load, else DEFAULT_SIZE; load given, else
    crop. The crop must fit inside load."""
    first = next((paths[0] for paths in videos.values() if len(paths)), None)
    if crop is None and first is not None:
        info = probe(first)
        crop = Size(info.height, info.width)
    crop = crop or load or DEFAULT_SIZE
    load = load or crop
    if crop.h > load.h or crop.w > load.w:
        raise UserError(f"face crop {crop} does not fit inside the face size {load} (the model's data.load_size); "
                        "pass --face-size HxW with the model's data.load_size")
    return load, crop


def evaluate_face_quality(root: str | os.PathLike, phase: str, videos: Mapping[str, Sequence[str | os.PathLike]], *,
                          landmarks: str = "dlib", load_size: Size | None = None, crop_size: Size | None = None,
                          max_frames: int = 0, detail_skip: int = 0, log: Log | None = None) -> dict:
    """Landmark consistency (vid2vid.landmarks.consistency with the `landmarks` backend), PSNR, L1 and detail of
    generated face videos against the held-out sequences of a face dataset's `phase` split.

    videos: {name: one video file or frame folder per held-out sequence, in sorted sequence order}, each the face
    crop a face model renders (load_size: the model's data.load_size, crop_size: its data.crop_size; defaults in
    face_sizes). max_frames, detail_skip: as evaluate_quality.
    Returns {"task": "face", "dataset", "phase", "sequences", "frames", "landmarks", "load_size", "crop_size",
    "rows": {"real frames": row, name: row, ...}, "definitions"} with row = {"nme", "found", "psnr", "l1",
    "detail", "detail_aligned", "sequences": [{"sequence", "path", "nme", "found", "frames", "psnr", ...}]}; psnr
    and l1 are None for the real frames."""
    log = log or (lambda message: None)
    root = Path(root)
    if max_frames < 0:
        raise UserError(f"max_frames must be >= 0, got {max_frames}")
    held_out = scan_faces(root, phase)
    names = [s.name for s in held_out]
    check_videos(videos, names, root, phase, "face")
    load, crop = face_sizes(videos, load_size, crop_size)
    rows = {name: _FaceRow(detail_skip) for name in (REAL, *videos)}
    frame_counts = []
    backend = open_backend(landmarks)
    try:
        for k, seq in enumerate(held_out):
            n = measured_frames(seq, max_frames, detail_skip)
            frame_counts.append(n)
            points = [read_keypoints(p) for p in seq.labels[:n]]
            frames = frames_of(seq, list(range(n)))
            view = FaceView(face_crop_box(points[0], frames[0].shape[1], frames[0].shape[0]), load, crop)
            real = np.stack([view.frame(f) for f in frames])  # [n,crop.h,crop.w,3]
            targets = [view.points(p) for p in points]
            sets = {REAL: (str(seq.frames if seq.is_video else seq.frames[0].parent), real)}
            for name, paths in videos.items():
                sets[name] = (str(paths[k]), read_video(paths[k], n, crop, max_frames == 0, seq.name))
            for name, (path, video) in sets.items():
                log(f"detecting landmarks ({landmarks}) in {seq.name}: {name}")
                rows[name].add(seq.name, path, video, real, targets, backend)
    finally:
        backend.close()
    return {"task": "face", "dataset": str(root), "phase": phase, "sequences": names, "frames": frame_counts,
            "landmarks": landmarks, "load_size": str(load), "crop_size": str(crop),
            "rows": {name: row.summary() for name, row in rows.items()}, "definitions": DEFINITIONS}


DEFINITIONS = {
    "alignment": "frame t of each video is paired with keypoint file t of its held-out sequence (sorted names); "
    "the real frames are cropped as a face model renders them (the square of the sequence's first landmarks, "
    "resized to load_size, its centre crop_size) and the landmarks mapped into that crop; videos are resized to "
    "crop_size",
    "nme": "landmarks detected again on each frame (the face nearest the target when several); mean point distance "
    "/ the target's outer-eye-corner distance (points 36, 45); mean over every frame where a face was found, all "
    "sequences pooled; the real frames' row is the detector's own error: the floor",
    "found": "share of frames where the detector found a face",
    **{k: QUALITY_DEFINITIONS[k] for k in ("psnr", "l1")},
    **{k: v for k, v in DETAIL_DEFINITIONS.items() if k in ("detail", "detail_aligned")},
}
