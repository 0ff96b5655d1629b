"""Procedural street scenes with exact labels, instances and optical flow (the embedded dataset).

A scene is a stack of 2.5D layers, back to front: sky, buildings with windows, trees and poles,
the ground (sidewalks, road with lane markings), then cars and pedestrians, each a separate
instance. Every layer is a canvas (label ids, instance ids, RGB texture) carried into the image by
its own affine map per frame: camera pan and a gentle forward zoom scaled by the layer's depth,
plus the object's own motion. Rendering inverse-maps every pixel through the map of each layer and
keeps the top-most non-empty one, so textures move with the surfaces. The flow at a pixel is the
motion of that top-most layer's point: A_{t+1}(A_t^-1(x)) - x, exact by construction.

Layout written (vid2vid): <out>/<phase>_A|_B|_inst/seq_XXXX/00000.png and
<out>/<phase>_flow/seq_XXXX/fw_00000.flo (frame t -> t+1), bw_00000.flo (frame t+1 -> t).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from flow import atomic_dir, write_flo
from vid2vid.config import Size
from vid2vid.data.synthetic_faces import write_faces
from vid2vid.errors import DataError
from vid2vid.video_io import write_image

ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, PERSON, CAR = 7, 8, 11, 17, 21, 23, 24, 26
EMPTY = 255  # label of a canvas pixel that the layer does not cover
FORMAT_VERSION = 1
PARAMS_FILE = "synthetic.json"


@dataclass
class Layer:
    label: np.ndarray  # [h,w] uint8 canvas, EMPTY where the layer is transparent
    inst: np.ndarray  # [h,w] uint16 canvas
    rgb: np.ndarray  # [h,w,3] float32 canvas in [0,1]
    maps: np.ndarray  # [T,3,3] float64: canvas coordinates -> image coordinates, per frame


# ----------------------------------------------------------------------------------------------
# Textures and shapes
# ----------------------------------------------------------------------------------------------


def _noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise [h,w] float32, roughly N(0,1), with features about `cell` pixels wide."""
    small = rng.standard_normal((max(2, int(h / cell) + 2), max(2, int(w / cell) + 2))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _finish(label: np.ndarray, inst: np.ndarray, rgb: np.ndarray, maps: np.ndarray) -> Layer:
    """Smooth the texture slightly and fill the transparent part with nearby colours, so bilinear
    sampling at a layer's edge does not pull in unrelated colours."""
    rgb = cv2.GaussianBlur(rgb, (0, 0), 0.7)
    covered = (label != EMPTY).astype(np.float32)
    if not covered.all():
        weight = cv2.GaussianBlur(covered, (0, 0), 3.0)[..., None]
        fill = cv2.GaussianBlur(rgb * covered[..., None], (0, 0), 3.0) / np.maximum(weight, 1e-3)
        rgb = np.where(covered[..., None] > 0, rgb, fill)
    return Layer(label, inst, np.clip(rgb, 0, 1).astype(np.float32), maps)


def _rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, value) -> None:
    h, w = img.shape[:2]
    xa, xb = max(0, int(round(x0))), min(w, int(round(x1)))
    ya, yb = max(0, int(round(y0))), min(h, int(round(y1)))
    if xa < xb and ya < yb:
        img[ya:yb, xa:xb] = value


def _disc(img: np.ndarray, cx: float, cy: float, r: float, value) -> None:
    cv2.circle(img, (int(round(cx)), int(round(cy))), max(1, int(round(r))),
               value if np.isscalar(value) else tuple(float(v) for v in value), -1, lineType=cv2.LINE_8)


# ----------------------------------------------------------------------------------------------
# Camera and layer motion
# ----------------------------------------------------------------------------------------------


def _translate(dx: float, dy: float) -> np.ndarray:
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype=np.float64)


