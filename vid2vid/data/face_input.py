"""The original vid2vid's face input, drawn from a frame's 68 landmarks (dlib's scheme) as its face dataset draws it.

    box = face_crop_box(first_points, frame_w, frame_h)       # one square per sequence, from its first frame
    face = draw_face(points, frame_rgb, box, Size(256, 256))  # cond float32 [C,256,256] in [0,1], parts uint8
    crop_frame(frame_rgb, box, Size(256, 256))                # the real frame, cropped and resized the same way

Channels: the edge map (every facial part drawn as fitted curves, plus the Canny edges of the real frame outside the
face), then one clipped L1 distance transform per drawn edge list (14): 15 channels, or 1 without distance maps
(FaceOptions). The part label map (0 background, 1 face, 2 eyebrows, 3 nose, 4 eyes, 5 mouth, 6 inner mouth) is the
instance map of the feature encoder, never a generator channel.

Everything is drawn at the frame's resolution, then cropped to the box and resized with PIL (bilinear for edges and
distance maps, nearest for part labels), as the original does, so values agree with it within 1/255. Where the box
reaches past the frame (a close-up), the original slices its arrays with negative starts while PIL pads the frame;
here the drawing canvas grows to cover the box (the frame padded black), so the input and the frame stay aligned.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from vid2vid.config import Size

N_POINTS = 68
N_PART_LABELS = 7  # ids 0..6 of the part label map
# Each part: its edge lists (point indices, 68-82 the mirrored upper face), drawn and distance-mapped one by one.
FACE_PARTS: tuple[tuple[tuple[int, ...], ...], ...] = (
    (tuple(range(0, 17)) + tuple(range(68, 83)) + (0,),),  # face contour, closed over the forehead
    (tuple(range(17, 22)),),  # right eyebrow (the subject's; on the image's left)
    (tuple(range(22, 27)),),  # left eyebrow
    ((28, 31), tuple(range(31, 36)), (35, 28)),  # nose
    ((36, 37, 38, 39), (39, 40, 41, 36)),  # right eye
    ((42, 43, 44, 45), (45, 46, 47, 42)),  # left eye
    (tuple(range(48, 55)), (54, 55, 56, 57, 58, 59, 48)),  # mouth
    (tuple(range(60, 65)), (64, 65, 66, 67, 60)),  # inner lips
)
PART_LABELS = (1, 2, 2, 3, 4, 4, 5, 6)  # label of each part's filled polygon
N_DIST_MAPS = sum(len(part) for part in FACE_PARTS)  # 14
# Distance-map channels (0-based among the 14) that trade places when the picture is mirrored: eyebrows, the nose's
# two sides, upper and lower eyelids.
MIRRORED_DIST_MAPS = ((1, 2), (3, 5), (6, 8), (7, 9))
CURVE_POINTS = 3  # an edge list is drawn 3 points at a time (a quadratic; the last piece may be a line)


@dataclass(frozen=True)
class FaceOptions:
    """The original's face options: no_dist_map (edge map only: 1 channel), no_canny_edge (no background edges)."""

    no_dist_map: bool = False
    no_canny_edge: bool = False

    @property
    def channels(self) -> int:
        return 1 if self.no_dist_map else 1 + N_DIST_MAPS


@dataclass(frozen=True)
class Box:
    """A crop in frame pixels: columns x0..x1-1, rows y0..y1-1 (may reach past the frame)."""

    x0: int
    y0: int
    x1: int
    y1: int


@dataclass
class FaceInput:
    cond: np.ndarray  # float32 [C,h,w] in [0,1]: edge map, then distance maps
    parts: np.ndarray  # uint8 [h,w] part labels 0..6


