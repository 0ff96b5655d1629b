"""`vid2vid check-data --draw OUT`: what the generator sees, per frame of every sequence of data.phase, for every
dataset kind (data.condition):

    OUT/<seq>/<frame>.npy   the frame's own condition [C,H,W] float32, after the test-phase transforms (resized to
                            data.load_size, centre-cropped to data.crop_size; faces: the crop of the sequence's first
                            frame; poses: then the central columns), exactly what the network gets for that frame
    OUT/<seq>/<frame>.png   a picture of it: labels coloured (| instance boundaries); faces: the edge map, the
                            distance maps and the part labels coloured, tiled; poses: side by side, DensePose's IUV
                            (its part channel as the network gets it), the OpenPose rendering, the body mask, the
                            labels coloured (each [-1,1] shown as [0,255])

OUT appears complete or not at all (written into a temporary folder, then renamed).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from einops import rearrange

from flow import atomic_dir
from vid2vid.data.encoding import semantic_input
from vid2vid.data.sequences import build_dataset
from vid2vid.data.transforms import centre_transform
from vid2vid.errors import UserError
from vid2vid.imaging import label_palette
from vid2vid.video_io import write_image

CHUNK = 8  # frames read at a time (memory stays bounded on long sequences)


def _grey(maps: np.ndarray) -> np.ndarray:
    """float [...,H,W] in [0,1] -> uint8 [...,H,W,3] grey."""
    return np.repeat((np.clip(maps, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def pose_picture(cond: np.ndarray, labels: np.ndarray, label_nc: int) -> np.ndarray:
    """A viewable picture uint8 [H,3W..4W,3] of one frame's pose input [C,H,W] in [-1,1] (DensePose 3?, OpenPose 3,
    mask 1?) and its labels [H,W]: the 3-channel parts in colour, the mask grey, the labels coloured, side by side."""
    shown = (np.clip(cond, -1, 1) * 0.5 + 0.5)  # [C,H,W] in [0,1]
    tiles = [(rearrange(shown[i: i + 3], "c h w -> h w c") * 255).round().astype(np.uint8)
             for i in range(0, len(cond) - len(cond) % 3, 3)]
    tiles += [_grey(shown[-1])] if len(cond) % 3 else []
    tiles.append(label_palette(max(label_nc, int(labels.max()) + 1))[labels])
    return np.concatenate(tiles, axis=1)


def picture(cond: np.ndarray, labels: np.ndarray, label_nc: int, face: bool, boundary: bool = False) -> np.ndarray:
    """A viewable picture uint8 [H',W',3] of one frame's condition [C,H,W] and its labels [H,W]: faces: every
    channel grey then the part labels coloured, tiled in a square-ish grid; labels: coloured ids, then (boundary)
    the instance-boundary channel, the last one."""
    coloured = label_palette(max(label_nc, int(labels.max()) + 1))[labels]  # [H,W,3]
    if not face:
        extra = [_grey(cond[-1])] if boundary else []
        return np.concatenate([coloured, *extra], axis=1)
    tiles = [*_grey(cond), coloured]
    cols = math.ceil(math.sqrt(len(tiles)))
    tiles += [np.zeros_like(coloured)] * (-len(tiles) % cols)
    return rearrange(np.stack(tiles), "(r c) h w k -> (r h) (c w) k", c=cols)


def draw_dataset(data_cfg, out: str | Path, frames: int | None = None) -> int:
    """Write OUT (see the module's docstring) for the first `frames` frames of each sequence (None: all); returns
    how many frames were drawn. OUT must not exist."""
    out = Path(out)
    if out.exists():
        raise UserError(f"--draw {out}: already exists; choose a new folder (it is written whole or not at all)")
    if frames is not None and frames < 1:
        raise UserError(f"--frames {frames}: must be >= 1 (or left out for every frame)")
    d = data_cfg
    dataset = build_dataset(replace(d, n_frames=1), augment=False)
    tf = centre_transform(load_size=d.load_size, crop_size=d.crop_size)
    face, drawn = d.condition == "face", 0
    with atomic_dir(out) as tmp:
        for seq in dataset.sequences:
            (tmp / seq.name).mkdir()
            n = len(seq) if frames is None else min(frames, len(seq))
            for start in range(0, n, CHUNK):
                idx = list(range(start, min(n, start + CHUNK)))
                item = dataset.load(seq, idx, tf, anchor=0)
                cond = semantic_input(item["labels"], item.get("inst"), d.label_nc, d.use_instance,
                                      d.contain_dontcare_label, item.get("cond")).numpy()  # [T,C,H,W]
                labels = item["labels"].numpy()
                for k, i in enumerate(idx):
                    name = Path(seq.labels[i]).stem
                    np.save(tmp / seq.name / f"{name}.npy", cond[k].astype(np.float32))
                    image = (pose_picture(cond[k], labels[k], d.label_nc) if d.condition == "pose" else
                             picture(cond[k], labels[k], d.label_nc, face, d.use_instance))
                    write_image(tmp / seq.name / f"{name}.png", image)
                drawn += len(idx)
    return drawn