@dataclass
class Camera:
    pan: float  # px per frame for a layer of depth 1 (positive: the scene moves left)
    zoom: float  # relative zoom per frame for a layer of depth 1 (forward motion)
    centre: tuple[float, float]  # vanishing point (x, y)
    sway: float  # vertical sway amplitude in px
    frames: int

    def maps(self, depth: float, offset=(0.0, 0.0), velocity=(0.0, 0.0)) -> np.ndarray:
        """[T,3,3]: world point q = p + offset + velocity * t of a layer at `depth` -> image."""
        cx, cy = self.centre
        out = []
        for t in range(self.frames):
            s = (1.0 + self.zoom * depth) ** t
            zoom = _translate(cx, cy) @ np.diag([s, s, 1.0]) @ _translate(-cx, -cy)
            cam = _translate(-self.pan * depth * t, self.sway * depth * np.sin(0.3 * t)) @ zoom
            out.append(cam @ _translate(offset[0] + velocity[0] * t, offset[1] + velocity[1] * t))
        return np.stack(out)


# ----------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------


def _background_canvas(h: int, w: int, margin: tuple[int, int]):
    mx, my = margin
    ch, cw = h + 2 * my, w + 2 * mx
    label = np.full((ch, cw), EMPTY, np.uint8)
    return label, np.zeros((ch, cw), np.uint16), np.zeros((ch, cw, 3), np.float32), (-mx, -my)


def _sky(rng, h, w, cam, margin) -> Layer:
    label, inst, rgb, off = _background_canvas(h, w, margin)
    ch, cw = label.shape
    label[:] = SKY
    inst[:] = SKY
    y = np.linspace(0, 1, ch, dtype=np.float32)[:, None, None]
    top, bottom = np.array([0.35, 0.55, 0.85], np.float32), np.array([0.75, 0.85, 0.95], np.float32)
    clouds = np.clip(_noise(rng, ch, cw, 18.0) - 0.3, 0, None)[..., None] * 0.25
    rgb[:] = top * (1 - y) + bottom * y + clouds
    return _finish(label, inst, rgb, cam.maps(0.1, off))


def _buildings(rng, h, w, horizon, cam, margin) -> Layer:
    label, inst, rgb, off = _background_canvas(h, w, margin)
    ch, cw = label.shape
    my = margin[1]
    x = 0.0
    unit = max(w / 256, 0.25)
    while x < cw:
        bw = rng.uniform(22, 60) * unit
        top = my + rng.uniform(0.04, 0.32) * h
        bottom = my + horizon + 3
        wall = rng.uniform(0.35, 0.75) * np.array(rng.choice([[1, 0.9, 0.8], [0.9, 0.9, 0.95], [1, 0.8, 0.7]]))
        _rect(label, x, top, x + bw, bottom, BUILDING)
        _rect(inst, x, top, x + bw, bottom, BUILDING)
        ya, yb, xa, xb = int(top), int(bottom), int(x), int(min(cw, x + bw))
        if yb > ya and xb > xa:
            grain = _noise(rng, yb - ya, xb - xa, 6.0)[..., None] * 0.04
            rgb[ya:yb, xa:xb] = wall + grain
        win_w, gap = rng.uniform(3, 5) * unit, rng.uniform(7, 10) * unit
        glass = np.array([0.2, 0.25, 0.35]) * rng.uniform(0.7, 1.3)
        wy = top + gap * 0.6
        while wy + win_w * 1.3 < bottom - gap:
            wx = x + gap * 0.5
            while wx + win_w < x + bw - gap * 0.3:
                _rect(rgb, wx, wy, wx + win_w, wy + win_w * 1.3, glass * rng.uniform(0.8, 1.2))
                wx += gap
            wy += gap * 1.4
        x += bw + rng.uniform(0, 6) * unit
    return _finish(label, inst, rgb, cam.maps(0.6, off))


