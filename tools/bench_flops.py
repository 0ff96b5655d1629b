"""Generator FLOPs per frame against this machine's measured throughput: `python tools/bench.py flops [options]`.

    python tools/bench.py flops [--threads 0] [--repeats 3] [--device cpu] [--no-street]

FLOPs: torch.utils.flop_counter.FlopCounterMode over one generated frame (batch 1, eval, no grad) of
  - the demo video generator (configs/demo.yaml) at 128x256 and the street video generator (configs/street.yaml,
    ngf 128) at 256x512: one temporal.step with a full history (after one step, so warped features are in);
  - the per-frame pix2pixHD generator of configs/demo_image.yaml at 128x256.
FlopCounterMode (on the meta device: shapes only) counts 2 FLOPs per multiply-add of convolutions and matmuls,
which is all of these generators' FLOPs; the warp (grid_sample), norms, padding and activations are not counted
(about 15% of a step's time, see BENCHMARKS.md's render profile).
Throughput, same process and threads: a 2048x2048 fp32 matmul (the machine's practical peak) and a 3x3
convolution, 128 -> 128 channels at 64x128. A generator's achieved GFLOP/s = its FLOPs / its median forward time;
the figures are that as a fraction of the matmul figure (how far from the hardware limit).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from bench import figure
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
GENERATORS = {  # name: (config, size HxW)
    "demo video generator": ("configs/demo.yaml", (128, 256)),
    "per-frame pix2pixHD (demo_image)": ("configs/demo_image.yaml", (128, 256)),
    "street video generator": ("configs/street.yaml", (256, 512)),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of fn() over repeats calls (the caller has warmed it up)."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(device: torch.device, repeats: int, n: int = 2048) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    return 2 * n**3 / timed(lambda: a @ b, device, repeats) / 1e9


def conv_gflops(device: torch.device, repeats: int, channels: int = 128, size=(64, 128)) -> float:
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device)
    x = torch.randn(1, channels, *size, device=device)
    with torch.no_grad():
        conv(x)
        seconds = timed(lambda: conv(x), device, repeats)
    return 2 * channels * channels * 9 * size[0] * size[1] / seconds / 1e9


def one_frame(config: str, size: tuple[int, int], device: torch.device):
    """(generator, a function that generates one frame) at size, random inputs, called once already (a warm-up);
    a video generator gets a full history with the previous frame's features (that first step made them)."""
    from vid2vid.config import load_config
    from vid2vid.families import is_sequential
    from vid2vid.models.build import build_generator, semantic_channels
    from vid2vid.temporal import start_history, step

    cfg = load_config(ROOT / config)
    torch.manual_seed(0)
    G = build_generator(cfg).to(device).eval()
    h, w = size
    c = semantic_channels(cfg)
    if not is_sequential(cfg):
        sem = torch.randn(1, c, h, w, device=device)
        with torch.no_grad():
            G(sem)
        return G, lambda: G(sem)
    n = cfg.model.n_frames_G
    labels, prev = torch.randn(1, n + 1, c, h, w, device=device), torch.randn(1, n - 1, 3, h, w, device=device)
    with torch.no_grad():
        _, history = step(G, start_history("real", labels[:, : n - 1], prev), labels[:, n - 1])
    return G, lambda: step(G, history, labels[:, n])


def flop_parts(G: torch.nn.Module, counts: dict, total: float) -> tuple[str, str]:
    """Where the FLOPs are: the three largest parts below the first module that splits them, and the largest
    single convolution, each with its share of the total."""
    root = type(G).__name__
    flops = {name: sum(ops.values()) for name, ops in counts.items() if name.startswith(root)}

    def children(node: str) -> dict:
        """The nearest counted modules below node (containers that are never called have no entry)."""
        below = [n for n in flops if n.startswith(node + ".")]
        return {n: flops[n] for n in below if not any(n.startswith(m + ".") for m in below)}

    def describe(name: str) -> str:
        return f"{name.removeprefix(root + '.')} ({type(G.get_submodule(name.removeprefix(root + '.'))).__name__})"

    node = root
    while len(children(node)) == 1:
        node = next(iter(children(node)))
    parts = sorted(children(node).items(), key=lambda kv: -kv[1])[:3]
    convs = {n: f for n, f in flops.items()
             if n != root and isinstance(G.get_submodule(n.removeprefix(root + ".")), torch.nn.modules.conv._ConvNd)}
    name = max(convs, key=convs.get)
    conv = G.get_submodule(name.removeprefix(root + "."))
    kernel = "x".join(map(str, conv.kernel_size))
    return (", ".join(f"{describe(n)} {f / total:.0%}" for n, f in parts),
            f"{name.removeprefix(root + '.')} ({conv.in_channels}->{conv.out_channels}, {kernel}) "
            f"{convs[name] / total:.0%}")


