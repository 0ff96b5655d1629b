"""Spatial-scales benchmark: `python tools/bench.py scales [--config C] [--scales 1,2,3] [--size 128x256]`.

The sequential generator with model.n_scales_spatial 1, 2 and 3 at the SAME output size (the coarsest scale at
1/2^(S-1) of it; all scales active from the start, train.add_scale_every 0), default configs/demo.yaml:
- training: a fresh process per scale count runs 3 training steps (tools/bench_video.training: batch 1,
  --length-frame clips, train.detach_every from the config); its peak resident set and the median step time;
- generator forward: batch 1, eval, no grad, one temporal.step with a full history (per-scale histories made);
- the generator's own memory: in a fresh process, the growth of the peak resident set from after building the
  model to after forward + backward of 2 generated frames (what one chunk of detach_every 2 holds).
The reference of every figure is the one-scale model in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch
from bench import area_table, figure
from bench_video import _time, training

REPO = Path(__file__).resolve().parents[1]

MEMORY_CHILD = r"""
import json, resource, sys, torch
from vid2vid.config import load_config
from vid2vid.models.build import build_generator, semantic_channels
from vid2vid.temporal import start_history, unroll
cfg = load_config(sys.argv[1], sys.argv[2:])
G = build_generator(cfg)
h, w = cfg.data.crop_size
sem, frames = torch.randn(1, 4, semantic_channels(cfg), h, w), torch.randn(1, 2, 3, h, w)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out, _ = unroll(G, start_history("real", sem[:, :2], frames), sem[:, 2:])
(out.final.mean() + out.flow.mean()).backward()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rss_growth_mib": after - before, "params": sum(p.numel() for p in G.parameters())}))
"""


@torch.no_grad()
def forward_time(config: str, overrides: list[str]) -> float:
    """Seconds per generated frame of one temporal.step (batch 1, eval, fp32)."""
    from vid2vid.config import load_config
    from vid2vid.models.build import build_generator, semantic_channels
    from vid2vid.temporal import start_history, step

    cfg = load_config(config, overrides)
    G = build_generator(cfg).eval()
    h, w = cfg.data.crop_size
    c, n = semantic_channels(cfg), cfg.model.n_frames_G
    labels, prev = torch.randn(1, n, c, h, w), torch.randn(1, n - 1, 3, h, w)
    _, history = step(G, start_history("real", labels[:, :-1], prev), labels[:, -1])  # coarse histories exist
    return _time(lambda: step(G, history, labels[:, -1]))


def generator_memory(config: str, overrides: list[str]) -> dict:
    """{rss_growth_mib, params} of the generator alone (MEMORY_CHILD in a fresh process)."""
    proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD, config, *overrides], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(config: str, scales: list[int], size: str, length: int, overrides: list[str] | None = None) -> dict:
    result = {"threads": torch.get_num_threads(), "output size": size}
    runs = {}
    for k in scales:
        args = [*(overrides or []), f"data.crop_size={size}", f"data.load_size={size}",
                f"model.n_scales_spatial={k}", "train.add_scale_every=0"]
        runs[k] = {**training(config, length, args), "forward_s": forward_time(config, args),
                   **generator_memory(config, args)}
        print({k: runs[k]}, file=sys.stderr, flush=True)
    base, against = runs[scales[0]], f"{scales[0]} scale{'s' if scales[0] > 1 else ''}"
    for k, r in runs.items():
        name = f"{k} scale{'s' if k > 1 else ''}"
        result[f"{name}: training, peak RSS"] = figure(r["peak_rss_mib"], "MiB", base["peak_rss_mib"], against)
        result[f"{name}: training, step time per generated frame"] = figure(
            r["step_s_per_frame"], "s", base["step_s_per_frame"], against)
        result[f"{name}: generator forward per frame"] = figure(r["forward_s"], "s", base["forward_s"], against)
        result[f"{name}: generator forward + backward, RSS growth"] = figure(
            r["rss_growth_mib"], "MiB", base["rss_growth_mib"], against)
        result[f"{name}: generator parameters"] = figure(r["params"], "", base["params"], against)
    return result


def run(quick: bool = True) -> dict:
    """Figures for tools/bench.py: configs/demo.yaml, 1 / 2 / 3 scales, 4-frame clips, at 64x128 (quick) or
    128x256."""
    size = "64x128" if quick else "128x256"
    result = measure(str(REPO / "configs" / "demo.yaml"), [1, 2, 3], size, 4)
    result["reference"] = "the one-scale model (configs/demo.yaml, same output size, same run)"
    result["command"] = f"python tools/bench.py scales --size {size}"
    return result


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="bench.py scales")
    p.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    p.add_argument("--scales", default="1,2,3", help="model.n_scales_spatial values, the first is the reference")
    p.add_argument("--size", default="128x256", help="the output (crop) size HxW, the same for every scale count")
    p.add_argument("--length", type=int, default=4, help="frames per training clip")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: PyTorch's choice)")
    p.add_argument("--set", nargs="*", default=[], dest="overrides", help="config overrides")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(area_table(measure(args.config, [int(v) for v in args.scales.split(",")], args.size, args.length,
                             args.overrides)))
