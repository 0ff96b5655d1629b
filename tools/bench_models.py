"""Models benchmark: instance-wise average pooling of the pix2pixHD feature encoder.

    python tools/bench.py models [--instances 100] [--size 256x512] [--channels 3] [--repeats 20] [--device cpu]

Compares the vectorised `instance_average` (unique + index_add) with a direct reference that loops over
the instances in Python (one mask per instance), on a Voronoi instance map, in the same run; prints
milliseconds per call (median) and the ratio, plus the full feature encoder's forward for context.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from bench import area_table, figure

from vid2vid.config import parse_size
from vid2vid.models import FeatureEncoder
from vid2vid.models.layers import instance_average


def voronoi_instances(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """[1,H,W] map of n instances (ids class*1000 + k) around n random seed points."""
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(n, 2, generator=g) * torch.tensor([h, w])
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    grid = torch.stack([ys, xs], -1).reshape(-1, 2).float()
    nearest = torch.cdist(grid, points).argmin(1).reshape(1, h, w)
    classes = torch.randint(24, 34, (n,), generator=g)
    return classes[nearest] * 1000 + nearest


def loop_reference(features: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(features)
    for b in range(features.shape[0]):
        for i in inst[b].unique():
            mask = inst[b] == i
            out[b][:, mask] = features[b][:, mask].mean(dim=1, keepdim=True)
    return out


def median_ms(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]} ({len(names)} cores)" if names else platform.processor() or "cpu"
    except OSError:
        return platform.processor() or "cpu"


def measure(instances: int = 100, size: str = "256x512", channels: int = 3, repeats: int = 20, threads: int = 1,
            device: str = "cpu") -> dict:
    torch.set_num_threads(threads)
    device = torch.device(device)
    size = parse_size(size)
    inst = voronoi_instances(instances, size.h, size.w).to(device)
    features = torch.randn(1, channels, size.h, size.w, device=device)
    assert torch.allclose(instance_average(features, inst), loop_reference(features, inst), atol=1e-5)
    fast = median_ms(lambda: instance_average(features, inst), repeats, device)
    slow = median_ms(lambda: loop_reference(features, inst), max(3, repeats // 4), device)
    encoder = FeatureEncoder(3, channels, ngf=16, n_downsample=4).to(device)
    image = torch.rand(1, 3, size.h, size.w, device=device) * 2 - 1
    with torch.no_grad():
        enc = median_ms(lambda: encoder(image, inst), max(3, repeats // 4), device)
    name = f"instance_average, {instances} instances, {size}, {channels} channels"
    return {"threads": torch.get_num_threads(),
            name: figure(fast, "ms", slow, "per-instance Python loop"),
            "the same pooling within the feature encoder": figure(fast, "ms", enc, "whole encoder forward: ngf 16, "
                                                                   "4 downsamplings, incl. pooling")}


def run(quick: bool = True) -> dict:
    """Figures for tools/bench.py; quick: 8 repeats instead of 20."""
    repeats = 8 if quick else 20
    result = measure(repeats=repeats)
    result["reference"] = "the direct per-instance loop (one mask per instance) on the same map, same run"
    result["command"] = f"python tools/bench.py models --repeats {repeats}"
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.py models", description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--size", default="256x512")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    result = measure(args.instances, args.size, args.channels, args.repeats, args.threads, args.device)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else cpu_name()
    print(f"machine: {name}, torch {torch.__version__}, threads {result['threads']}")
    print(area_table(result))


if __name__ == "__main__":
    main()
