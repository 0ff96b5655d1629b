"""Keypoint text files in the original vid2vid face layout: `<phase>_keypoints/<seq>/<frame>.txt`, one point per
line as `x,y` (pixels of the frame, x to the right, y down; the original reads them with np.loadtxt(path,
delimiter=',')). Faces have 68 points (dlib's scheme). Shared by the face data preparation, the face dataset and
the renderer; a malformed file is a DataError naming the file, the line and the fix."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vid2vid.errors import DataError, writing


def read_keypoints(path: str | os.PathLike, n_points: int | None = 68) -> np.ndarray:
    """Points of one frame -> float32 [K,2] (x, y). n_points: the count the file must have (None: any count
    >= 1). Blank lines are skipped; a line that is not two numbers separated by a comma is an error."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise DataError(f"{path}: cannot read the keypoint file ({reason}); write one `x,y` line per point") from None
    points = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        try:
            if len(fields) != 2:
                raise ValueError
            x, y = float(fields[0]), float(fields[1])
        except ValueError:
            raise DataError(f"{path}, line {number}: {line.strip()[:60]!r} is not a point; each line must be "
                            "`x,y` (two numbers, in pixels)") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise DataError(f"{path}, line {number}: {line.strip()[:60]!r} is not a finite point; each line must "
                            "be `x,y` in pixels")
        points.append((x, y))
    if n_points is not None and len(points) != n_points:
        raise DataError(f"{path}: {len(points)} points, expected {n_points} (one `x,y` line per point; faces use "
                        "dlib's 68-point scheme)")
    if not points:
        raise DataError(f"{path}: no points; write one `x,y` line per point")
    return np.asarray(points, dtype=np.float32)


def write_keypoints(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write points [K,2] (x, y pixels) as `x,y` lines (the folder is made). Whole-pixel values are written as
    integers, as the original's landmark files have them; others with 3 decimals."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
        raise ValueError(f"points must be a finite [K,2] array, got shape {points.shape}")
    lines = [",".join(_number(v) for v in point) for point in points]
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