def count_and_time(config: str, size: tuple[int, int], device: torch.device, repeats: int) -> dict:
    """FLOPs of one frame (counted on the meta device: shapes only, no arithmetic), where they are, the median
    seconds of a frame on device, and the matmul peak measured just before the timing (a busy machine changes
    between measurements)."""
    G, frame = one_frame(config, size, torch.device("meta"))
    counter = FlopCounterMode(display=False, depth=16)
    with torch.no_grad(), counter:
        frame()
    total = counter.get_total_flops()
    parts, conv = flop_parts(G, counter.get_flop_counts(), total)
    G, frame = one_frame(config, size, device)
    with torch.no_grad():
        peak = matmul_gflops(device, 3)
        seconds = timed(frame, device, repeats)
    return {"gflop": total / 1e9, "seconds": seconds, "parameters": sum(p.numel() for p in G.parameters()),
            "peak": peak, "parts": parts, "largest conv": conv}


def measure(device: str = "cpu", threads: int = 0, repeats: int = 3, street: bool = True,
            street_repeats: int | None = None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device)
    peak = matmul_gflops(device, max(repeats, 5))
    conv = conv_gflops(device, max(repeats, 5))
    result = {"threads": torch.get_num_threads(),
              "matmul 2048^2 fp32": figure(peak, "GFLOP/s"),
              "conv 3x3 128->128 at 64x128 fp32": figure(conv, "GFLOP/s", peak, "matmul")}
    for name, (config, size) in GENERATORS.items():
        if name.startswith("street") and not street:
            continue
        reps = (street_repeats or repeats) if name.startswith("street") else repeats
        r = count_and_time(config, size, device, reps)
        result[f"{name}, {size[0]}x{size[1]}"] = {
            "FLOPs per frame": figure(r["gflop"], "GFLOP"),
            "parameters": figure(r["parameters"] / 1e6, "M"),
            "forward": figure(r["seconds"], "s/frame"),
            "achieved": figure(r["gflop"] / r["seconds"], "GFLOP/s", r["peak"], "matmul, measured just before"),
            "largest parts (share of FLOPs)": r["parts"],
            "largest convolution": r["largest conv"]}
    return result


def run(quick: bool = True) -> dict:
    """Figures for tools/bench.py: all three generators; quick times the street generator once."""
    result = measure(repeats=3, street_repeats=1 if quick else 3)
    result["reference"] = ("the 2048x2048 fp32 matmul in the same process and threads (the practical peak); "
                           "FLOPs from torch.utils.flop_counter (2 per multiply-add, convolutions only)")
    result["command"] = "python tools/bench.py flops" + (" --street-repeats 1" if quick else "")
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.py flops", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: PyTorch's choice)")
    p.add_argument("--repeats", type=int, default=3, help="timed forwards per generator (median)")
    p.add_argument("--street-repeats", type=int, default=None, help="timed forwards of the street generator")
    p.add_argument("--no-street", action="store_true", help="skip the street generator (~2 TFLOP per frame)")
    args = p.parse_args(argv)
    from bench import area_table, cpu_model

    print(f"machine: {cpu_model()}, torch {torch.__version__}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, device {args.device}")
    print(area_table(measure(args.device, args.threads, args.repeats, not args.no_street, args.street_repeats)))


if __name__ == "__main__":
    main(sys.argv[1:])
