"""Optical flow benchmarks: `python tools/bench.py flow [options]`; `run(quick)` gives tools/bench.py the figures.

1. RAFT: ours (all-pairs and on-demand correlation) vs torchvision, same random weights, N CPU
   threads, 12 iterations. Time: one subprocess per model and size calls the three in turn
   (--repeats rounds after a warm-up call each) and keeps each one's median, so a busy moment of
   the machine falls on all three; it also records the largest flow difference to torchvision
   (equal flow: <= 1e-3 px, as tests/test_flow_raft.py demands). Memory: one subprocess per
   configuration, peak RSS of the first call minus RSS before it (model and inputs loaded).
2. Video mode (with --weights, a RAFT trained by `python -m flow train`, and --data, a dataset with
   exact flow): frames/s and EPE on the test sequences for 12 cold iterations per pair (plain
   model calls), the same through estimate_video_flow, and warm start at fewer iterations (with
   a cold pair every N with --refresh);
   OpenCV DIS presets on the same frames. Each sequence is timed --video-repeats times and the
   fastest run counts (the methods take turns, so a busy moment does not favour one of them).
"""

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMPLS = ("torchvision", "all_pairs", "on_demand")


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def build(model: str, size: str) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """{impl: call(image1, image2, iters)} with torchvision's random weights in ours too, and an image pair."""
    from torchvision.models import optical_flow

    from flow import raft_large, raft_small

    torch.manual_seed(0)
    reference = getattr(optical_flow, model)().eval()
    ours = {"raft_small": raft_small, "raft_large": raft_large}[model]()
    ours.load_state_dict(reference.state_dict())
    ours.eval()

    def with_corr(corr):
        def call(a, b, iters):
            ours.corr = corr
            return ours(a, b, iters=iters)
        return call

    calls = {"torchvision": lambda a, b, iters: reference(a, b, num_flow_updates=iters)[-1],
             "all_pairs": with_corr("all_pairs"), "on_demand": with_corr("on_demand")}
    height, width = (int(v) for v in size.split("x"))
    g = torch.Generator().manual_seed(1)
    image1 = torch.rand(1, 3, height, width, generator=g) * 2 - 1
    return calls, image1, torch.roll(image1, shifts=(3, 5), dims=(2, 3))


def time_worker(model: str, size: str, threads: int, repeats: int, iters: int) -> dict:
    """The three implementations in turn in this process: median seconds per pair, flow difference.
    With one thread the seconds are that thread's CPU time (little changed by other jobs on the machine;
    with more threads, waiting for a descheduled thread costs wall time, so those are wall seconds)."""
    torch.set_num_threads(threads)
    clock = time.thread_time if threads == 1 else time.perf_counter
    calls, image1, image2 = build(model, size)
    times, flows = {impl: [] for impl in IMPLS}, {}
    with torch.inference_mode():
        for impl in IMPLS:  # warm-up, and the flows compared
            flows[impl] = calls[impl](image1, image2, iters)
        for _ in range(repeats):
            for impl in IMPLS:
                start = clock()
                calls[impl](image1, image2, iters)
                times[impl].append(clock() - start)
    return {impl: {"seconds": statistics.median(times[impl]), "all_seconds": times[impl],
                   "max_flow_difference_px": (flows[impl] - flows["torchvision"]).abs().max().item()}
            for impl in IMPLS}