def _street_furniture(rng, h, w, horizon, cam, margin) -> Layer:
    """Trees (vegetation) and poles standing on the far sidewalk."""
    label, inst, rgb, off = _background_canvas(h, w, margin)
    ch, cw = label.shape
    my = margin[1]
    base = my + horizon + 0.05 * h
    x = rng.uniform(0, 40) * w / 256
    while x < cw:
        if rng.random() < 0.55:  # a tree: trunk and crown, all vegetation
            r = rng.uniform(0.07, 0.12) * h
            trunk = max(2.0, 0.02 * h)
            _rect(label, x - trunk / 2, base - 0.25 * h, x + trunk / 2, base, VEGETATION)
            _rect(rgb, x - trunk / 2, base - 0.25 * h, x + trunk / 2, base, (0.35, 0.25, 0.15))
            cy = base - 0.25 * h - r * 0.6
            crown = np.zeros_like(label)
            _disc(crown, x, cy, r, 1)
            _disc(crown, x - r * 0.6, cy + r * 0.3, r * 0.7, 1)
            _disc(crown, x + r * 0.6, cy + r * 0.2, r * 0.7, 1)
            leaves = np.clip(0.3 + 0.12 * _noise(rng, ch, cw, 4.0), 0.05, 0.6)
            m = crown > 0
            label[m] = VEGETATION
            rgb[m] = np.stack([leaves[m] * 0.6, leaves[m] * 1.3, leaves[m] * 0.4], -1)
        else:  # a pole, sometimes with a sign
            pw, top = max(2.0, 0.018 * h), base - rng.uniform(0.3, 0.45) * h
            _rect(label, x - pw / 2, top, x + pw / 2, base, POLE)
            _rect(rgb, x - pw / 2, top, x + pw / 2, base, (0.45, 0.45, 0.5))
            if rng.random() < 0.5:
                sw = 0.06 * h
                _rect(label, x - sw / 2, top, x + sw / 2, top + sw, POLE)
                _rect(rgb, x - sw / 2, top, x + sw / 2, top + sw, rng.choice([[0.8, 0.1, 0.1], [0.1, 0.3, 0.8]]))
        x += rng.uniform(35, 90) * w / 256
    inst[label != EMPTY] = label[label != EMPTY]
    return _finish(label, inst, rgb, cam.maps(0.85, off))


def _ground(rng, h, w, horizon, lanes, cam, margin) -> Layer:
    """Far sidewalk, road with dashed lane markings, near sidewalk."""
    label, inst, rgb, off = _background_canvas(h, w, margin)
    ch, cw = label.shape
    my = margin[1]
    far_end, road_end = my + horizon + 0.07 * h, my + 0.86 * h
    _rect(label, 0, my + horizon, cw, far_end, SIDEWALK)
    _rect(label, 0, far_end, cw, road_end, ROAD)
    _rect(label, 0, road_end, cw, ch, SIDEWALK)
    inst[:] = label
    grain = _noise(rng, ch, cw, 3.0)[..., None]
    road = 0.3 + 0.03 * grain + 0.04 * _noise(rng, ch, cw, 25.0)[..., None]
    tiles = 0.58 + 0.03 * grain
    yy, xx = np.mgrid[0:ch, 0:cw]
    joints = ((xx % 12) < 1) | ((yy % 8) < 1)
    tiles = tiles - 0.08 * joints[..., None]
    rgb[:] = np.where((label == ROAD)[..., None], road * np.array([1, 1, 1.05]), tiles * np.array([1, 0.97, 0.9]))
    dash, thick, phase = 14 * w / 256, max(1.5, 0.012 * h), rng.uniform(0, 20)
    for y in lanes[1:-1]:
        x = -phase
        while x < cw:
            _rect(rgb, x, my + y - thick / 2, x + dash, my + y + thick / 2, (0.9, 0.9, 0.85))
            x += dash * 1.8
    return _finish(label, inst, rgb, cam.maps(1.0, off))


