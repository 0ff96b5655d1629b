"""Render benchmark: seconds per frame of VideoRenderer.step, and peak memory against the video length.

    python tools/bench.py render [--size 256x512] [--frames 10] [--threads 1] [--device cpu] [--original-code DIR]
                                 [--modes eager,channels_last,compile,bf16,bf16_channels_last,bf16_compile]
                                 [--warp-features] [--quick]
    python tools/bench.py render --export RUN/export --sequence DATA/test_A/seq_0000 [--first-frame SPEC]

Speed: the reference generator configuration (35 labels + instance edge, n_frames_G 3, ngf 64, 3 downsamplings,
9 residual blocks, foreground branch, instance norm; warp_features off as in the original unless --warp-features)
with random weights, rendering moving synthetic labels at --size: median seconds per generated frame (after the
seed frames and warm-up) in each mode: fp32 or bf16 autocast, each eager, channels-last, or channels-last +
torch.compile. Each mode's frames are compared with the first mode's (PSNR): with random weights
that figure is a worst case (an untrained recurrence amplifies rounding); --export and --sequence measure a
trained model on real labels instead. bf16 runs only where it is native (CUDA, or a CPU with AVX512-BF16 / AMX);
elsewhere torch emulates it (~100x slower) and the row says "emulated, skipped".

Memory: peak RSS of `vid2vid render`'s code path (render_video to an mp4) in a fresh process for a short and a
10x longer video of a tiny model; streaming keeps them about equal.

--quick: a tiny model at 64x128 and 60 vs 200 frames of 32x32 for the memory rows (a check that the benchmark
runs, not figures to record). `python tools/bench.py` (all areas) uses run(quick=True) instead: the reference
generator at 128x256, 3 timed frames per mode, 60 vs 300 frames for the memory rows, 2 threads.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench import area_table, figure
from bench_models import cpu_name
from bench_original import ENV, original_code, original_rows

from vid2vid.checkpoint import export_generator
from vid2vid.config import Size, from_dict, parse_size
from vid2vid.eval.metrics import psnr
from vid2vid.models.build import build_generator
from vid2vid.render import VideoRenderer
from vid2vid.render.renderer import cpu_has_fast_bf16

REFERENCE = {"ngf": 64, "n_downsample": 3, "n_blocks": 9, "n_frames_G": 3, "use_fg": True, "norm": "instance",
             "warp_mode": "bilinear"}
TINY = {"ngf": 8, "n_downsample": 2, "n_blocks": 2, "n_frames_G": 3, "use_fg": True, "norm": "instance",
        "warp_mode": "bilinear"}


def make_export(out: Path, model: dict, size: Size, warp_features: bool = False) -> Path:
    """A random-weight vid2vid export (35 labels + instance edge) of the given model settings."""
    cfg = from_dict({"data": {"label_nc": 35, "use_instance": True, "load_size": str(size), "crop_size": str(size)},
                     "model": {"name": "vid2vid", "first_frame": "zeros", "warp_features": warp_features, **model}})
    torch.manual_seed(0)
    return export_generator(build_generator(cfg).state_dict(), cfg, out)


def moving_labels(t: int, size: Size) -> tuple[np.ndarray, np.ndarray]:
    """Frame t of a scene of horizontal bands with a moving car-like block: (labels [H,W], instances [H,W])."""
    h, w = size
    labels = np.repeat((np.arange(h) * 6 // h + 7)[:, None], w, axis=1).astype(np.int64)  # road/building bands
    x0 = (t * max(1, w // 40)) % max(1, w - w // 4)
    labels[h // 2: h // 2 + h // 5, x0: x0 + w // 4] = 26  # a car (foreground id)
    inst = labels * 1000
    inst[labels == 26] += 1
    return labels, inst


MODES = {  # name -> (precision, channels_last, compile)
    "eager": ("fp32", False, False),
    "channels_last": ("fp32", True, False),
    "compile": ("fp32", True, True),
    "bf16": ("bf16", False, False),
    "bf16_channels_last": ("bf16", True, False),
    "bf16_compile": ("bf16", True, True),
}


def sequence_labels(sequence: Path):
    """t -> (labels [H,W], instances [H,W] or None): frame t (cyclically) of a dataset sequence (<root>/<phase>_A/<seq>,
    with its <phase>_inst/<seq> instances)."""
    from vid2vid.render.inputs import iter_labels, open_input

    frames = list(iter_labels(open_input(sequence), label_nc=256))  # ids are checked by the renderer
    return lambda t: frames[t % len(frames)]


def render_timed(export: Path, mode: str, frames: int, device: str, source, first_frame: str = "zeros"):
    """(median wall time of one generated frame, the timed frames uint8 [T,H,W,3]). Excluded from the timing: the
    seed frames, the raw-only frames while a zeros history fills (another graph for torch.compile) and 2 warm-ups
    of the composed frame."""
    precision, channels_last, compile = MODES[mode]
    renderer = VideoRenderer(export, first_frame=first_frame, device=device, precision=precision,
                             channels_last=channels_last, compile=compile)
    warmup = 2 * renderer.n_seed + 2
    times, outputs = [], []
    for t in range(frames + warmup):
        labels, inst = source(t)
        if renderer.device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        outputs.append(renderer.step(labels, inst))  # includes the copy back to uint8 on the host
        times.append(time.perf_counter() - began)
    return statistics.median(times[warmup:]), np.stack(outputs[warmup:])


def bf16_skip_reason(device: str) -> str | None:
    if device.startswith("cuda"):
        return None
    return None if cpu_has_fast_bf16() else "emulated, skipped (no AVX512-BF16/AMX on this CPU)"


def peak_rss_mb(export: Path, n_frames: int, size: Size, tmp: Path) -> float:
    """Peak RSS (MB) of a fresh process rendering n_frames label PNGs to an mp4 through render_video."""
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(export), str(n_frames), str(size), str(tmp)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def rss_child(export: str, n_frames: int, size: str, tmp: str) -> None:
    """Child process of peak_rss_mb: write the labels, render them, print ru_maxrss in MB."""
    from vid2vid.render import render_video
    from vid2vid.video_io import write_image

    size, folder = parse_size(size), Path(tmp) / f"labels_{n_frames}"
    folder.mkdir(exist_ok=True)
    for t in range(n_frames):
        write_image(folder / f"{t:05d}.png", moving_labels(t, size)[0].astype(np.uint8))
    render_video(export, folder, Path(tmp) / f"out_{n_frames}.mp4", first_frame="zeros", device="cpu",
                 overwrite=True, progress=False)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def speed_rows(export: Path, frames: int, modes: list[str], device: str, source, first_frame: str = "zeros") -> dict:
    """s/frame of each mode against the first mode that ran, and each mode's PSNR against that mode's frames."""
    rows, first = {}, None
    for mode in modes:
        skip = bf16_skip_reason(device) if MODES[mode][0] == "bf16" else None
        if skip:
            rows[f"{mode}, s/frame"] = skip
            continue
        try:
            spf, out = render_timed(export, mode, frames, device, source, first_frame)
        except Exception as e:  # e.g. torch.compile without a working C++ compiler: the other modes still count
            rows[f"{mode}, s/frame"] = f"failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
            continue
        first = first or (mode, spf, out)
        rows[f"{mode}, s/frame (median of {frames})"] = figure(spf, "s", first[1], f"{first[0]}, same run")
        if mode != first[0]:
            db = psnr(torch.from_numpy(out), torch.from_numpy(first[2]), (0, 255))
            rows[f"{mode}, PSNR of its frames vs {first[0]}'s"] = figure(round(db, 2), "dB")
    return rows


def measure(size: Size, model: dict, frames: int, modes: list[str], rss_size: Size, rss_frames: tuple[int, int],
            device: str = "cpu", threads: int = 1, warp_features: bool = False,
            original: Path | None = None) -> dict:
    """Speed of each mode, the original's generator beside ours (when its code is given and the model is the
    original's: no warp_features, bilinear warp; on a CPU) and the memory rows."""
    torch.set_num_threads(threads)
    result = {"threads": threads, "model": f"{model}, warp_features {warp_features}, {size}, random weights"}
    with tempfile.TemporaryDirectory() as tmp:
        export = make_export(Path(tmp) / "model", model, size, warp_features)
        result.update(speed_rows(export, frames, modes, device, lambda t: moving_labels(t, size)))
        if not warp_features and model.get("warp_mode") == "bilinear" and device == "cpu":
            result.update(original_rows(export, original, frames, lambda t: moving_labels(t, size)))
        tiny = make_export(Path(tmp) / "tiny", TINY, rss_size)
        short, long = rss_frames
        rss = {n: peak_rss_mb(tiny, n, rss_size, Path(tmp)) for n in (short, long)}
        result[f"peak RSS of render_video, tiny model at {rss_size}, {long} frames"] = figure(
            rss[long], "MB", rss[short], f"{short} frames")
    return result


