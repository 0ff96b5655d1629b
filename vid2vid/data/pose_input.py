"""The original vid2vid's pose input, drawn from OpenPose keypoints (and DensePose IUV) as its pose dataset draws it.

    people = read_openpose("00012.json")             # vid2vid.data.openpose
    picture = draw_openpose(people, h, w)            # uint8 [h,w,3]: the OpenPose rendering
    cond = pose_input(people, iuv, h, w)             # float32 [6,h,W'] in [-1,1]: DensePose (3), OpenPose (3)

The rendering, exactly as the original's (tests/fixtures/pose, equal to the last bit): per person, on a black
canvas, the body's limbs (6x6 pen, discs of radius 6 at the ends, the limb colours below), then both hands (2x2
pen, 3x3 ends, a colour per finger), then the face's eyebrows, nose, eyes and outer lips in white (no jaw, no inner
lips, no pupils); the people's canvases are added as uint8, so where two people overlap the colours wrap around
modulo 256. Within a person the pen is applied one offset at a time along a whole segment: if any pixel under that
offset is already drawn, every pixel under it becomes (pixel + colour) // 2, the black ones too (_paint), which
leaves half-bright fringes where strokes meet and at a stroke's own ends.

Which points count: a body point with confidence > 0.01; a hand's finger (with the wrist) only if all of its 5
points have confidence > 0.01; a face edge list only if all of its points have confidence > 0.1. A segment is drawn
when both ends count and neither has x == 0 exactly (the original marks missing points with x = 0, so a point on
the left column is taken for missing). Each segment is sampled as the original's fitted curve (face_input's
fitted_curve: one point per whole pixel of its longer axis, truncated, nothing for a segment shorter than 1 px).

The network input (pose_input): the DensePose IUV (its part channel rescaled, densepose_input), then the rendering,
both normalised as the original does, (v / 255 - 0.5) / 0.5 in float32 (to_signed), and only the central
2 * (W // 4 // 32 * 32) columns (central_columns): the original crops them to save time. Resizing to the load size
(PIL NEAREST in the original, before normalising) is the dataset's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vid2vid.config import central_width
from vid2vid.data.face_input import fitted_curve
from vid2vid.data.openpose import Person

# Body (BODY_25 indices): limbs in drawing order and their colours (RGB). The first 4 (head) are left out with
# basic_point_only.
HEAD_LIMBS = ((17, 15), (15, 0), (0, 16), (16, 18))
HEAD_COLOURS = ((153, 0, 153), (153, 0, 102), (102, 0, 153), (51, 0, 153))
BODY_LIMBS = (
    (0, 1), (1, 8),  # neck, trunk
    (1, 2), (2, 3), (3, 4),  # right arm
    (1, 5), (5, 6), (6, 7),  # left arm
    (8, 9), (9, 10), (10, 11), (11, 24), (11, 22), (22, 23),  # right leg and foot
    (8, 12), (12, 13), (13, 14), (14, 21), (14, 19), (19, 20),  # left leg and foot
)
BODY_COLOURS = (
    (153, 0, 51), (153, 0, 0),
    (153, 51, 0), (153, 102, 0), (153, 153, 0),
    (102, 153, 0), (51, 153, 0), (0, 153, 0),
    (0, 153, 51), (0, 153, 102), *[(0, 153, 153)] * 4,
    (0, 102, 153), (0, 51, 153), *[(0, 0, 153)] * 4,
)
# Hands (21 points): each finger from the wrist, thumb first, and its colour.
FINGERS = tuple((0, *range(1 + 4 * f, 5 + 4 * f)) for f in range(5))
FINGER_COLOURS = ((204, 0, 0), (163, 204, 0), (0, 204, 82), (0, 82, 204), (163, 0, 204))
# Face (70 points): the edge lists drawn, in order: eyebrows, nose bridge, nostrils, eyes, outer lips.
FACE_EDGES = (
    tuple(range(17, 22)), tuple(range(22, 27)), tuple(range(27, 31)), tuple(range(31, 36)),
    (36, 37, 38, 39), (39, 40, 41, 36), (42, 43, 44, 45), (45, 46, 47, 42),
    tuple(range(48, 55)), (54, 55, 56, 57, 58, 59, 48),
)
WHITE = (255, 255, 255)
BODY_PEN, HAND_PEN = 3, 1  # the original's bw: a 2bw x 2bw square pen, discs of radius 2bw at a segment's ends
BODY_MIN_CONF, HAND_MIN_CONF, FACE_MIN_CONF = 0.01, 0.01, 0.1
DENSEPOSE_PARTS = 24  # part ids 1..24 in the IUV image's third channel (0: background)
HEAD_PARTS = (23, 24)


@dataclass(frozen=True)
class PoseOptions:
    """The original's pose options. basic_point_only: the body without the head's limbs, no hands, no face.
    random_drop_prob: in training, the chance that each limb, each hand, the face and each DensePose part is left
    out. remove_face_labels: in training, DensePose's head parts are removed and (with random_drop_prob > 0) the
    head's body points (each) and the face (as a whole) move by random noise (5 px and 2 px standard deviations); at
    test time it changes nothing. openpose_only / densepose_only: that one source (3 channels) instead of both."""

    remove_face_labels: bool = False
    basic_point_only: bool = False
    random_drop_prob: float = 0.0
    openpose_only: bool = False
    densepose_only: bool = False

    @property
    def channels(self) -> int:
        return 3 if self.openpose_only or self.densepose_only else 6


def _kept(points: np.ndarray, groups: tuple[tuple[int, ...], ...] | None, min_conf: float) -> np.ndarray:
    """points [K,3] -> [K,2] (x, y), zero where a point does not count: each point of a group counts when all of the
    group's points are confident enough (groups None: each point on its own)."""
    out = np.zeros((len(points), 2))
    confident = points[:, 2] > min_conf
    for group in groups if groups is not None else [(i,) for i in range(len(points))]:
        if confident[list(group)].all():
            out[list(group)] = points[list(group), :2]
    return out


