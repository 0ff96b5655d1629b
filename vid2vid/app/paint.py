"""Paint mode of `vid2vid app`: a painted label map and a short camera move -> a folder of label-id PNGs (a clip
that vid2vid render takes as it takes any folder of label maps)."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import cv2
import numpy as np

from vid2vid.app.exports import ExportInfo
from vid2vid.errors import UserError
from vid2vid.video_io import write_image

MOVES = ("pan", "zoom", "still")
MAX_SIDE = 1024
MAX_FRAMES = 64


def decode_labels(labels: object, label_nc: int) -> np.ndarray:
    """{"height", "width", "data": base64 of height*width uint8 ids, row by row} -> ids [H,W] uint8."""
    if not isinstance(labels, dict):
        raise UserError("labels: send {height, width, data: base64 of one uint8 label id per pixel, row by row}")
    h, w = labels.get("height"), labels.get("width")
    if not all(isinstance(v, int) and 8 <= v <= MAX_SIDE for v in (h, w)):
        raise UserError(f"labels: height {h} x width {w}; each side 8..{MAX_SIDE} pixels")
    try:
        ids = np.frombuffer(base64.b64decode(str(labels.get("data", "")), validate=True), np.uint8)
    except (binascii.Error, ValueError):
        raise UserError("labels.data: not base64; send one uint8 label id per pixel, base64-encoded") from None
    if ids.size != h * w:
        raise UserError(f"labels.data: {ids.size} ids for {h}x{w} = {h * w} pixels")
    if int(ids.max()) >= label_nc:
        raise UserError(f"labels: id {int(ids.max())}, but the model has label_nc {label_nc} (ids 0..{label_nc - 1})")
    return ids.reshape(h, w)


def camera(move: str, t: float, h: int, w: int) -> np.ndarray:
    """The 2x3 affine map of frame t in [0, 1]: pan (a quarter of the width to the right), zoom (in to 1.5x on the
    centre) or still."""
    if move == "pan":
        return np.float32([[1, 0, -0.25 * w * t], [0, 1, 0]])
    scale = 1 + 0.5 * t if move == "zoom" else 1.0
    return cv2.getRotationMatrix2D((w / 2, h / 2), 0, scale).astype(np.float32)


def paint_clip(labels: object, export: ExportInfo, move: str, frames: object, folder: Path) -> Path:
    """The painted map moved by the camera over `frames` frames, as id PNGs in folder/painted (nearest sampling;
    what the camera brings in from outside the painting repeats its border)."""
    if not isinstance(frames, int) or not 2 <= frames <= MAX_FRAMES:
        raise UserError(f"frames {frames!r}: a whole number in 2..{MAX_FRAMES}")
    ids = decode_labels(labels, export.cfg.data.label_nc)
    h, w = ids.shape
    out = folder / "painted"
    out.mkdir()
    for i in range(frames):
        frame = cv2.warpAffine(ids, camera(move, i / (frames - 1), h, w), (w, h), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_REPLICATE)
        write_image(out / f"{i:05d}.png", frame)
    return out