def _car(rng, h, w, horizon, lane_y, k, cam) -> Layer:
    scale = 0.5 + 0.8 * (lane_y - horizon) / (h - horizon)
    cw_, chh = int(0.2 * w * scale) + 4, int(0.09 * w * scale) + 4
    label = np.full((chh, cw_), EMPTY, np.uint8)
    rgb = np.zeros((chh, cw_, 3), np.float32)
    body = np.array(rng.choice([[0.7, 0.1, 0.1], [0.1, 0.2, 0.6], [0.85, 0.85, 0.8], [0.15, 0.15, 0.15],
                                [0.9, 0.7, 0.1], [0.2, 0.5, 0.3]])) * rng.uniform(0.8, 1.1)
    x0, x1, y0, y1 = 2, cw_ - 2, 2, chh - 2
    mid = y0 + (y1 - y0) * 0.45
    _rect(label, x0, mid, x1, y1 - 2, CAR)
    _rect(rgb, x0, mid, x1, y1 - 2, body)
    cab0, cab1 = x0 + (x1 - x0) * rng.uniform(0.15, 0.3), x1 - (x1 - x0) * rng.uniform(0.2, 0.35)
    _rect(label, cab0, y0, cab1, mid + 1, CAR)
    _rect(rgb, cab0, y0, cab1, mid + 1, body)
    _rect(rgb, cab0 + 2, y0 + 2, cab1 - 2, mid - 1, (0.2, 0.3, 0.4))  # windows
    r = (y1 - y0) * 0.17
    for wx in (x0 + (x1 - x0) * 0.2, x1 - (x1 - x0) * 0.2):
        _disc(label, wx, y1 - r, r, CAR)
        _disc(rgb, wx, y1 - r, r, (0.05, 0.05, 0.05))
    rgb += _noise(rng, chh, cw_, 5.0)[..., None] * 0.02
    inst = np.where(label == CAR, CAR * 1000 + k, 0).astype(np.uint16)
    speed = rng.uniform(0.5, 2.0) * w / 256 * rng.choice([-1, 1])
    start = (rng.uniform(-0.1, 0.9) * w, lane_y - chh)
    return _finish(label, inst, rgb, cam.maps(1.0, start, (speed, 0.0)))


def _person(rng, h, w, horizon, base_y, k, cam) -> Layer:
    scale = 0.5 + 0.8 * (base_y - horizon) / (h - horizon)
    ph = int(0.22 * h * scale) + 4
    pw = max(6, int(ph * 0.4))
    label = np.full((ph, pw), EMPTY, np.uint8)
    rgb = np.zeros((ph, pw, 3), np.float32)
    cx, head = pw / 2, ph * 0.12
    shirt = rng.uniform(0.1, 0.9, 3)
    _disc(label, cx, 2 + head, head, PERSON)
    _disc(rgb, cx, 2 + head, head, np.array([0.85, 0.65, 0.5]) * rng.uniform(0.5, 1.05))
    _rect(label, cx - pw * 0.3, 2 + 2 * head, cx + pw * 0.3, ph * 0.62, PERSON)
    _rect(rgb, cx - pw * 0.3, 2 + 2 * head, cx + pw * 0.3, ph * 0.62, shirt)
    for lx in (cx - pw * 0.25, cx + pw * 0.05):
        _rect(label, lx, ph * 0.62, lx + pw * 0.2, ph - 1, PERSON)
        _rect(rgb, lx, ph * 0.62, lx + pw * 0.2, ph - 1, (0.15, 0.15, 0.3))
    inst = np.where(label == PERSON, PERSON * 1000 + k, 0).astype(np.uint16)
    speed = rng.uniform(0.2, 0.7) * w / 256 * rng.choice([-1, 1])
    start = (rng.uniform(0.0, 0.9) * w, base_y - ph)
    return _finish(label, inst, rgb, cam.maps(1.0, start, (speed, 0.0)))


def build_scene(rng: np.random.Generator, size: Size, frames: int) -> list[Layer]:
    """The layers of one random street scene, back to front."""
    h, w = size
    horizon = rng.uniform(0.4, 0.48) * h
    cam = Camera(pan=rng.uniform(0.8, 2.0) * w / 256 * rng.choice([-1, 1]), zoom=rng.uniform(0.002, 0.008),
                 centre=(w / 2 + rng.uniform(-0.1, 0.1) * w, horizon), sway=rng.uniform(0, 0.6) * h / 128,
                 frames=frames)
    margin = (int(np.ceil(abs(cam.pan) * (frames + 1))) + 8, int(np.ceil(cam.sway)) + 8)
    road_top, road_bottom = horizon + 0.07 * h, 0.86 * h
    lanes = np.linspace(road_top, road_bottom, 4)
    layers = [_sky(rng, h, w, cam, margin), _buildings(rng, h, w, horizon, cam, margin),
              _ground(rng, h, w, horizon, lanes, cam, margin), _street_furniture(rng, h, w, horizon, cam, margin)]
    things = []  # (base y, layer): nearer things (larger y) are drawn later
    for k in range(int(rng.integers(2, 5))):
        lane_y = rng.uniform(lanes[0] + 0.3 * (lanes[1] - lanes[0]), lanes[-1] - 2)
        things.append((lane_y, _car(rng, h, w, horizon, lane_y, k, cam)))
    for k in range(int(rng.integers(1, 4))):
        base_y = rng.choice([horizon + rng.uniform(0.02, 0.07) * h, rng.uniform(0.88, 0.99) * h])
        things.append((base_y, _person(rng, h, w, horizon, base_y, k, cam)))
    things.sort(key=lambda item: item[0])
    return layers + [layer for _, layer in things]