def measure_trained(export: Path, sequence: Path, first_frame: str, frames: int, modes: list[str], device: str,
                    threads: int) -> dict:
    """The modes on a trained export rendering a dataset sequence: speed and PSNR against the first mode."""
    torch.set_num_threads(threads)
    result = {"threads": threads, "model": f"{export} on {sequence}, first frames {first_frame}"}
    result.update(speed_rows(export, frames, modes, device, sequence_labels(sequence), first_frame))
    return result


def run(quick: bool = True) -> dict:
    """Figures for tools/bench.py. quick: the reference generator at 128x256, 3 timed frames per mode, memory
    at 60 vs 300 frames (CLI: --size 128x256 --frames 3 --rss-frames 60,300); full: the CLI's defaults."""
    size, frames, rss_frames = (Size(128, 256), 3, (60, 300)) if quick else (Size(256, 512), 10, (60, 600))
    modes = list(MODES)
    result = measure(size, REFERENCE, frames, modes, Size(64, 64), rss_frames, threads=2,
                     original=original_code(None))
    result["reference"] = "eager fp32 rendering of the same model in the same run; memory: the shorter video"
    result["command"] = (f"python tools/bench.py render --threads 2 --size {size} --frames {frames} "
                         f"--rss-frames {rss_frames[0]},{rss_frames[1]}")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.py render", description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="256x512")
    parser.add_argument("--frames", type=int, default=10, help="timed frames per mode")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of: {', '.join(MODES)}")
    parser.add_argument("--export", type=Path, help="a trained export to time and compare instead of random weights")
    parser.add_argument("--sequence", type=Path, help="with --export: the dataset sequence it renders")
    parser.add_argument("--first-frame", default="zeros", help="with --export: its first frames (as vid2vid render)")
    parser.add_argument("--warp-features", action="store_true", help="the repo's default (off = the original)")
    parser.add_argument("--rss-frames", default=None, help="the two video lengths of the memory rows (default 60,600)")
    parser.add_argument("--original-code", type=Path, default=None,
                        help=f"a checkout of NVIDIA/vid2vid: time its generator beside ours (default ${ENV})")
    parser.add_argument("--quick", action="store_true", help="tiny model and sizes: check that it runs")
    parser.add_argument("--rss-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.rss_child:
        return rss_child(args.rss_child[0], int(args.rss_child[1]), *args.rss_child[2:])
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)}; choose from {', '.join(MODES)}")
    if args.export is not None:
        if args.sequence is None:
            parser.error("--export needs --sequence (a dataset sequence folder such as data/x/test_A/seq_0000)")
        print(area_table(measure_trained(args.export, args.sequence, args.first_frame, args.frames, modes,
                                         args.device, args.threads)))
        return None
    size, model, rss_size = parse_size(args.size), REFERENCE, Size(64, 64)
    if args.quick:
        size, model, rss_size, args.frames = Size(64, 128), TINY, Size(32, 32), 3
    rss_frames = args.rss_frames or ("60,200" if args.quick else "60,600")
    print(f"render benchmark on {cpu_name() if args.device == 'cpu' else args.device}, {args.threads} thread(s), "
          f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    result = measure(size, model, args.frames, modes, rss_size,
                     tuple(int(n) for n in rss_frames.split(",")), args.device, args.threads, args.warp_features,
                     original_code(args.original_code))
    print(area_table(result))


if __name__ == "__main__":
    main(sys.argv[1:])
