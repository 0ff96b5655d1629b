"""Everybody Dance Now's global pose normalisation (Chan et al., 2019): the source person's keypoints mapped by a scale
and a vertical position so that they stand where, and as tall as, the target person stands in the training frames.

Each person is measured over a whole video (frames without the measure left out, NaN):

    ankle y   a_t = the lowest found ankle (BODY_25 11, 14; the heels 24, 21 when no ankle is found): max y
    height    h_t = a_t - (the neck's y, BODY_25 1)                 (pixels; a frame needs both)

    far  = min_t a_t   (the position farthest from the camera: highest in the picture)
    near = max_t a_t   (the closest)
    H_far  = max h_t over the frames with a_t within BAND of the ankle range of far   (standing upright: the tallest)
    H_near = max h_t over the frames with a_t within BAND of the range of near

A source frame with ankle point (x_a, a) then maps with r = (a - far_s) / (near_s - far_s) (0 when the source never
moves in depth, near_s = far_s):

    s  = H_far_t / H_far_s + r * (H_near_t / H_near_s - H_far_t / H_far_s)    the scale at that depth
    a' = far_t + r * (near_t - far_t)                                        its ankle y in the target's range
    (x, y) -> (x_a + s * (x - x_a),  a' + s * (y - a))                       every keypoint: body, hands, face

so the source's ankle range maps onto the target's, and its height at the far and the near position onto the
target's there (the horizontal position is kept: the scale is about the ankle point). The same map warps the frame's
pictures (the body mask, DensePose's IUV): `affine`. Both people are measured in the same pixels (the target's points
scaled to the source frame's height first: `Stance.scaled`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vid2vid.data.openpose import Person, move_people

ANKLES, HEELS, NECK = (11, 14), (24, 21), 1  # BODY_25: right, left ankle; right, left heel; neck
BAND = 0.1  # the share of the ankle range about far / near whose frames give the height there
MIN_CONF = 0.0  # a body point counts when its confidence is above this (missing points are zeros)


@dataclass(frozen=True)
class Stance:
    """One person's far and near ankle y and their heights there (pixels)."""

    far: float
    near: float
    far_height: float
    near_height: float

    def scaled(self, factor: float) -> Stance:
        """The same person in a frame `factor` times as high (its points' y times factor)."""
        return Stance(self.far * factor, self.near * factor, self.far_height * factor, self.near_height * factor)


def ankle_point(body: np.ndarray) -> np.ndarray:
    """A BODY_25 body [25,3] -> (x, y) of its lowest found ankle (the heels when no ankle is found), NaN if none."""
    for group in (ANKLES, HEELS):
        found = [i for i in group if body[i, 2] > MIN_CONF]
        if found:
            lowest = max(found, key=lambda i: body[i, 1])
            return body[lowest, :2].astype(np.float64)
    return np.full(2, np.nan)


def measure(body: np.ndarray) -> tuple[float, float, float]:
    """A BODY_25 body [25,3] -> (ankle x, ankle y, height = ankle y - neck y), NaN where not found."""
    x, y = ankle_point(body)
    height = y - body[NECK, 1] if body[NECK, 2] > MIN_CONF else np.nan
    return float(x), float(y), float(height)


def stance(ankle_y: np.ndarray, height: np.ndarray, band: float = BAND) -> Stance | None:
    """Per-frame ankle y [T] and heights [T] (NaN where not found) -> the person's Stance, or None when no frame
    has both."""
    ankle_y, height = np.asarray(ankle_y, np.float64), np.asarray(height, np.float64)
    both = np.isfinite(ankle_y) & np.isfinite(height)
    if not both.any():
        return None
    a, h = ankle_y[both], height[both]
    far, near = float(a.min()), float(a.max())
    tolerance = band * (near - far)
    return Stance(far, near, float(h[a <= far + tolerance].max()), float(h[a >= near - tolerance].max()))


def frame_map(ankle: np.ndarray, source: Stance, target: Stance) -> tuple[float, float]:
    """A source frame's ankle point (x_a, a) -> (s, a'): its scale and its ankle's y in the target (module doc)."""
    a = float(ankle[1])
    r = (a - source.far) / (source.near - source.far) if source.near > source.far else 0.0
    far_ratio, near_ratio = target.far_height / source.far_height, target.near_height / source.near_height
    return far_ratio + r * (near_ratio - far_ratio), target.far + r * (target.near - target.far)


def affine(ankle: np.ndarray, source: Stance, target: Stance) -> np.ndarray:
    """A source frame's ankle point -> the 2x3 matrix of its map, x' = M @ (x, y, 1)."""
    s, a_target = frame_map(ankle, source, target)
    x_a, a = float(ankle[0]), float(ankle[1])
    return np.array([[s, 0.0, x_a * (1 - s)], [0.0, s, a_target - s * a]])


def normalize_points(points: np.ndarray, ankle: np.ndarray, source: Stance, target: Stance) -> np.ndarray:
    """Keypoints [K,2] (x, y) of one source frame whose ankle point is `ankle` -> mapped [K,2] (module doc)."""
    m = affine(ankle, source, target)
    points = np.asarray(points, np.float64)
    return points @ m[:, :2].T + m[:, 2]


def main_person(people: list[Person]) -> Person | None:
    """The person a frame is measured by: the tallest measured (neck to ankle), else the first; None: no one."""
    if not people:
        return None
    heights = [measure(p.pose)[2] for p in people]
    measured = [i for i, h in enumerate(heights) if np.isfinite(h)]
    return people[max(measured, key=lambda i: heights[i])] if measured else people[0]


def mapped_people(people: list[Person], m: np.ndarray, size: tuple[int, int]) -> list[Person]:
    """Every found point (confidence > 0) of every part of the people through the 2x3 map m; a point that leaves the
    frame of `size` (H, W) becomes zeros, as a point not found (HolisticBackend writes those outside the frame so)."""
    return move_people(people, lambda xy: xy @ m[:, :2].T + m[:, 2], size)


def warped(picture: np.ndarray, m: np.ndarray) -> np.ndarray:
    """A per-pixel picture of the frame (the body mask [H,W], DensePose's IUV [H,W,3]) through the 2x3 map m, nearest
    neighbour (ids never blend), zeros where nothing maps."""
    h, w = picture.shape[:2]
    return cv2.warpAffine(picture, m.astype(np.float64), (w, h), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
