"""Flicker benchmark: how fast tools/eval_flicker.py measures a real video, and RAFT flow on sequences.

    python tools/bench.py flicker [--video ../shared/data/vtest.avi] [--size 360x480] [--threads 2]
                                  [--raft-frames 24] [--raft-size 184x240] [--raft-iters-warm 4]

1. The whole video through eval_flicker (DIS medium, forward + backward flow, masks, warp) at --size,
   against two references measured in the same run: decoding alone, and decoding + the DIS calls alone
   (2 per pair, no metric; run as eval_flicker runs them: OPENCV_WORKERS single-threaded calls at a time).
   Prints seconds, frames/s and the metric's value.
2. RAFT small with random weights at --raft-size on the first --raft-frames frames: cold (12 iterations
   per pair, pairs batched, via flow.get_estimator) and warm-started (flow.estimate_video_flow with fewer
   iterations); forward flow only; frames/s and the ratio.

`run(quick)` returns the same figures for tools/bench.py (quick: RAFT on 8 frames).
"""

import argparse
import importlib.util
import io
import json
import platform
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path

import cv2
import numpy as np
import torch

import flow
from flow import ClassicFlow, RaftFlow, rgb_to_grey
from vid2vid.config import parse_size
from vid2vid.data.transforms import apply_image, centre_transform
from vid2vid.video_io import iter_frames

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "vtest.avi"


def load_eval_flicker():
    spec = importlib.util.spec_from_file_location("eval_flicker", ROOT / "tools" / "eval_flicker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resized_frames(video: str, size) -> list[np.ndarray]:
    tf = centre_transform(load_size=size, crop_size=size)  # eval_flicker's resampling rule
    return [apply_image(f, tf) for f in iter_frames(video)]


def dis_calls(greys: list[np.ndarray], workers: int) -> None:
    """DIS medium forward and backward on every pair, `workers` calls at a time, as eval_flicker makes them."""
    local = threading.local()

    def flow(pair: tuple[np.ndarray, np.ndarray]) -> None:
        if not hasattr(local, "dis"):  # one DIS object per thread (they are not thread-safe)
            local.dis = ClassicFlow("dis", preset="medium")
        local.dis.grey_flow(*pair)

    pairs = [p for a, b in zip(greys[:-1], greys[1:]) for p in ((a, b), (b, a))]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(flow, pairs))


def bench_eval(video: str, size) -> dict:
    eval_flicker = load_eval_flicker()
    start = time.perf_counter()
    n = sum(1 for _ in resized_frames(video, size))
    decode_s = time.perf_counter() - start

    start = time.perf_counter()
    greys = [rgb_to_grey(frame) for frame in resized_frames(video, size)]
    with eval_flicker.single_threaded(torch_too=True):
        dis_calls(greys, eval_flicker.OPENCV_WORKERS)
    dis_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "r.json"
        start = time.perf_counter()
        with redirect_stdout(io.StringIO()) as table:
            code = eval_flicker.main([video, "--size", str(size), "--json", str(report)])
        eval_s = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"eval_flicker failed with exit code {code}")
        measured = json.loads(report.read_text())["videos"][0]
    return dict(frames=n, decode_s=decode_s, dis_s=dis_s, eval_s=eval_s, table=table.getvalue().strip(),
                warping_error=measured["warping_error"], valid_fraction=measured["valid_fraction"])


def bench_raft(video: str, size, n_frames: int, warm_iters: int) -> dict:
    frames = [f for _, f in zip(range(n_frames), resized_frames(video, size))]
    clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1  # [T,3,H,W] in [-1,1]
    torch.manual_seed(0)
    model = flow.raft_small().eval()
    estimator = RaftFlow(model, name="raft_small", iters=12)
    results = {}
    start = time.perf_counter()
    for i in range(0, len(clip) - 1, 4):  # cold: 12 iterations, 4 pairs per batch
        n = min(4, len(clip) - 1 - i)
        estimator(clip[i : i + n], clip[i + 1 : i + 1 + n])
    results["cold_s"] = time.perf_counter() - start
    start = time.perf_counter()
    flow.estimate_video_flow(clip, model, iters=12, warm_start=False)
    results["cold_video_s"] = time.perf_counter() - start
    start = time.perf_counter()
    flow.estimate_video_flow(clip, model, iters=warm_iters, warm_start=True)
    results["warm_s"] = time.perf_counter() - start
    results["pairs"] = len(clip) - 1
    return results


