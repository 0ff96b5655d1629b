"""Does an exported image model beat the per-class mean-colour baseline on held-out sequences?

    python tools/eval_image_model.py runs/demo_image/export [--phase test] [--data-root DIR]

Metric: mean absolute error between generated and real frames, both in [0, 1], over every frame of
every `<phase>` sequence at data.load_size. Baseline: every pixel predicted as the mean training
colour of its label id (computed over all `train` frames; ids never seen in training get the mean
colour of all training pixels). Prints one JSON line with both numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from vid2vid.checkpoint import load_generator
from vid2vid.data.encoding import semantic_input
from vid2vid.errors import UserError
from vid2vid.video_io import image_files, iter_frames, read_image


def iter_labelled_frames(root: Path, phase: str, size):
    """(labels [H,W] int64, inst [H,W] int64 or None, frame [H,W,3] float32 in [0,1]) for every frame
    of every sequence of a phase, resized to size (labels and instances nearest, frames area)."""
    label_dir = root / f"{phase}_A"
    if not label_dir.is_dir():
        raise UserError(f"{label_dir}: missing; the dataset needs a {phase} phase to evaluate on")
    for seq in sorted(p for p in label_dir.iterdir() if p.is_dir()):
        frames_src = root / f"{phase}_B" / seq.name
        if not frames_src.exists():
            frames_src = next((root / f"{phase}_B").glob(f"{seq.name}.*"), frames_src)
        inst_dir = root / f"{phase}_inst" / seq.name
        inst_files = image_files(inst_dir) if inst_dir.is_dir() else None
        for i, (label_file, frame) in enumerate(zip(image_files(seq), iter_frames(frames_src), strict=True)):
            labels = cv2.resize(read_image(label_file, cv2.IMREAD_UNCHANGED), (size.w, size.h),
                                interpolation=cv2.INTER_NEAREST)
            inst = None
            if inst_files is not None:
                inst = cv2.resize(read_image(inst_files[i], cv2.IMREAD_UNCHANGED), (size.w, size.h),
                                  interpolation=cv2.INTER_NEAREST).astype(np.int64)
            frame = cv2.resize(frame, (size.w, size.h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
            yield labels.astype(np.int64), inst, frame


def class_mean_colours(root: Path, size, label_nc: int) -> np.ndarray:
    """[label_nc, 3] mean training colour per label id in [0,1] (global mean for unseen ids)."""
    sums, counts = np.zeros((label_nc, 3)), np.zeros(label_nc)
    for labels, _, frame in iter_labelled_frames(root, "train", size):
        flat = labels.reshape(-1)
        counts += np.bincount(flat, minlength=label_nc)[:label_nc]
        for c in range(3):
            sums[:, c] += np.bincount(flat, weights=frame[..., c].reshape(-1), minlength=label_nc)[:label_nc]
    global_mean = sums.sum(0) / max(counts.sum(), 1)
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], global_mean)


@torch.no_grad()
def evaluate(export: str | Path, phase: str = "test", data_root: str | None = None) -> dict:
    generator, cfg = load_generator(export)
    root = Path(data_root or cfg.data.root)
    size, label_nc = cfg.data.load_size, cfg.data.label_nc
    means = class_mean_colours(root, size, label_nc)
    model_err, base_err, n = 0.0, 0.0, 0
    for labels, inst, frame in iter_labelled_frames(root, phase, size):
        sem = semantic_input(torch.from_numpy(labels)[None], None if inst is None else torch.from_numpy(inst)[None],
                             label_nc, cfg.data.use_instance)  # [1,C,H,W]
        fake = generator(sem)[0].permute(1, 2, 0).float().numpy() * 0.5 + 0.5  # [H,W,3] in [0,1]
        model_err += float(np.abs(np.clip(fake, 0, 1) - frame).mean())
        base_err += float(np.abs(means[labels] - frame).mean())
        n += 1
    if n == 0:
        raise UserError(f"{root}: no {phase} frames to evaluate")
    return {"export": str(export), "phase": phase, "frames": n, "size": str(size),
            "l1_model": model_err / n, "l1_class_mean_baseline": base_err / n}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("export", help="exported model folder (<train.out_dir>/export)")
    p.add_argument("--phase", default="test", help="held-out phase to evaluate on (default test)")
    p.add_argument("--data-root", default=None, help="dataset root (default: data.root of the exported config)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        print(json.dumps(evaluate(args.export, args.phase, args.data_root)))
    except UserError as e:
        print(f"eval_image_model: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
