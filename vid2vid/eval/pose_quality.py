"""Quality of generated pose videos on a pose dataset's held-out sequences (the original pose layout:
<phase>_openpose/<seq>/*.json + <phase>_img/<seq>): keypoint consistency (vid2vid.eval.pose_consistency: body error,
PCK@0.2 per body part, face NME, person found), PSNR, L1 and detail, with the real frames as the floor row. The
detector is the one `vid2vid prepare video --labels pose` writes the keypoints with: MediaPipe Holistic
(vid2vid.data.pose_keypoints.HolisticBackend), in video mode, started afresh for every sequence of every row.

Geometry: a pose model renders what its test phase sees (VideoRenderer.step, vid2vid.data.poses): each frame resized
to data.load_size, its centre data.crop_size kept (transforms.centre_transform), then, with data.pose.central_columns
(the default), only the central 2 * (W // 4 // 32 * 32) columns of the crop's width W. The real frames are framed the
same way (poses.frame_pixels) and the conditioning keypoints mapped into that view (poses.frame_people: through
transforms.apply_points, pixel centres onto pixel centres, less the first kept column; points falling outside the
view are dropped, as points not found). A generated video must be the pose model's render of the sequence at that
model's sizes; its frames are resized to the view's size (the aspect ratio must match).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vid2vid.config import PoseConfig, Size
from vid2vid.data.openpose import read_openpose
from vid2vid.data.pose_input import central_columns
from vid2vid.data.poses import frame_people, frame_pixels, scan_poses
from vid2vid.data.transforms import centre_transform
from vid2vid.errors import UserError
from vid2vid.eval.detail import DEFINITIONS as DETAIL_DEFINITIONS
from vid2vid.eval.detail import detail_record
from vid2vid.eval.metrics import mean_abs_error, psnr
from vid2vid.eval.pose_consistency import PCK_THRESHOLD, PoseTally, pose_consistency
from vid2vid.eval.quality import DEFINITIONS as QUALITY_DEFINITIONS
from vid2vid.eval.quality import REAL, check_videos, measured_frames, read_video
from vid2vid.eval.segmenter import Log, frames_of


def holistic_backend():
    """The detector of `prepare video --labels pose`, one person followed from frame to frame, no mask."""
    from vid2vid.data.pose_keypoints import HolisticBackend

    return HolisticBackend(video=True, mask=False)


@dataclass
class _PoseRow:
    """Accumulates one video set's per-sequence records and the pooled tally."""

    detail_skip: int = 0
    tally: PoseTally = field(default_factory=PoseTally)
    sequences: list[dict] = field(default_factory=list)

    def add(self, name: str, path: str, frames: np.ndarray, real: np.ndarray, targets: list, backend) -> None:
        """frames, real: uint8 [n,h,w,3]; targets: the people of each frame in the frames' pixels."""
        tally = pose_consistency(frames, targets, backend)
        self.tally.merge(tally)
        record = {"sequence": name, "path": path, **tally.summary(), "psnr": None, "l1": None,
                  **detail_record(frames, real, (0, 255), self.detail_skip)}
        if frames is not real:
            video, truth = torch.from_numpy(frames), torch.from_numpy(real)
            record.update(psnr=psnr(video, truth, (0, 255)), l1=mean_abs_error(video, truth, (0, 255)))
        self.sequences.append(record)

    def summary(self) -> dict:
        """The keypoint scores pooled over every frame of every sequence (PoseTally.summary); psnr, l1 and detail
        means over sequences."""
        means = {k: [r[k] for r in self.sequences if r[k] is not None] for k in ("psnr", "l1", "detail",
                                                                                 "detail_aligned")}
        return {**self.tally.summary(), **{k: float(np.mean(v)) if v else None for k, v in means.items()},
                "sequences": self.sequences}


def pose_view(load: Size, crop: Size, central: bool) -> Size:
    """The size of a pose model's frames: crop's height by the kept width (checked: crop inside load, and with
    central columns a width of at least 128)."""
    if crop.h > load.h or crop.w > load.w:
        raise UserError(f"pose crop {crop} does not fit inside the pose size {load} (the model's data.load_size); "
                        "pass --pose-crop HxW no larger than --pose-size")
    if not central:
        return Size(*crop)
    cols = central_columns(crop.w)
    if cols.stop <= cols.start:
        raise UserError(f"pose crop {crop}: a width below 128 keeps no central column (2 * (W // 4 // 32 * 32)); "
                        "pass the model's data.crop_size, or --all-columns when it keeps every column")
    return Size(crop.h, cols.stop - cols.start)


