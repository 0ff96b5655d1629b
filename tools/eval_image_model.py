"""Does an exported image model beat the per-class mean-colour baseline on held-out sequences?

    python tools/eval_image_model.py runs/demo_image/export [--phase test] [--data-root DIR]
        [--feature-cluster K | --seed N | --style IMAGE]   (models trained with an encoder)

Metric: mean absolute error between generated and real frames, both in [0, 1], over every frame of
every `<phase>` sequence at data.load_size. Baseline: every pixel predicted as the mean training
colour of its label id (computed over all `train` frames; ids never seen in training get the mean
colour of all training pixels). Prints one JSON line with both numbers.

A model trained with an encoder (pix2pixHD with model.feat_num > 0, SPADE with model.use_vae) takes its
features from the export's feature bank (--feature-cluster K, or a random centre per instance from --seed N)
or z ~ N(0, I) from --seed N, or either from a style image (--style IMAGE); see vid2vid.checkpoint.Export.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from vid2vid.checkpoint import add_generation_options, generation_options, load_export
from vid2vid.config import Size
from vid2vid.data.sequences import SequenceFiles, read_ids, read_labels, scan
from vid2vid.data.transforms import apply_ids, apply_image, centre_transform
from vid2vid.errors import UserError, run_cli
from vid2vid.video_io import iter_frames, read_image


def _rgb_frames(seq: SequenceFiles) -> Iterator[np.ndarray]:
    return iter_frames(seq.frames) if seq.is_video else (read_image(path) for path in seq.frames)


def iter_labelled_frames(root: Path, phase: str, size: Size, label_nc: int):
    """(labels [H,W] int64, inst [H,W] int64 or None, frame [H,W,3] float32 in [0,1]) for every frame
    of every sequence of a phase (found by the dataset scanner), resized to size by the dataset transforms
    (labels and instances nearest, frames area when shrinking)."""
    tf = centre_transform(load_size=size, crop_size=size)
    for seq in scan(root, phase):
        for i, frame in enumerate(_rgb_frames(seq)):
            labels = apply_ids(read_labels(seq.labels[i], label_nc), tf).astype(np.int64)
            inst = None if seq.inst is None else apply_ids(read_ids(seq.inst[i], "instance"), tf).astype(np.int64)
            yield labels, inst, apply_image(frame, tf).astype(np.float32) / 255


def class_mean_colours(root: Path, size, label_nc: int) -> np.ndarray:
    """[label_nc, 3] mean training colour per label id in [0,1] (global mean for unseen ids)."""
    sums, counts = np.zeros((label_nc, 3)), np.zeros(label_nc)
    for labels, _, frame in iter_labelled_frames(root, "train", size, label_nc):
        flat = labels.reshape(-1)
        counts += np.bincount(flat, minlength=label_nc)[:label_nc]
        for c in range(3):
            sums[:, c] += np.bincount(flat, weights=frame[..., c].reshape(-1), minlength=label_nc)[:label_nc]
    global_mean = sums.sum(0) / max(counts.sum(), 1)
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], global_mean)


@torch.no_grad()
def evaluate(export: str | Path, phase: str = "test", data_root: str | None = None, *,
             style: torch.Tensor | None = None, cluster: int | None = None, seed: int | None = 0) -> dict:
    """The report of one export on a phase; style / cluster / seed: see vid2vid.checkpoint.Export.generate."""
    model = load_export(export)
    cfg = model.cfg
    root = Path(data_root or cfg.data.root)
    size, label_nc = cfg.data.load_size, cfg.data.label_nc
    means = class_mean_colours(root, size, label_nc)
    model_err, base_err, n = 0.0, 0.0, 0
    for labels, inst, frame in iter_labelled_frames(root, phase, size, label_nc):
        fake = model.generate(torch.from_numpy(labels)[None], None if inst is None else torch.from_numpy(inst)[None],
                              style=style, cluster=cluster, seed=seed)  # [1,3,H,W]
        fake = fake[0].permute(1, 2, 0).float().numpy() * 0.5 + 0.5  # [H,W,3] in [0,1]
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
    add_generation_options(p)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    return run_cli("eval_image_model", lambda: print(json.dumps(
        evaluate(args.export, args.phase, args.data_root, **generation_options(args)))))


if __name__ == "__main__":
    sys.exit(main())