def memory_worker(model: str, size: str, impl: str, threads: int, iters: int) -> dict:
    """Peak RSS increase of the first call of one implementation (alone in this process)."""
    torch.set_num_threads(threads)
    calls, image1, image2 = build(model, size)
    base = rss_bytes()
    with torch.inference_mode():
        calls[impl](image1, image2, iters)
    return {"peak_increase_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base) / 2**20}


def run_worker(args: list[str]) -> dict:
    result = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_models(models, sizes, threads, repeats, iters, memory: bool = True) -> list[dict]:
    rows = []
    for model in models:
        for size in sizes:
            timed = run_worker(["time", model, size, str(threads), str(repeats), str(iters)])
            peaks = {impl: run_worker(["memory", model, size, impl, str(threads), str(iters)])["peak_increase_mib"]
                     for impl in IMPLS} if memory else {}
            tv = timed["torchvision"]["seconds"]
            for impl in IMPLS:
                row = {"model": model, "size": size, "impl": impl, "threads": threads, "iters": iters,
                       "repeats": repeats, **timed[impl], "time_vs_torchvision": timed[impl]["seconds"] / tv}
                line = (f"{model:10s} {size:9s} {impl:12s} {row['seconds']:7.3f} s/pair "
                        f"({row['time_vs_torchvision']:.2f}x tv, "
                        f"max |flow - tv| {row['max_flow_difference_px']:.1e} px)")
                if memory:
                    row["peak_increase_mib"] = peaks[impl]
                    row["memory_vs_torchvision"] = peaks[impl] / max(peaks["torchvision"], 1e-9)
                    line += f"  peak +{peaks[impl]:7.1f} MiB ({row['memory_vs_torchvision']:.2f}x tv)"
                rows.append(row)
                print(line, flush=True)
    return rows


def run(quick: bool = True) -> dict:
    """Figures for tools/bench.py: RAFT small and large at 256x448 (quick; also 512x1024 in full mode), ours
    vs torchvision timed in turn (median of 5 or 9 rounds) with 2 threads (wall time) and with 1 thread (its
    CPU time: the figure a busy machine disturbs least), and peak memory with 2 threads."""
    from bench import figure

    sizes, repeats = (["256x448"], 5) if quick else (["256x448", "512x1024"], 9)
    result = {"iterations": 12}
    for threads in (2, 1):
        rows = bench_models(["raft_small", "raft_large"], sizes, threads, repeats, 12, memory=threads == 2)
        clock = "wall" if threads > 1 else "CPU"
        for model in ("raft_small", "raft_large"):
            for size in sizes:
                group = {r["impl"]: r for r in rows if r["model"] == model and r["size"] == size}
                tv = group["torchvision"]
                for impl in ("all_pairs", "on_demand"):
                    row, name = group[impl], f"{model} {size} ours ({impl})"
                    result[f"{name}, {threads} threads, {clock} time"] = figure(
                        row["seconds"], "s/pair", tv["seconds"], "torchvision, same weights")
                    if threads == 2:
                        result[f"{name}, max abs(flow - torchvision)"] = figure(row["max_flow_difference_px"], "px")
                        result[f"{name}, peak memory increase"] = figure(row["peak_increase_mib"], "MiB",
                                                                         tv["peak_increase_mib"], "torchvision")
    result["reference"] = ("torchvision's RAFT with the same random weights, timed in turn with ours in one "
                           f"process (median of {repeats} rounds); memory: peak RSS increase of the first call, "
                           "one process each")
    result["command"] = (f"python tools/bench.py flow --models raft_small,raft_large --sizes {','.join(sizes)} "
                         f"--threads 2 --repeats {repeats} (and --threads 1 --no-memory)")
    return result


def load_sequences(data: Path, max_sequences: int):
    """Test sequences -> list of (frames [T,3,H,W] in [-1,1], exact forward flows [T-1,2,H,W])."""
    from flow import read_flo
    from vid2vid.video_io import image_files, read_image

    sequences = []
    for seq in sorted((data / "test_B").iterdir())[:max_sequences]:
        frames = image_files(seq)
        flows = [read_flo(data / "test_flow" / seq.name / f"fw_{t:05d}.flo") for t in range(len(frames) - 1)]
        images = torch.from_numpy(np.stack([read_image(p) for p in frames])).permute(0, 3, 1, 2).float() / 127.5 - 1
        sequences.append((images, torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2)))
    return sequences


