"""Data pipeline benchmark: preparing datasets and loading clips, each against a reference in the same run.

    python tools/bench.py data [--config configs/demo.yaml] [--clips 120] [--video ../shared/data/vtest.avi]
                               [--video-frames N] [--threads 1]

1. `prepare synthetic` at the config's data.synthetic settings (the demo dataset): seconds, against
   re-writing the same PNG and .flo files (encoding + disk alone).
2. The clip loader at the config's data settings (one process, no workers): clips/s, against reading
   the same files raw (cv2.imread / np.fromfile, no checks, no transforms, no tensors).
3. The same loader with the RGB side stored as H.264 .mp4 files instead of PNG folders.
4. `prepare video` (edges, kmeans:8) on a real video: frames/s, against decoding the video alone.
"""

import argparse
import os
import platform
import shutil
import tempfile
import time
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import torch
from bench import area_table, figure

from vid2vid.config import Size, load_config
from vid2vid.data.prepare import prepare_video
from vid2vid.data.sequences import build_dataset
from vid2vid.data.synthetic import generate_synthetic
from vid2vid.video_io import VideoWriter, iter_frames

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "vtest.avi"


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def rewrite_files(root: Path, out: Path) -> None:
    """The I/O floor of generation: decode nothing new, just encode and write the same files again."""
    images = {p: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in root.rglob("*.png")}
    flows = {p: p.read_bytes() for p in root.rglob("*.flo")}
    start = time.perf_counter()
    for p, image in images.items():
        target = out / p.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), image)
    for p, data in flows.items():
        target = out / p.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return time.perf_counter() - start


def loader_rate(ds, clips: int) -> float:
    ds[0]  # warm-up (opens files, builds video indices)
    start, n, epoch = time.perf_counter(), 0, 0
    while n < clips:
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            ds[i]
            n += 1
        epoch += 1
    return n / (time.perf_counter() - start)


def raw_rate(ds, clips: int) -> float:
    """Read the files a clip needs without any processing."""
    start, n = time.perf_counter(), 0
    while n < clips:
        for i, seq in enumerate(ds.sequences):
            s, step, _ = ds.sample(i)
            idx = [s + k * step for k in range(ds.n_frames)]
            for j in idx:
                cv2.imread(str(seq.labels[j]), cv2.IMREAD_UNCHANGED)
                cv2.imread(str(seq.frames[j]), cv2.IMREAD_UNCHANGED)
                if seq.inst:
                    cv2.imread(str(seq.inst[j]), cv2.IMREAD_UNCHANGED)
            for j in idx[:-1]:
                if seq.flow_fw:
                    np.fromfile(seq.flow_fw[j], np.float32)
                    np.fromfile(seq.flow_bw[j], np.float32)
            n += 1
    return n / (time.perf_counter() - start)


def to_video_dataset(root: Path, out: Path) -> None:
    shutil.copytree(root / "train_A", out / "train_A")
    for seq in sorted((root / "train_B").iterdir()):
        with VideoWriter(out / "train_B" / f"{seq.name}.mp4", fps=10, crf=18) as writer:
            for frame in iter_frames(seq):
                writer.write(frame)


def measure(config: str, clips: int = 120, video: str | None = None, threads: int = 1,
            video_frames: int | None = None) -> dict:
    """Every figure of the module docstring; video_frames: only the first frames of the video for item 4."""
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    cfg = load_config(config)
    syn, data = cfg.data.synthetic, cfg.data
    result = {"threads": threads}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root, wall, cpu = timed(lambda: generate_synthetic(
            tmp / "syn", sequences=syn.sequences, test_sequences=syn.test_sequences, frames=syn.frames,
            size=Size(*syn.size), seed=syn.seed))
        n_frames = (syn.sequences + syn.test_sequences) * syn.frames
        floor = rewrite_files(root, tmp / "rewrite")
        name = f"prepare synthetic ({syn.sequences}+{syn.test_sequences} sequences x {syn.frames} frames, {syn.size})"
        result[name] = figure(wall, "s", floor, "re-writing its PNG/.flo files alone")
        result[f"{name}, CPU time"] = figure(cpu, "s")
        result[f"{name}, rate"] = figure(n_frames / wall, "frames/s")

        cfg.data.root, cfg.data.source = str(root), "folder"
        ds = build_dataset(cfg.data, seed=0)
        rate, raw = loader_rate(ds, clips), raw_rate(ds, clips)
        loader = f"loader ({data.n_frames} frames/clip, {data.crop_size}, flip {data.flip}, flow + instances)"
        result[loader] = figure(rate, "clips/s", raw, "raw reads of the same files")

        to_video_dataset(root, tmp / "video")
        cfg.data.root = str(tmp / "video")
        video_rate = loader_rate(build_dataset(cfg.data, seed=0), clips)
        result["loader, RGB from .mp4 (labels only, no flow)"] = figure(video_rate, "clips/s", rate,
                                                                       "PNG loader with flow")
    if video and Path(video).is_file():
        n = sum(1 for _ in islice(iter_frames(video), video_frames))
        _, decode, _ = timed(lambda: sum(1 for _ in islice(iter_frames(video), video_frames)))
        for labels in ("edges", "kmeans:8"):
            with tempfile.TemporaryDirectory() as tmp:
                _, wall, _ = timed(lambda labels=labels, tmp=tmp: prepare_video(
                    video, Path(tmp) / "out", labels=labels, seq_len=30, test_fraction=0.2, max_frames=video_frames))
            name = f"prepare video {Path(video).name} ({n} frames) --labels {labels}"
            result[name] = figure(wall, "s", decode, "decoding alone")
            result[f"{name}, rate"] = figure(n / wall, "frames/s")
    else:
        result["prepare video"] = f"skipped: {video} not found"
    return result


def run(quick: bool = True) -> dict:
    """Figures for tools/bench.py; quick: 40 clips per loader and the first 200 frames of vtest.avi."""
    clips, frames = (40, 200) if quick else (120, None)
    result = measure(str(ROOT / "configs" / "demo.yaml"), clips, str(DEFAULT_VIDEO), 1, frames)
    result["reference"] = "the I/O floor of each step (re-writing, raw reads, decoding) in the same run"
    result["command"] = f"python tools/bench.py data --clips {clips}" + (f" --video-frames {frames}" if frames else "")
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.py data")
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--clips", type=int, default=120)
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--video-frames", type=int, default=None, help="only the video's first frames")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, threads {args.threads}; "
          f"torch {torch.__version__}, OpenCV {cv2.__version__}")
    print(area_table(measure(args.config, args.clips, args.video, args.threads, args.video_frames)))