# ----------------------------------------------------------------------------------------------
# Rendering and exact flow
# ----------------------------------------------------------------------------------------------


def _warp(canvas: np.ndarray, to_image: np.ndarray, size: Size, nearest: bool, border) -> np.ndarray:
    inverse = np.linalg.inv(to_image)[:2]  # image -> canvas
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(canvas, inverse, (size.w, size.h), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=border)


def render(layers: list[Layer], t: int, size: Size):
    """Frame t -> (label [H,W] uint8, inst [H,W] uint16, rgb [H,W,3] uint8, visible layer [H,W] int)."""
    label = np.full(size, EMPTY, np.uint8)
    inst = np.zeros(size, np.uint16)
    rgb = np.zeros((*size, 3), np.float32)
    top = np.zeros(size, np.int64)
    for i, layer in enumerate(layers):
        lab = _warp(layer.label, layer.maps[t], size, True, EMPTY)
        m = lab != EMPTY
        label[m] = lab[m]
        inst[m] = _warp(layer.inst, layer.maps[t], size, True, 0)[m]
        rgb[m] = _warp(layer.rgb, layer.maps[t], size, False, (0, 0, 0))[m]
        top[m] = i
    if (label == EMPTY).any():  # the sky covers its whole canvas, which covers every frame
        raise AssertionError("synthetic scene left pixels uncovered")
    return label, inst, np.round(rgb * 255).astype(np.uint8), top