def bench_video(data: Path, weights: str, threads: int, warm_iters: list[int], max_sequences: int,
                repeats: int = 3, refresh: tuple[int, ...] = (0,), cold_iters: int = 12,
                dis: bool = True) -> list[dict]:
    from flow import estimate_video_flow, get_estimator, load_raft

    torch.set_num_threads(threads)
    sequences = load_sequences(data, max_sequences)
    model = load_raft(weights)
    n_pairs = sum(len(flows) for _, flows in sequences)

    def per_pair(estimator):
        return lambda frames: torch.cat([estimator(frames[t : t + 1], frames[t + 1 : t + 2])
                                         for t in range(frames.shape[0] - 1)])

    methods = {"zero flow": lambda frames: torch.zeros(frames.shape[0] - 1, 2, *frames.shape[2:]),
               "raft_small cold 12 iters (per pair)": per_pair(lambda a, b: model(a, b, iters=12)),
               "video cold 12 iters": lambda f: estimate_video_flow(f, model, iters=12, warm_start=False)}
    for iters in warm_iters:
        for every in refresh:
            name = f"video warm start {iters} iters" + (f", refresh every {every}" if every else "")
            methods[name] = lambda f, k=iters, n=every: estimate_video_flow(f, model, iters=k, refresh_every=n or None,
                                                                          cold_iters=cold_iters)
    for preset in ("dis_ultrafast", "dis_fast", "dis") if dis else ():
        methods[f"OpenCV {preset}"] = per_pair(get_estimator(preset))
    seconds = dict.fromkeys(methods, 0.0)
    epe = dict.fromkeys(methods, 0.0)
    pixels = sum(exact[:, 0].numel() for _, exact in sequences)
    for frames, exact in sequences:
        fastest, flows = dict.fromkeys(methods, float("inf")), {}
        for _ in range(repeats):
            for name, fn in methods.items():  # methods take turns
                start = time.perf_counter()
                with torch.inference_mode():
                    flows[name] = fn(frames)
                fastest[name] = min(fastest[name], time.perf_counter() - start)
        for name in methods:
            seconds[name] += fastest[name]
            epe[name] += (flows[name] - exact).norm(dim=1).sum().item()
    rows = []
    for name in methods:
        row = {"method": name, "pairs": n_pairs, "frames_per_second": n_pairs / seconds[name],
               "epe": epe[name] / pixels}
        print(f"{name:36s} {row['frames_per_second']:8.2f} frames/s  EPE {row['epe']:.3f} px", flush=True)
        rows.append(row)
    reference = rows[1]
    for row in rows:
        row["speed_vs_cold_per_pair"] = row["frames_per_second"] / reference["frames_per_second"]
    return rows


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python tools/bench.py flow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="raft_small,raft_large")
    parser.add_argument("--sizes", default="256x448,512x1024")
    parser.add_argument("--threads", type=int, default=2, help="1: times are the thread's CPU time, else wall time")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds after a warm-up call (median counts)")
    parser.add_argument("--iters", type=int, default=12)
    parser.add_argument("--skip-models", action="store_true", help="only the video benchmark")
    parser.add_argument("--no-memory", action="store_true", help="time only (no peak-memory subprocesses)")
    parser.add_argument("--data", type=Path, help="dataset with exact flow (test_B/, test_flow/) for video mode")
    parser.add_argument("--weights", help="RAFT checkpoint for video mode (e.g. from `python -m flow train`)")
    parser.add_argument("--warm-iters", default="3,4,6")
    parser.add_argument("--sequences", type=int, default=3, help="test sequences used in video mode")
    parser.add_argument("--refresh", default="0", help="refresh_every values for warm start (0: none), e.g. 0,6")
    parser.add_argument("--cold-iters", type=int, default=12, help="updates of warm start's cold pairs")
    parser.add_argument("--no-dis", action="store_true", help="video mode without the OpenCV DIS rows")
    parser.add_argument("--video-repeats", type=int, default=3, help="timed runs per sequence (fastest counts)")
    parser.add_argument("--json", type=Path, help="also write all figures to this file")
    args = parser.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads", flush=True)
    results = {"threads": args.threads}
    if not args.skip_models:
        results["models"] = bench_models(args.models.split(","), args.sizes.split(","), args.threads,
                                         args.repeats, args.iters, memory=not args.no_memory)
    if args.data and args.weights:
        results["video"] = bench_video(args.data, args.weights, args.threads,
                                       [int(v) for v in args.warm_iters.split(",")], args.sequences, args.video_repeats,
                                       tuple(int(v) for v in args.refresh.split(",")), args.cold_iters,
                                       not args.no_dis)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, model_, size_, *rest = sys.argv[2:]
        if kind == "time":
            threads_, repeats_, iters_ = (int(v) for v in rest)
            print(json.dumps(time_worker(model_, size_, threads_, repeats_, iters_)))
        else:
            impl_, threads_, iters_ = rest[0], int(rest[1]), int(rest[2])
            print(json.dumps(memory_worker(model_, size_, impl_, threads_, iters_)))
    else:
        main(sys.argv[1:])