def _pen(pen: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(dy, dx) offsets in the original's order: the square pen (-pen..pen-1 both ways), the disc at a segment's ends
    (-2pen..2pen-1 with dx^2 + dy^2 < 4 pen^2)."""
    near, far = range(-pen, pen), range(-2 * pen, 2 * pen)
    square = [(dy, dx) for dy in near for dx in near]
    disc = [(dy, dx) for dy in far for dx in far if dx * dx + dy * dy < 4 * pen * pen]
    return square, disc


PENS = {pen: _pen(pen) for pen in (BODY_PEN, HAND_PEN)}


def _paint(canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray, offsets: list[tuple[int, int]], colour) -> None:
    """The pen's offsets one after another (the original's setColor): for each, the pixels (ys + dy, xs + dx), clipped
    to the canvas, take the colour if all of them are still black; otherwise every one of them becomes
    (pixel + colour) // 2, the black ones too."""
    h, w = canvas.shape[:2]
    flat = canvas.reshape(-1, 3)  # a view: [H*W,3]
    colour = np.uint16(colour)
    for dy, dx in offsets:
        index = np.minimum(np.maximum(ys + dy, 0), h - 1) * w + np.minimum(np.maximum(xs + dx, 0), w - 1)
        pixels = flat[index]
        flat[index] = (pixels + colour) // 2 if pixels.any() else colour  # uint16: no overflow before halving


def _draw_segment(canvas: np.ndarray, xy: np.ndarray, pair: tuple[int, int], colour, pen: int) -> None:
    """The fitted curve between two points of xy [K,2] drawn with the square pen, then discs at its two ends (_pen);
    nothing when an end is missing (x == 0)."""
    x, y = xy[list(pair), 0], xy[list(pair), 1]
    if 0 in x:
        return
    curve = fitted_curve(x, y)
    if curve is None or not curve[0].size:
        return
    xs, ys = curve  # int [N] each
    square, disc = PENS[pen]
    _paint(canvas, xs, ys, square, colour)
    _paint(canvas, xs[[0, -1]], ys[[0, -1]], disc, colour)