def evaluate_pose_quality(root: str | os.PathLike, phase: str, videos: Mapping[str, Sequence[str | os.PathLike]], *,
                          load_size: Size | None = None, crop_size: Size | None = None, central: bool = True,
                          max_frames: int = 0, detail_skip: int = 0, log: Log | None = None,
                          backend: Callable[[], object] = holistic_backend) -> dict:
    """Keypoint consistency (vid2vid.eval.pose_consistency), PSNR, L1 and detail of generated pose videos against
    the held-out sequences of a pose dataset's `phase` split (<phase>_openpose + <phase>_img; DensePose and masks are
    not read).

    videos: {name: one video file or frame folder per held-out sequence, in sorted sequence order}, each a pose
    model's render (load_size, crop_size, central: its data.load_size, data.crop_size, data.pose.central_columns;
    load_size defaults to the first held-out frame's size, crop_size to load_size). max_frames, detail_skip: as
    evaluate_quality. backend: makes a fresh detector (.detect(frame).people, .close()) for each sequence of each row.
    Returns {"task": "pose", "dataset", "phase", "sequences", "frames", "detector", "load_size", "crop_size",
    "central_columns", "view_size", "rows": {"real frames": row, name: row, ...}, "definitions"} with row =
    PoseTally.summary() + {"psnr", "l1", "detail", "detail_aligned", "sequences": [per-sequence records]}; psnr and
    l1 are None for the real frames."""
    log = log or (lambda message: None)
    root = Path(root)
    if max_frames < 0:
        raise UserError(f"max_frames must be >= 0, got {max_frames}")
    held_out = scan_poses(root, phase, PoseConfig(openpose_only=True, mask=False))
    names = [s.name for s in held_out]
    check_videos(videos, names, root, phase, "pose")
    rows = {name: _PoseRow(detail_skip) for name in (REAL, *videos)}
    frame_counts, load, crop, view = [], load_size, crop_size, None
    for k, seq in enumerate(held_out):
        n = measured_frames(seq, max_frames, detail_skip)
        frame_counts.append(n)
        frames = frames_of(seq, list(range(n)))
        if view is None:
            load = load or Size(*frames[0].shape[:2])
            crop = crop or load
            view = pose_view(load, crop, central)
        tf = centre_transform(load_size=load, crop_size=crop)  # the test phase's
        real = np.stack([frame_pixels(f, tf, central) for f in frames])  # [n,view.h,view.w,3]
        targets = [frame_people(read_openpose(p), *f.shape[:2], tf, central) for p, f in zip(seq.labels[:n], frames)]
        sets = {REAL: (str(seq.frames if seq.is_video else seq.frames[0].parent), real)}
        for name, paths in videos.items():
            sets[name] = (str(paths[k]), read_video(paths[k], n, view, max_frames == 0, seq.name))
        for name, (path, video) in sets.items():
            log(f"detecting body keypoints in {seq.name}: {name}")
            detector = backend()
            try:
                rows[name].add(seq.name, path, video, real, targets, detector)
            finally:
                detector.close()
    return {"task": "pose", "dataset": str(root), "phase": phase, "sequences": names, "frames": frame_counts,
            "detector": "mediapipe holistic", "load_size": str(load), "crop_size": str(crop),
            "central_columns": central, "view_size": str(view),
            "rows": {name: row.summary() for name, row in rows.items()}, "definitions": DEFINITIONS}


DEFINITIONS = {
    "alignment": "frame t of each video is paired with OpenPose file t of its held-out sequence (sorted names); the "
    "real frames are framed as a pose model renders them (resized to load_size, the centre crop_size, then with "
    "central_columns the central 2 * (W // 4 // 32 * 32) columns) and the keypoints mapped into that view (points "
    "outside it dropped); videos are resized to the view's size",
    "torso": "the conditioning person's torso size: |neck - mid-hip| (BODY_25 1, 8); else the mean of the same-side "
    "|shoulder - hip| lengths present (2-9, 5-12); else the shoulder width |2 - 5|; else none (body not scored); "
    "'torso' counts the found frames by reference",
    "error": "body points detected again on each frame (MediaPipe Holistic, as prepare --labels pose): mean distance "
    "over the BODY_25 points present in both / the torso size, per frame, then the mean over the frames scored, all "
    "sequences pooled; the real frames' row is the detector's own error: the floor",
    "pck": f"PCK@{PCK_THRESHOLD}: share of the conditioning's body points (present, in frames where a person was "
    f"found and a torso size exists) that the detection has within {PCK_THRESHOLD} x the torso size (a point it "
    "lacks is wrong); groups: head 0,15-18; torso 1,2,5,8,9,12; arms 3,4,6,7; legs 10,11,13,14; feet 19-24; "
    "overall all 25",
    "face_nme": "NME (mean distance / the conditioning's outer-eye-corner distance, points 36, 45) of OpenPose's "
    "68 dlib face points, over the frames where both have all 68 present",
    "face_found": "share of the frames whose conditioning has a face where the detection has one too",
    "found": "share of the frames with a conditioning person where the detector found a person; frames whose "
    "conditioning has none (in the view) are not scored ('skipped')",
    **{k: QUALITY_DEFINITIONS[k] for k in ("psnr", "l1")},
    **{k: v for k, v in DETAIL_DEFINITIONS.items() if k in ("detail", "detail_aligned")},
}
