"""Clip-consistent geometry: one random zoom, crop and flip drawn per clip, applied to every frame.

Every frame is resized to load_size * zoom, cropped to crop_size, then maybe mirrored. Labels and
instance ids use nearest neighbour; RGB uses area (shrinking) or bilinear (enlarging) resampling;
flow is resampled bilinearly, u scaled by the x factor and v by the y factor, and a mirror negates u. Points (x, y in
pixels, e.g. keypoints) move with the RGB: the resize maps pixel centres onto pixel centres, as cv2.resize does.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vid2vid.config import Size


@dataclass(frozen=True)
class ClipTransform:
    scaled: Size  # size after the resize (load_size * zoom, rounded)
    top: int  # crop offset in the scaled image
    left: int
    crop: Size
    flip: bool


def draw_transform(rng: np.random.Generator, *, load_size: Size, crop_size: Size, max_zoom: float = 1.0,
                   flip: bool = False) -> ClipTransform:
    """One random transform for a clip: zoom in [1, max_zoom], a crop position, a coin flip."""
    zoom = rng.uniform(1.0, max_zoom) if max_zoom > 1.0 else 1.0
    scaled = Size(max(crop_size.h, round(load_size.h * zoom)), max(crop_size.w, round(load_size.w * zoom)))
    top = int(rng.integers(0, scaled.h - crop_size.h + 1))
    left = int(rng.integers(0, scaled.w - crop_size.w + 1))
    return ClipTransform(scaled, top, left, Size(*crop_size), bool(flip and rng.random() < 0.5))


def centre_transform(*, load_size: Size, crop_size: Size) -> ClipTransform:
    """The deterministic transform for evaluation: resize to load_size, centre crop, no flip."""
    return ClipTransform(Size(*load_size), (load_size.h - crop_size.h) // 2, (load_size.w - crop_size.w) // 2,
                         Size(*crop_size), False)


def _resize(image: np.ndarray, size: Size, interpolation: int) -> np.ndarray:
    if image.shape[:2] == tuple(size):
        return image
    return cv2.resize(image, (size.w, size.h), interpolation=interpolation)


def _crop_flip(image: np.ndarray, tf: ClipTransform) -> np.ndarray:
    out = image[tf.top: tf.top + tf.crop.h, tf.left: tf.left + tf.crop.w]
    return np.ascontiguousarray(out[:, ::-1] if tf.flip else out)


def apply_image(image: np.ndarray, tf: ClipTransform) -> np.ndarray:
    """RGB [H,W,3] -> [crop.h, crop.w, 3]."""
    shrinking = tf.scaled.h * tf.scaled.w < image.shape[0] * image.shape[1]
    return _crop_flip(_resize(image, tf.scaled, cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR), tf)


def apply_ids(ids: np.ndarray, tf: ClipTransform) -> np.ndarray:
    """Label or instance ids [H,W] -> [crop.h, crop.w], nearest neighbour (ids never blend)."""
    return _crop_flip(_resize(ids, tf.scaled, cv2.INTER_NEAREST), tf)


def apply_flow(flow: np.ndarray, tf: ClipTransform) -> np.ndarray:
    """Flow [H,W,2] in pixels -> [crop.h, crop.w, 2] in pixels of the transformed frames."""
    h, w = flow.shape[:2]
    out = _resize(flow, tf.scaled, cv2.INTER_LINEAR) * np.array([tf.scaled.w / w, tf.scaled.h / h], np.float32)
    out = _crop_flip(out, tf)
    if tf.flip:
        out[..., 0] *= -1
    return out


def apply_points(points: np.ndarray, size: tuple[int, int], tf: ClipTransform) -> np.ndarray:
    """Points [K,2] (x, y) in pixels of a frame of `size` (H, W) -> float64 [K,2] where they lie in apply_image's
    output: x' = (x + 0.5) * scaled.w / W - 0.5 - left (y alike with scaled.h / H and top; pixel centres map onto
    pixel centres, as cv2.resize's area and bilinear resampling place them), then x' -> crop.w - 1 - x' with a flip.
    Points outside the crop are returned as they fall (negative or past the crop's size)."""
    h, w = size
    out = (np.asarray(points, np.float64)[:, :2] + 0.5) * [tf.scaled.w / w, tf.scaled.h / h] - 0.5 - [tf.left, tf.top]
    if tf.flip:
        out[:, 0] = tf.crop.w - 1 - out[:, 0]
    return out
