"""Landmark consistency: the face analogue of segmentation mIoU. Landmarks are detected again on generated frames and
compared with the landmarks the frames were generated from.

    nme(pred, target)   mean distance of the 68 points (dlib's scheme) / the target's inter-ocular distance, the
                        distance between the outer eye corners (points 36 and 45): 300-W's normalisation
    landmark_consistency(frames, targets, backend) -> {"nme", "found", "frames"}

A frame where the detector finds several faces is scored with the one nearest its target (mean point distance).
Read the score against the real frames' (the detector's own error against the conditioning landmarks): a generated
video cannot score much below it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from vid2vid.landmarks.tracking import mean_distance

OUTER_EYE_CORNERS = (36, 45)  # dlib's 68-point scheme: the image-left eye's outer corner, the image-right eye's


def inter_ocular(points: np.ndarray) -> float:
    """The distance between the outer eye corners of points [68,2], in pixels."""
    a, b = OUTER_EYE_CORNERS
    return float(np.linalg.norm(np.asarray(points[a], np.float64) - points[b]))


def nme(pred: np.ndarray, target: np.ndarray) -> float:
    """Normalised mean error of pred [68,2] against target [68,2]: mean point distance / inter_ocular(target)."""
    return mean_distance(np.asarray(pred, np.float64), np.asarray(target, np.float64)) / inter_ocular(target)


def landmark_consistency(frames: Iterable[np.ndarray], targets: Sequence[np.ndarray | None], backend) -> dict:
    """Frames (RGB uint8 [H,W,3]) against their targets ([68,2] in the frames' pixels, or None where the condition
    has no face; one per frame) -> {"nme": mean NME over the frames with a target where a face was found (None when
    none was), "found": the share of frames with a target where the backend found a face (None when no frame has
    a target), "frames": frames with a target}."""
    errors, counted = [], 0
    for frame, target in zip(frames, targets, strict=True):
        if target is None:
            continue
        counted += 1
        faces = backend.detect(frame)
        if faces:
            errors.append(nme(min(faces, key=lambda face: mean_distance(face, target)), target))
    return {"nme": float(np.mean(errors)) if errors else None,
            "found": len(errors) / counted if counted else None, "frames": counted}
