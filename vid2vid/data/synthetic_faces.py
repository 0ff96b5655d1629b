"""Procedural talking faces with exact landmarks, in the original vid2vid face layout (a small test / demo dataset).

A 68-point template face (dlib's scheme, drawn from ellipses and arcs) sways, rolls, scales and opens its mouth over
time; each frame is a simple shaded face (skin, brows, eyes, nose, lips) over a textured background, and its
landmarks are the template's points under the same motion, exactly.

    <out>/<phase>_keypoints/seq_XXXX/00000.txt   68 lines `x,y`
    <out>/<phase>_img/seq_XXXX/00000.png         the RGB frame
"""

from __future__ import annotations

import cv2
import numpy as np

from vid2vid.config import Size
from vid2vid.data.face_input import with_upper_face
from vid2vid.data.keypoint_files import write_keypoints
from vid2vid.video_io import write_image

SUBPIXEL = 4  # cv2 drawing with fractional coordinates: points scaled by 2^SUBPIXEL


def _ellipse_points(cx: float, cy: float, rx: float, ry: float, degrees: list[float]) -> np.ndarray:
    """Points at the given angles (counter-clockwise from +x, y down) -> [K,2]."""
    a = np.radians(degrees)
    return np.stack([cx + rx * np.cos(a), cy - ry * np.sin(a)], 1)


def template_face(mouth_open: float = 0.0) -> np.ndarray:
    """The 68 landmarks of a frontal face in face units (jaw from x = -1 to 1, y down, eyes near y = -0.1)
    -> float64 [68,2]. mouth_open in [0, 0.25] lowers the lower lips."""
    angles = np.linspace(np.pi, 0, 17)
    jaw = np.stack([np.cos(angles), 1.2 * np.sin(angles)], 1)
    s = np.linspace(0, 1, 5)
    brow_right = np.stack([-0.8 + 0.65 * s, -0.35 - 0.1 * np.sin(np.pi * s)], 1)
    brow_left = brow_right[::-1] * [-1, 1]
    bridge = np.stack([np.zeros(4), np.linspace(-0.15, 0.35, 4)], 1)
    nostril_x = np.linspace(-0.2, 0.2, 5)
    nostrils = np.stack([nostril_x, 0.42 + 0.06 * (1 - (nostril_x / 0.2) ** 2)], 1)
    eye_angles = [180, 120, 60, 0, -60, -120]
    eye_right = _ellipse_points(-0.42, -0.1, 0.18, 0.07, eye_angles)
    eye_left = _ellipse_points(0.42, -0.1, 0.18, 0.07, eye_angles)
    upper = _ellipse_points(0, 0.75, 0.4, 0.12, [180, 150, 120, 90, 60, 30, 0])
    lower = _ellipse_points(0, 0.75, 0.4, 0.12 + mouth_open, [-30, -60, -90, -120, -150])
    inner_upper = _ellipse_points(0, 0.75, 0.3, 0.03, [180, 135, 90, 45, 0])
    inner_lower = _ellipse_points(0, 0.75, 0.3, 0.02 + mouth_open, [-45, -90, -135])
    return np.vstack([jaw, brow_right, brow_left, bridge, nostrils, eye_right, eye_left, upper, lower,
                      inner_upper, inner_lower])


def face_motion(t: int, frames: int, size: Size, rng_params: np.ndarray) -> tuple[float, float, float, float, float]:
    """(centre x, centre y, pixels per face unit, roll in radians, mouth opening) of frame t."""
    phase, speed, sway, talk = rng_params
    u = t / max(frames - 1, 1)
    cx = size.w * (0.5 + sway * np.sin(2 * np.pi * speed * u + phase))
    cy = size.h * (0.45 + 0.03 * np.cos(2 * np.pi * speed * u + phase))
    scale = min(size) * 0.18 * (1 + 0.05 * np.sin(2 * np.pi * u + phase))
    roll = 0.12 * np.sin(2 * np.pi * speed * u + 2 * phase)
    mouth = 0.1 * (1 + np.sin(2 * np.pi * talk * u + phase))
    return cx, cy, scale, roll, mouth


