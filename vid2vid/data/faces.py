"""The original vid2vid's face layout as a clip dataset (data.condition: face), unchanged from the original:

    <root>/<phase>_keypoints/<seq>/<frame>.txt   68 lines `x,y` (dlib's points, frame pixels)
    <root>/<phase>_img/<seq>/<frame>.png|jpg     the RGB frames (or <root>/<phase>_img/<seq>.<ext>, a video file)

Files pair by sorted name. A clip's face crop is the square of its first frame's landmarks (vid2vid.data.face_input:
face_crop_box); every frame of the clip is drawn and cropped with it at data.load_size, then the clip's one random
crop / flip applies (a flip also swaps the left and right parts' distance maps). Items:

    cond   [T,C,H,W] float in [0,1]   the generator's input (15 channels, or 1 with data.face.no_dist_map)
    labels [T,H,W] int64              the part labels 0..6 (the instance map of the feature encoder)
    frames [T,3,H,W] in [-1,1]        the face-cropped real frames
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from vid2vid.data import transforms
from vid2vid.data.face_input import FaceOptions, crop_frame, draw_face, face_crop_box, mirror_channels
from vid2vid.data.keypoint_files import read_keypoints
from vid2vid.data.sequences import (
    ClipDataset,
    SequenceFiles,
    _count,
    _same_size,
    layout_sequences,
)
from vid2vid.video_io import probe


def scan_faces(root: str | Path, phase: str) -> list[SequenceFiles]:
    """The sequences of one phase of the face layout (names and counts checked, not contents); `labels` holds each
    sequence's keypoint files."""
    root = Path(root)
    folder_k, folder_i, keypoints, frames = layout_sequences(root, phase, "face", "*.txt", "keypoint .txt files")
    out = []
    for name, files in keypoints.items():
        source = frames[name]
        n = probe(source).n_frames if isinstance(source, Path) else len(source)
        _count(name, n, len(files), source if isinstance(source, Path) else folder_i / name, folder_k / name)
        out.append(SequenceFiles(name, files, source, None, None, None))
    return out


class FaceClipDataset(ClipDataset):
    """Clips of the face layout: the face input drawn per frame at data.load_size (see the module's docstring)."""

    def __init__(self, sequences: list[SequenceFiles], *, face, **settings):
        super().__init__(sequences, **settings)
        self.options = FaceOptions(face.no_dist_map, face.no_canny_edge)

    def load(self, seq: SequenceFiles, idx: list[int], tf: transforms.ClipTransform, anchor: int | None = None
             ) -> dict:
        """Frames idx of a sequence -> {cond, labels, frames}; the crop square comes from frame `anchor` (default:
        the first of idx)."""
        anchor = idx[0] if anchor is None else anchor
        order = list(dict.fromkeys([anchor, *idx]))  # each frame once
        points = {i: read_keypoints(seq.labels[i]) for i in order}
        rgb = dict(zip(order, self._rgb(seq, order)))
        h, w = rgb[anchor].shape[:2]
        for i in idx:
            _same_size(rgb[i], (h, w), seq.frames if seq.is_video else seq.frames[i], seq.labels[anchor])
        box = face_crop_box(points[anchor], w, h)
        conds, parts, frames = [], [], []
        for i in idx:
            face = draw_face(points[i], rgb[i], box, self.load_size, self.options)
            cond = transforms.apply_image(rearrange(face.cond, "c h w -> h w c"), tf)  # cv2 drops a single channel
            cond = rearrange(cond.reshape(*cond.shape[:2], -1), "h w c -> c h w")
            if tf.flip:  # apply_image mirrored the pixels; the left and right parts' channels trade places too
                cond = cond[mirror_channels(len(cond))]
            conds.append(cond)
            parts.append(transforms.apply_ids(face.parts, tf))
            frames.append(transforms.apply_image(crop_frame(rgb[i], box, self.load_size), tf))
        return {
            "cond": torch.from_numpy(np.ascontiguousarray(np.stack(conds))),  # [T,C,H,W] in [0,1]
            "labels": torch.from_numpy(np.stack(parts).astype(np.int64)),  # [T,H,W] part labels
            "frames": rearrange(torch.from_numpy(np.stack(frames)), "t h w c -> t c h w").float() / 127.5 - 1.0,
        }