def eval_flicker_workers() -> int:
    return load_eval_flicker().OPENCV_WORKERS


def run(quick: bool = True) -> dict:
    """Figures for tools/bench.py: the whole of vtest.avi through eval_flicker at 360x480, 2 threads, and RAFT
    small (random weights) on its first 8 (quick) or 24 frames at 184x240."""
    from bench import figure

    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    size, raft_size, raft_frames = parse_size("360x480"), parse_size("184x240"), 8 if quick else 24
    r = bench_eval(str(DEFAULT_VIDEO), size)
    n = r["frames"]
    name = f"eval_flicker {DEFAULT_VIDEO.name} ({n} frames, {size}, DIS medium)"
    result = {
        f"{name}, time": figure(r["eval_s"], "s", r["dis_s"], "decoding + the DIS calls alone"),
        f"{name}, rate": figure(n / r["eval_s"], "frames/s"),
        f"{name}, E_warp x1e3": figure(r["warping_error"] * 1e3, ""),
        f"{name}, valid fraction": figure(r["valid_fraction"], ""),
        "decoding + resizing alone": figure(r["decode_s"], "s"),
    }
    raft = bench_raft(str(DEFAULT_VIDEO), raft_size, raft_frames, 4)
    frames = raft["pairs"] + 1
    name = f"RAFT small (random weights), {raft['pairs']} pairs at {raft_size}"
    result[f"{name}, cold 12 iterations, estimate_video_flow"] = figure(
        frames / raft["cold_video_s"], "frames/s", frames / raft["cold_s"], "get_estimator, 4 pairs per batch")
    result[f"{name}, warm start 4 iterations"] = figure(frames / raft["warm_s"], "frames/s",
                                                         frames / raft["cold_video_s"], "cold estimate_video_flow")
    result["reference"] = ("eval_flicker against decoding + DIS alone (2 calls per pair on "
                           f"{eval_flicker_workers()} single-threaded workers), same run")
    result["command"] = f"python tools/bench.py flicker --threads 2 --raft-frames {raft_frames}"
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.py flicker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--size", default="360x480")
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads")
    parser.add_argument("--raft-frames", type=int, default=24)
    parser.add_argument("--raft-size", default="184x240")
    parser.add_argument("--raft-iters-warm", type=int, default=4)
    parser.add_argument("--skip-raft", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    size, raft_size = parse_size(args.size), parse_size(args.raft_size)
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}, "
          f"OpenCV {cv2.__version__}, {args.threads} threads; video {args.video}")

    r = bench_eval(args.video, size)
    n = r["frames"]
    print(f"\neval_flicker, DIS medium, {n} frames at {size}:")
    print(f"  decode + resize only        {r['decode_s']:7.2f} s  {n / r['decode_s']:7.1f} frames/s")
    print(f"  + DIS fw and bw flow only   {r['dis_s']:7.2f} s  {n / r['dis_s']:7.1f} frames/s  "
          f"(2 per pair, {eval_flicker_workers()} single-threaded calls at a time)")
    print(f"  eval_flicker (everything)   {r['eval_s']:7.2f} s  {n / r['eval_s']:7.1f} frames/s  "
          f"= {r['eval_s'] / r['dis_s']:.2f} x the decode + DIS time")
    print("  " + r["table"].replace("\n", "\n  "))

    if args.skip_raft:
        return
    r = bench_raft(args.video, raft_size, args.raft_frames, args.raft_iters_warm)
    frames = r["pairs"] + 1
    print(f"\nRAFT small (random weights), forward flow of {r['pairs']} pairs at {raft_size}:")
    print(f"  cold, 12 iters, get_estimator, 4 pairs/batch  {r['cold_s']:7.2f} s  {frames / r['cold_s']:6.2f} frames/s")
    print(f"  cold, 12 iters, estimate_video_flow           {r['cold_video_s']:7.2f} s  "
          f"{frames / r['cold_video_s']:6.2f} frames/s")
    print(f"  warm, {args.raft_iters_warm} iters, estimate_video_flow            {r['warm_s']:7.2f} s  "
          f"{frames / r['warm_s']:6.2f} frames/s  = {r['cold_video_s'] / r['warm_s']:.2f} x cold")