def place(points: np.ndarray, cx: float, cy: float, scale: float, roll: float) -> np.ndarray:
    """Face units -> frame pixels: rotate by roll, scale, move to (cx, cy)."""
    c, s = np.cos(roll), np.sin(roll)
    rotated = points @ np.array([[c, s], [-s, c]])
    return rotated * scale + [cx, cy]


def background(rng: np.random.Generator, size: Size) -> np.ndarray:
    """A textured background uint8 [H,W,3]: a smooth colour field with a few rectangles."""
    coarse = rng.uniform(40, 200, (4, 4, 3)).astype(np.float32)
    image = cv2.resize(coarse, (size.w, size.h), interpolation=cv2.INTER_CUBIC)
    for _ in range(5):
        x0, y0 = rng.integers(0, size.w), rng.integers(0, size.h)
        w, h = rng.integers(size.w // 10, size.w // 3), rng.integers(size.h // 10, size.h // 3)
        cv2.rectangle(image, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)), rng.uniform(0, 255, 3).tolist(), -1)
    return np.clip(image, 0, 255).astype(np.uint8)


def _poly(points: np.ndarray) -> np.ndarray:
    return np.round(points * 2**SUBPIXEL).astype(np.int32)


def draw_frame(points: np.ndarray, back: np.ndarray, skin: tuple) -> np.ndarray:
    """A shaded face with landmarks points [68,2] over the background -> uint8 [H,W,3] RGB."""
    image = back.copy()
    full = with_upper_face(points)
    contour = full[list(range(17)) + list(range(82, 67, -1))]
    aa = {"lineType": cv2.LINE_AA, "shift": SUBPIXEL}
    cv2.fillPoly(image, [_poly(contour)], skin, **aa)
    shade = tuple(int(c * 0.8) for c in skin)
    cv2.fillPoly(image, [_poly(full[[31, 32, 33, 34, 35, 30]])], shade, **aa)
    cv2.polylines(image, [_poly(full[27:31])], False, shade, 2, **aa)
    for brow in (slice(17, 22), slice(22, 27)):
        cv2.polylines(image, [_poly(full[brow])], False, (60, 40, 30), 3, **aa)
    for eye in (slice(36, 42), slice(42, 48)):
        cv2.fillPoly(image, [_poly(full[eye])], (240, 240, 240), **aa)
        centre = full[eye].mean(0)
        cv2.circle(image, tuple(int(v) for v in _poly(centre)), 3 * 2**SUBPIXEL // 2, (40, 60, 90), -1, **aa)
    cv2.fillPoly(image, [_poly(full[48:60])], (170, 60, 70), **aa)
    cv2.fillPoly(image, [_poly(full[60:68])], (60, 20, 30), **aa)
    return image


def write_face_sequence(root, phase: str, name: str, rng: np.random.Generator, size: Size, frames: int) -> None:
    """One talking face: frames PNGs and their exact landmark files."""
    params = np.array([rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.5), rng.uniform(0.03, 0.08),
                       rng.uniform(1.5, 3.0)])
    back = background(rng, size)
    skin = tuple(int(c) for c in rng.uniform([170, 120, 90], [240, 190, 160]))
    (root / f"{phase}_img" / name).mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        cx, cy, scale, roll, mouth = face_motion(t, frames, size, params)
        points = place(template_face(mouth), cx, cy, scale, roll)
        write_keypoints(root / f"{phase}_keypoints" / name / f"{t:05d}.txt", points)
        write_image(root / f"{phase}_img" / name / f"{t:05d}.png", draw_frame(points, back, skin))


def write_faces(root, sequences: int, test_sequences: int, frames: int, size: Size, seed: int) -> None:
    """The train and test phases of a synthetic face dataset into root."""
    for phase, count, phase_id in (("train", sequences, 0), ("test", test_sequences, 1)):
        for i in range(count):
            write_face_sequence(root, phase, f"seq_{i:04d}", np.random.default_rng([seed, 7, phase_id, i]),
                                Size(*size), frames)