def face_crop_box(points: np.ndarray, frame_w: int, frame_h: int) -> Box:
    """The original's square around a face: centred at x = (min_x + max_x) // 2, y = (3 min_y + max_y) // 4, side
    2.5 (max_x - min_x), shifted left/up to end inside the frame (a box wider than the frame reaches past its
    left/top edge)."""
    pts = np.asarray(points, np.float64)
    min_x, max_x = pts[:, 0].min(), pts[:, 0].max()
    min_y, max_y = pts[:, 1].min(), pts[:, 1].max()
    side = (max_x - min_x) * 2.5
    half = side // 2
    xc = min(max(0, (min_x + max_x) // 2 - half) + side, frame_w) - half
    yc = min(max(0, (min_y * 3 + max_y) // 4 - half) + side, frame_h) - half
    return Box(int(xc - half), int(yc - half), int(xc + half), int(yc + half))


def with_upper_face(points: np.ndarray) -> np.ndarray:
    """points [68,2] -> [83,2]: jaw points 15..1 (whole pixels) mirrored about the line between the jaw's ends at
    2/3 of their distance from it, appended as points 68..82."""
    jaw = np.asarray(points[:17], np.float64).astype(np.int32)  # [17,2]
    baseline = (jaw[0, 1] + jaw[-1, 1]) / 2
    upper = jaw[1:-1].copy()
    upper[:, 1] = baseline + (baseline - upper[:, 1]) * 2 // 3  # float -> int32: truncated, as assigned
    return np.vstack([np.asarray(points, np.float64), upper[::-1]])


def _quadratic(x, a, b, c):
    return a * x**2 + b * x + c


def _line(x, a, b):
    return a * x + b


def fitted_curve(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Whole-pixel points along the curve through 2 (a line) or 3 points (a least-squares quadratic), one per pixel
    of the longer axis, or None for a quadratic bending faster than |a| > 1."""
    if np.abs(np.diff(x)).max() < np.abs(np.diff(y)).max():
        swapped = fitted_curve(y, x)
        return None if swapped is None else (swapped[1], swapped[0])
    first, last = sorted((x[0], x[-1]))
    count = int(last - first)  # numpy < 1.18's linspace truncated a float count, as the original relied on
    if count == 0:
        return np.zeros(0, int), np.zeros(0, int)
    from scipy.optimize import curve_fit  # here: scipy is slow to import and only faces need it

    model = _quadratic if len(x) >= 3 else _line
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's OptimizeWarning: no covariance for an exact fit
        params, _ = curve_fit(model, x, y)  # on the points in their own order, as the original fits them
    if len(x) >= 3 and abs(params[0]) > 1:
        return None
    xs = np.linspace(first, last, count)
    return xs.astype(int), model(xs, *params).astype(int)


def _stamp(canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> None:
    """Draw a 2x2 pixel pen (the pixel and its upper-left neighbours) at each point, clipped to the canvas."""
    h, w = canvas.shape
    for dy in (-1, 0):
        for dx in (-1, 0):
            canvas[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)] = 255


def draw_edge_list(canvas: np.ndarray, points: np.ndarray, edge: tuple[int, ...]) -> None:
    """Draw one edge list (point indices) CURVE_POINTS points at a time onto canvas (uint8 [H,W], 255 = edge)."""
    for i in range(0, max(1, len(edge) - 1), CURVE_POINTS - 1):
        piece = list(edge[i:i + CURVE_POINTS])
        if len(piece) < 2:
            continue
        curve = fitted_curve(points[piece, 0], points[piece, 1])
        if curve is not None and curve[0].size:
            _stamp(canvas, *curve)


def part_labels(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """points [83,2] -> uint8 [H,W]: each part's points filled as one polygon with its label, in order."""
    labels = np.zeros(shape, np.uint8)
    for part, label in zip(FACE_PARTS, PART_LABELS):
        indices = [i for edge in part for i in edge]
        cv2.fillPoly(labels, [points[indices].astype(np.int32)], label)
    return labels


def canny_edges(frame_rgb: np.ndarray) -> np.ndarray:
    """bool [H,W]: scikit-image's Canny (its defaults) of the frame's PIL luminance."""
    from skimage import feature  # here: scikit-image is slow to import and only faces need it

    return feature.canny(np.asarray(Image.fromarray(frame_rgb).convert("L")))


def _canvas_of(box: Box, frame_w: int, frame_h: int) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the canvas: the frame, grown to cover the box."""
    left, top = min(0, box.x0), min(0, box.y0)
    return left, top, max(frame_w, box.x1) - left, max(frame_h, box.y1) - top


def _resized(image: np.ndarray, size: Size, method: int) -> np.ndarray:
    """uint8 [H,W] -> uint8 [size.h, size.w] with PIL's resampling."""
    return np.asarray(Image.fromarray(image).resize((size.w, size.h), method))


def draw_face(points: np.ndarray, frame_rgb: np.ndarray | None, box: Box, size: Size,
              options: FaceOptions = FaceOptions(), frame_size: tuple[int, int] | None = None) -> FaceInput:
    """One frame's face input at `size`: points [68,2] (frame pixels), frame_rgb uint8 [H,W,3] (for the Canny
    edges; None only with no_canny_edge, then frame_size (H, W) gives the frame's size), box from face_crop_box."""
    h, w = frame_rgb.shape[:2] if frame_rgb is not None else frame_size
    left, top, cw, ch = _canvas_of(box, w, h)
    pts = with_upper_face(points)
    pts[:, 0] -= left
    pts[:, 1] -= top
    parts = part_labels(pts, (ch, cw))
    edges = np.zeros((ch, cw), np.uint8)
    dist_maps = []
    for part in FACE_PARTS:
        for edge in part:
            if options.no_dist_map:
                draw_edge_list(edges, pts, edge)
                continue
            single = np.zeros_like(edges)
            draw_edge_list(single, pts, edge)
            edges |= single
            dist = cv2.distanceTransform(255 - single, cv2.DIST_L1, 3)
            dist_maps.append(np.clip(dist / 3, 0, 255).astype(np.uint8))
    if not options.no_canny_edge:
        if frame_rgb is None:
            raise ValueError("draw_face: the Canny edges need the frame (or FaceOptions(no_canny_edge=True))")
        background = np.zeros_like(edges)
        background[-top:-top + h, -left:-left + w] = canny_edges(frame_rgb) * np.uint8(255)
        edges = np.maximum(edges, background * (parts == 0))
    rows, cols = slice(box.y0 - top, box.y1 - top), slice(box.x0 - left, box.x1 - left)
    maps = [_resized(m[rows, cols], size, Image.BILINEAR) for m in [edges, *dist_maps]]
    cond = np.stack(maps).astype(np.float32) / 255.0  # [C,h,w]
    return FaceInput(cond, _resized(parts[rows, cols], size, Image.NEAREST))


def crop_frame(frame_rgb: np.ndarray, box: Box, size: Size) -> np.ndarray:
    """The real frame uint8 [H,W,3] -> the box (black past the frame), resized bicubically -> uint8 [h,w,3]."""
    image = Image.fromarray(frame_rgb).crop((box.x0, box.y0, box.x1, box.y1))
    return np.array(image.resize((size.w, size.h), Image.BICUBIC))  # a writable copy


def crop_points(points: np.ndarray, box: Box, size: Size) -> np.ndarray:
    """Points [K,2] (frame pixels) -> where they lie in crop_frame's output (and draw_face's): PIL resizes with pixel
    centres aligned, so x' = (x - x0 + 0.5) * size.w / box width - 0.5 (y alike) -> float32 [K,2]."""
    scale = np.array([size.w / (box.x1 - box.x0), size.h / (box.y1 - box.y0)])
    return ((np.asarray(points, np.float64) - [box.x0, box.y0] + 0.5) * scale - 0.5).astype(np.float32)


def centre_crop(load: Size, crop: Size) -> tuple[slice, slice]:
    """(rows, cols) of the crop-sized centre of a load-sized face input: what the test phase and render keep."""
    return (slice((load.h - crop.h) // 2, (load.h + crop.h) // 2),
            slice((load.w - crop.w) // 2, (load.w + crop.w) // 2))


@dataclass(frozen=True)
class FaceView:
    """Where a rendered face frame lies in its source frame: the sequence's crop box, resized to load (the model's
    data.load_size), its centre crop (data.crop_size) kept, as VideoRenderer.step renders it."""

    box: Box
    load: Size
    crop: Size

    def frame(self, frame_rgb: np.ndarray) -> np.ndarray:
        """uint8 [H,W,3] -> uint8 [crop.h, crop.w, 3]: the real frame as the rendered one is framed."""
        rows, cols = centre_crop(self.load, self.crop)
        return np.ascontiguousarray(crop_frame(frame_rgb, self.box, self.load)[rows, cols])

    def points(self, points: np.ndarray) -> np.ndarray:
        """Points [K,2] in frame pixels -> float32 [K,2] in the rendered frame's pixels."""
        rows, cols = centre_crop(self.load, self.crop)
        return crop_points(points, self.box, self.load) - np.float32([cols.start, rows.start])


def mirror_channels(n_channels: int) -> list[int]:
    """The channel order of a mirrored face input: left and right parts' distance maps trade places, so that a
    flipped input reads as the input of the flipped face."""
    order = list(range(n_channels))
    if n_channels == 1 + N_DIST_MAPS:
        for a, b in MIRRORED_DIST_MAPS:
            order[1 + a], order[1 + b] = order[1 + b], order[1 + a]
    return order


class FaceSequence:
    """The face input of one sequence's frames, one at a time: the crop square comes from its first frame's
    landmarks (reset() before the next sequence). For rendering and live trackers; the dataset draws clips itself."""

    def __init__(self, size: Size, options: FaceOptions = FaceOptions()):
        self.size, self.options = Size(*size), options
        self.box: Box | None = None

    def reset(self) -> None:
        self.box = None

    def draw(self, points: np.ndarray, frame_rgb: np.ndarray) -> tuple[FaceInput, np.ndarray]:
        """points [68,2], frame uint8 [H,W,3] -> (the face input at size, the face-cropped frame uint8 [h,w,3])."""
        if self.box is None:
            self.box = face_crop_box(points, frame_rgb.shape[1], frame_rgb.shape[0])
        return draw_face(points, frame_rgb, self.box, self.size, self.options), crop_frame(frame_rgb, self.box,
                                                                                             self.size)
