"""A picture strip of a face sequence: columns = frames (0, 10, 20, 29 by default, clamped to the sequence's
length), rows = the edge map (channel 0 of the face input, as `vid2vid check-data --draw` shows it) | each rendered
frames folder (`vid2vid render ... --frames-dir`) | the real frames, face-cropped. The edge map and the real crop
come from the dataset as the test phase loads it (the crop of the sequence's first frame, at data.load_size). The
PNG's colours are rounded to 5 bits a channel (--bits) to keep it small for the README.

    python tools/face_strip.py --config configs/demo_face.yaml --set data.root=data/face_tang data.source=folder \
        data.load_size=128x128 --seq seq_0000 --rows per-frame=runs/x/image_frames vid2vid=runs/x/video_frames \
        --out docs/face_strip.png
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from vid2vid.config import load_config
from vid2vid.data.sequences import build_dataset
from vid2vid.data.transforms import centre_transform
from vid2vid.video_io import read_image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--phase", default="test")
    p.add_argument("--seq", default="seq_0000")
    p.add_argument("--rows", nargs="+", required=True, metavar="NAME=FRAMES_DIR")
    p.add_argument("--frames", type=int, nargs="+", default=[0, 10, 20, 29])
    p.add_argument("--bits", type=int, default=5, help="bits kept per colour channel (8: exact)")
    p.add_argument("--out", required=True)
    a = p.parse_args()

    d = load_config(a.config, [*a.set, f"data.phase={a.phase}"]).data
    dataset = build_dataset(replace(d, n_frames=1), augment=False)
    seq = next(s for s in dataset.sequences if s.name == a.seq)
    picks = sorted({min(t, len(seq) - 1) for t in a.frames})
    item = dataset.load(seq, picks, centre_transform(load_size=d.load_size, crop_size=d.crop_size), anchor=0)
    edges = np.repeat((item["cond"][:, 0].numpy().clip(0, 1) * 255).round().astype(np.uint8)[..., None], 3, -1)
    real = ((item["frames"].permute(0, 2, 3, 1).numpy() + 1) * 127.5).clip(0, 255).round().astype(np.uint8)
    rows = [list(edges)]
    for spec in a.rows:
        folder = Path(spec.split("=", 1)[1])
        rows.append([np.asarray(read_image(folder / f"{t:05d}.png"))[..., :3] for t in picks])
    rows.append(list(real))
    strip = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    step = 2 ** (8 - a.bits)
    strip = ((strip.astype(np.int32) + step // 2) // step * step).clip(0, 255).astype(np.uint8)
    cv2.imwrite(a.out, cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {a.out}: {strip.shape[1]}x{strip.shape[0]}, frames {picks}, rows edge map | "
          f"{' | '.join(s.split('=', 1)[0] for s in a.rows)} | real")


if __name__ == "__main__":
    main()
