"""Video-model benchmark: `python tools/bench.py video [--config C] [--sizes 128x256,256x512] [--lengths 4,8,16]`.

Measures, for the sequential generator of the config (default configs/demo.yaml):
- generator forward time per frame (batch 1, eval mode, no grad, one temporal.step with a full history)
  at each size, fp32 and, where the CPU has native bf16 (AVX512-BF16 or AMX), bf16 autocast; the
  reference in the same run is the per-frame pix2pixHD generator of the same width (configs/demo_image.yaml);
- training: a fresh process per clip length runs 3 training steps (batch 1, train.detach_every from the
  config) and reports its peak resident set and the median step time per generated frame; the figure of
  interest is peak RSS at the longest clip over the shortest (truncated backpropagation keeps it flat).
Prints one JSON object with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench import area_table, figure

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import torch
from vid2vid.config import load_config
from vid2vid.train import train
cfg = load_config(sys.argv[1], sys.argv[3:])
train(cfg)
log = [json.loads(l) for l in open(sys.argv[2] + "/log.jsonl") if '"it_s"' in l]
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "step_s": [1 / r["it_s"] for r in log]}))
"""


def native_bf16() -> bool:
    """True on CUDA or a CPU that runs bf16 natively (else autocast emulates it, ~100x slower here)."""
    from vid2vid.render.renderer import cpu_has_fast_bf16

    return torch.cuda.is_available() or cpu_has_fast_bf16()


def _time(fn, reps: int = 3) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@torch.no_grad()
def forward_times(config: str, size: tuple[int, int], bf16: bool) -> dict:
    from vid2vid.config import load_config
    from vid2vid.models.build import build_generator, semantic_channels
    from vid2vid.temporal import start_history, step

    cfg = load_config(config)
    image_cfg = load_config(REPO / "configs" / "demo_image.yaml")
    G, Gi = build_generator(cfg).eval(), build_generator(image_cfg).eval()
    h, w = size
    c, n = semantic_channels(cfg), cfg.model.n_frames_G
    labels, prev = torch.randn(1, n, c, h, w), torch.randn(1, n - 1, 3, h, w)
    history = start_history("real", labels[:, :-1], prev)
    out = {}
    for name, enabled in (("fp32", False), ("bf16", True)):
        if enabled and not bf16:
            out[name] = "skipped: bf16 is emulated on this CPU (no AVX512-BF16/AMX)"
            continue
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            video = _time(lambda: step(G, history, labels[:, -1]))
            image = _time(lambda: Gi(labels[:, -1]))
        out[name] = {"video_s_per_frame": video, "per_frame_model_s": image, "ratio": video / image}
    return out


def training(config: str, length: int, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        args = [f"train.out_dir={tmp}", f"data.n_frames={length}", f"data.max_frames={length}",
                "data.batch_size=1", "train.max_steps=3",
                "train.log_every=1", "train.sample_every=1000", "train.checkpoint_every=1000",
                *overrides]
        proc = subprocess.run([sys.executable, "-c", CHILD, config, tmp, *args], capture_output=True, text=True,
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    from vid2vid.config import load_config

    cfg = load_config(config, args)
    generated = length - (cfg.model.n_frames_G - 1)
    return {"peak_rss_mib": result["peak_rss_mib"],
            "step_s_per_frame": statistics.median(result["step_s"][1:] or result["step_s"]) / generated}


def measure(config: str, sizes: list[tuple[int, int]], lengths: list[int], threads: int = 0,
            overrides: list[str] | None = None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    bf16 = native_bf16()
    result = {"threads": torch.get_num_threads(), "native bf16": bf16}
    for h, w in sizes:
        for precision, r in forward_times(config, (h, w), bf16).items():
            name = f"generator forward, batch 1, eval, {h}x{w}, {precision}"
            result[name] = r if isinstance(r, str) else figure(
                r["video_s_per_frame"], "s/frame", r["per_frame_model_s"], "per-frame pix2pixHD, same width")
    runs = {}
    for length in lengths:
        runs[length] = training(config, length, overrides or [])
        print(json.dumps({length: runs[length]}), file=sys.stderr, flush=True)
    shortest = runs[min(lengths)]
    for length, r in runs.items():
        against = f"{min(lengths)}-frame clips"
        result[f"training, {length}-frame clips, peak RSS"] = figure(r["peak_rss_mib"], "MiB",
                                                                     shortest["peak_rss_mib"], against)
        result[f"training, {length}-frame clips, step time per generated frame"] = figure(
            r["step_s_per_frame"], "s", shortest["step_s_per_frame"], against)
    return result


def run(quick: bool = True) -> dict:
    """Figures for tools/bench.py; quick: the forward at 128x256 only, training at 4, 8 and 16 frames."""
    sizes = [(128, 256)] if quick else [(128, 256), (256, 512)]
    result = measure(str(REPO / "configs" / "demo.yaml"), sizes, [4, 8, 16])
    result["reference"] = ("forward: the per-frame pix2pixHD generator of configs/demo_image.yaml (same width); "
                           "training (configs/demo.yaml, batch 1, a fresh process per length, 3 steps): the "
                           "shortest clip")
    result["command"] = "python tools/bench.py video" + (" --sizes 128x256" if quick else "")
    return result


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="bench.py video")
    p.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    p.add_argument("--sizes", default="128x256,256x512")
    p.add_argument("--lengths", default="4,8,16")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: PyTorch's choice)")
    p.add_argument("--set", nargs="*", default=[], dest="overrides", help="config overrides for training")
    args = p.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    lengths = [int(v) for v in args.lengths.split(",")]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(area_table(measure(args.config, sizes, lengths, args.threads, args.overrides)))