def _draw_person(person: Person, h: int, w: int, options: PoseOptions, rng: np.random.Generator | None) -> np.ndarray:
    """One person's canvas uint8 [H,W,3]."""
    canvas = np.zeros((h, w, 3), np.uint8)
    drop = options.random_drop_prob if rng is not None else 0.0

    def kept() -> bool:  # one draw per limb, per hand and for the face, as the original draws
        return drop == 0 or rng.random() >= drop

    body = _kept(person.pose, None, BODY_MIN_CONF)  # [25,2]
    face = _kept(person.face, FACE_EDGES, FACE_MIN_CONF)  # [70,2]
    if drop > 0 and options.remove_face_labels:  # only points that count move (the original moves missing ones too)
        head = [i for i in (0, 15, 16, 17, 18) if body[i, 0] != 0]
        body[head] += 5 * rng.standard_normal((len(head), 2))
        face[face[:, 0] != 0] += 2 * rng.standard_normal(2)
    limbs = (() if options.basic_point_only else HEAD_LIMBS) + BODY_LIMBS
    colours = (() if options.basic_point_only else HEAD_COLOURS) + BODY_COLOURS
    for pair, colour in zip(limbs, colours):
        if kept():
            _draw_segment(canvas, body, pair, colour, BODY_PEN)
    if options.basic_point_only:
        return canvas
    for hand in (person.hand_left, person.hand_right):
        if kept():
            xy = _kept(hand, FINGERS, HAND_MIN_CONF)  # [21,2]
            for finger, colour in zip(FINGERS, FINGER_COLOURS):
                for pair in zip(finger[:-1], finger[1:]):
                    _draw_segment(canvas, xy, pair, colour, HAND_PEN)
    if kept():
        for edge in FACE_EDGES:
            for pair in zip(edge[:-1], edge[1:]):
                _draw_segment(canvas, face, pair, WHITE, HAND_PEN)
    return canvas


def draw_openpose(people: list[Person], h: int, w: int, options: PoseOptions = PoseOptions(),
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """The OpenPose rendering of a frame's people -> uint8 [h,w,3] (RGB): each person drawn alone, the canvases
    added with uint8 wrap-around. rng: training's random drops (and remove_face_labels' noise); None: the test
    phase, nothing random (the original's random_drop_prob is 0 there)."""
    picture = np.zeros((h, w, 3), np.uint8)
    for person in people:
        picture += _draw_person(person, h, w, options, rng)  # uint8: overlapping people wrap around modulo 256
    return picture


def drop_densepose_parts(iuv: np.ndarray, options: PoseOptions, rng: np.random.Generator) -> np.ndarray:
    """Training's DensePose augmentation: each part id 1..24 (third channel) zeroed in all 3 channels with
    random_drop_prob, and the head's parts (23, 24) always with remove_face_labels -> a new uint8 [H,W,3]."""
    iuv = iuv.copy()
    parts = iuv[..., 2].copy()  # [H,W]
    dropped = [i for i in range(1, DENSEPOSE_PARTS + 1) if rng.random() < options.random_drop_prob]
    dropped += list(HEAD_PARTS) if options.remove_face_labels else []
    iuv[np.isin(parts, dropped)] = 0
    return iuv


def to_signed(image: np.ndarray) -> np.ndarray:
    """uint8 [H,W,C] -> float32 [C,H,W] in [-1,1] as the original's ToTensor + Normalize(0.5, 0.5) compute it."""
    return (np.moveaxis(image, -1, 0).astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)


def densepose_input(iuv: np.ndarray) -> np.ndarray:
    """A DensePose IUV picture uint8 [H,W,3] (third channel: the part id 0..24) -> float32 [3,H,W]: channels 0-1 in
    [-1,1] as to_signed, the part channel as part / 24 mapped to [-1,1] (in the original's float32 steps)."""
    d = to_signed(iuv)
    half = np.float32(0.5)
    d[2] = ((d[2] * half + half) * np.float32(255) / np.float32(DENSEPOSE_PARTS) - half) / half
    return d


def central_columns(w: int) -> slice:
    """The columns the original keeps of a W-wide pose input: the central config.central_width(W) (none below 128)."""
    half = central_width(w) // 2
    return slice(w // 2 - half, w // 2 + half)


def pose_input(people: list[Person] | None, iuv: np.ndarray | None, h: int, w: int,
               options: PoseOptions = PoseOptions(), rng: np.random.Generator | None = None) -> np.ndarray:
    """One frame's pose input -> float32 [C,h,W'] in [-1,1], W' = the central columns: DensePose (3, from iuv uint8
    [h,w,3]) then the OpenPose rendering (3, of people); one of them alone with densepose_only / openpose_only.
    rng: training's augmentation (draw_openpose, drop_densepose_parts); None: the test phase, nothing random."""
    if w < 128:
        raise ValueError(f"pose_input: width {w} < 128 keeps no column (the original keeps 2 * (W // 4 // 32 * 32))")
    maps = []
    if not options.openpose_only:
        if rng is not None:
            iuv = drop_densepose_parts(iuv, options, rng)
        maps.append(densepose_input(iuv))
    if not options.densepose_only:
        maps.append(to_signed(draw_openpose(people, h, w, options, rng)))
    return np.concatenate(maps)[:, :, central_columns(w)]
