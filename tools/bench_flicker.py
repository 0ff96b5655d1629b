"""Flicker benchmark: how fast tools/eval_flicker.py measures a real video, and RAFT flow on sequences.

    python tools/bench.py flicker [--video ../shared/data/vtest.avi] [--size 360x480] [--threads 2]
                                  [--raft-frames 24] [--raft-size 184x240] [--raft-iters-warm 4]

1. The whole video through eval_flicker (DIS medium, forward + backward flow, masks, warp) at --size,
   against two references measured in the same run: decoding alone, and decoding + the DIS calls alone
   (2 per pair, no metric). Prints seconds and frames/s.
2. RAFT small with random weights at --raft-size on the first --raft-frames frames: cold (12 iterations
   per pair, pairs batched, via flow.get_estimator) and warm-started (flow.estimate_video_flow with fewer
   iterations); forward flow only; frames/s and the ratio.
"""

import argparse
import importlib.util
import io
import platform
import time
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


def bench_eval(video: str, size) -> dict:
    start = time.perf_counter()
    n = sum(1 for _ in resized_frames(video, size))
    decode_s = time.perf_counter() - start

    start = time.perf_counter()
    dis, previous = ClassicFlow("dis", preset="medium"), None
    for frame in resized_frames(video, size):
        grey = rgb_to_grey(frame)
        if previous is not None:
            dis.grey_flow(previous, grey)
            dis.grey_flow(grey, previous)
        previous = grey
    dis_s = time.perf_counter() - start

    eval_flicker = load_eval_flicker()
    start = time.perf_counter()
    with redirect_stdout(io.StringIO()) as table:
        code = eval_flicker.main([video, "--size", str(size)])
    eval_s = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"eval_flicker failed with exit code {code}")
    return dict(frames=n, decode_s=decode_s, dis_s=dis_s, eval_s=eval_s, table=table.getvalue().strip())


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
    print(f"  + DIS fw and bw flow only   {r['dis_s']:7.2f} s  {n / r['dis_s']:7.1f} frames/s")
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