def layer_flow(layers: list[Layer], top: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Exact flow [H,W,2] from frame src to frame dst, given the visible layer of each pixel in src."""
    motions = np.stack([layer.maps[dst] @ np.linalg.inv(layer.maps[src]) for layer in layers])  # [L,3,3]
    m = motions[top]  # [H,W,3,3]
    h, w = top.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    u = m[..., 0, 0] * x + m[..., 0, 1] * y + m[..., 0, 2] - x
    v = m[..., 1, 0] * x + m[..., 1, 1] * y + m[..., 1, 2] - y
    return np.stack([u, v], -1).astype(np.float32)


def write_sequence(root: Path, phase: str, name: str, rng: np.random.Generator, size: Size, frames: int) -> None:
    layers = build_scene(rng, size, frames)
    folders = {kind: root / f"{phase}_{kind}" / name for kind in ("A", "B", "inst", "flow")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    tops = []
    for t in range(frames):
        label, inst, rgb, top = render(layers, t, size)
        write_image(folders["A"] / f"{t:05d}.png", label)
        write_image(folders["B"] / f"{t:05d}.png", rgb)
        write_image(folders["inst"] / f"{t:05d}.png", inst)
        tops.append(top)
    for t in range(frames - 1):
        write_flo(folders["flow"] / f"fw_{t:05d}.flo", layer_flow(layers, tops[t], t, t + 1))
        write_flo(folders["flow"] / f"bw_{t:05d}.flo", layer_flow(layers, tops[t + 1], t + 1, t))


def _params(sequences: int, test_sequences: int, frames: int, size: Size, seed: int, faces: bool = False) -> dict:
    kind = {"kind": "faces"} if faces else {}  # street datasets keep the parameter file they always had
    return {"format": FORMAT_VERSION, **kind, "sequences": sequences, "test_sequences": test_sequences,
            "frames": frames, "size": str(Size(*size)), "seed": seed}


def generate_synthetic(out: str | os.PathLike, *, sequences: int, test_sequences: int, frames: int, size: Size,
                       seed: int, faces: bool = False) -> Path:
    """Write a synthetic street dataset (or, with faces, talking faces in the original face layout:
    vid2vid.data.synthetic_faces) to `out` (which must not exist), atomically. Returns the path."""
    out = Path(out)
    size = Size(*size)
    for name, value, low in (("sequences", sequences, 1), ("test_sequences", test_sequences, 0),
                             ("frames", frames, 2), ("size height", size.h, 16), ("size width", size.w, 16)):
        if value < low:
            raise DataError(f"synthetic dataset: {name} must be >= {low}, got {value}")
    if out.exists():
        raise DataError(f"{out} already exists; remove it or choose another output folder")
    with atomic_dir(out) as tmp:
        if faces:
            write_faces(tmp, sequences, test_sequences, frames, size, seed)
        else:
            for phase, count, phase_id in (("train", sequences, 0), ("test", test_sequences, 1)):
                for i in range(count):
                    write_sequence(tmp, phase, f"seq_{i:04d}", np.random.default_rng([seed, phase_id, i]), size, frames)
        params = _params(sequences, test_sequences, frames, size, seed, faces)
        (tmp / PARAMS_FILE).write_text(json.dumps(params, indent=1) + "\n")
    return out


# ----------------------------------------------------------------------------------------------
# Generate on first use, once, even when several processes start together
# ----------------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_params(root: Path, want: dict) -> None:
    path = root / PARAMS_FILE
    try:
        have = json.loads(path.read_text())
    except (OSError, ValueError):
        raise DataError(f"{root} exists but is not a complete synthetic dataset ({path} is missing or broken); "
                        "remove the folder to regenerate it, or set data.source: folder") from None
    if have != want:
        diff = ", ".join(f"{k}: {have.get(k)!r} on disk vs {want[k]!r} in the config" for k in want
                         if have.get(k) != want[k])
        raise DataError(f"{root} holds a synthetic dataset made with other settings ({diff}); remove the folder "
                        "to regenerate it, or point data.root elsewhere")


def ensure_dataset(data_cfg, timeout: float = 600.0) -> Path:
    """Make sure data_cfg.root exists; when data_cfg.source is "synthetic" and it is absent, generate it.

    Exactly one of several concurrent processes generates (lock file created with O_EXCL next to the
    root); the others wait until the finished folder appears. Returns the root as a Path.
    """
    root = Path(data_cfg.root)
    if data_cfg.source != "synthetic":
        return root
    syn, faces = data_cfg.synthetic, data_cfg.condition == "face"
    want = _params(syn.sequences, syn.test_sequences, syn.frames, Size(*syn.size), syn.seed, faces)
    lock = root.parent / f".{root.name}.lock"
    deadline = time.monotonic() + timeout
    while not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            _wait_for(root, lock, deadline, timeout)
            continue
        try:
            os.write(fd, f"{socket.gethostname()}:{os.getpid()}".encode())
            os.close(fd)
            if not root.exists():
                print(f"generating the synthetic dataset into {root} ({'talking faces, ' if faces else ''}"
                      f"{syn.sequences}+{syn.test_sequences} sequences of {syn.frames} frames, {Size(*syn.size)})",
                      file=sys.stderr, flush=True)
                generate_synthetic(root, sequences=syn.sequences, test_sequences=syn.test_sequences,
                                   frames=syn.frames, size=Size(*syn.size), seed=syn.seed, faces=faces)
        finally:
            lock.unlink(missing_ok=True)
    _check_params(root, want)
    return root


def _wait_for(root: Path, lock: Path, deadline: float, timeout: float) -> None:
    """Poll while another process generates root; remove the lock if its owner died."""
    while not root.exists() and lock.exists():
        try:
            host, _, pid_text = lock.read_text().rpartition(":")
            pid = int(pid_text or "0")
        except (OSError, ValueError):
            host, pid = "", 0
        # a process id only means something on its own host (the root may be on a shared filesystem)
        if pid and host == socket.gethostname() and not _pid_alive(pid):
            lock.unlink(missing_ok=True)  # its owner died; the next round takes it over
            return
        if time.monotonic() > deadline:
            raise DataError(f"waited {timeout:.0f} s for another process to generate {root} (lock file {lock}, "
                            f"process {pid or 'unknown'}); if no such process runs, delete {lock} and retry")
        time.sleep(0.2)
