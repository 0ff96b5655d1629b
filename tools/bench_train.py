"""Training benchmark (image models): `python tools/bench.py train [--config C] [--steps N] [--set K=V ...]`.

Measures, at the given config (default configs/demo_image.yaml):
- the trainer's step time (D step + G step through `vid2vid.train.train`, median over steps after two
  warm-up steps, from the run's log.jsonl);
- the reference: one plain forward + backward of G and D on the same batch (no Accelerate, no loss
  bookkeeping), so `step / reference` is the trainer's cost over the bare networks;
- peak memory (CUDA: max allocated; CPU: the process's peak resident set, which includes PyTorch itself);
- inference frames/s of the generator (batch 1, eval mode, no grad) at data.crop_size.
Prints a table of the figures, with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench import area_table, figure

REPO = Path(__file__).resolve().parents[1]


def _median_time(fn, reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def reference_step(cfg, device: torch.device, reps: int) -> float:
    """Seconds for one plain forward + backward of G and D on one batch (fp32)."""
    from vid2vid.data.encoding import semantic_input
    from vid2vid.models.build import build_discriminator, build_generator

    G, D = build_generator(cfg).to(device), build_discriminator(cfg).to(device)
    b, (h, w) = cfg.data.batch_size, cfg.data.crop_size
    labels = torch.randint(0, cfg.data.label_nc, (b, h, w), device=device)
    sem = semantic_input(labels, labels, cfg.data.label_nc, cfg.data.use_instance)
    real = torch.rand(b, 3, h, w, device=device) * 2 - 1

    def step():
        fake = G(sem)
        preds = D(torch.cat([torch.cat([sem, fake.detach()], 1), torch.cat([sem, real], 1)], 0))
        sum(p[-1].mean() for p in preds).backward()
        preds = D(torch.cat([torch.cat([sem, fake], 1), torch.cat([sem, real], 1)], 0))
        sum(p[-1].mean() for p in preds).backward()

    return _median_time(step, reps)


@torch.no_grad()
def inference_fps(cfg, device: torch.device, reps: int) -> float:
    from vid2vid.data.encoding import semantic_input
    from vid2vid.models.build import build_generator

    G = build_generator(cfg).to(device).eval()
    h, w = cfg.data.crop_size
    labels = torch.randint(0, cfg.data.label_nc, (1, h, w), device=device)
    sem = semantic_input(labels, labels, cfg.data.label_nc, cfg.data.use_instance)
    return 1.0 / _median_time(lambda: G(sem), reps)


def trainer_step(cfg_path: str, overrides: list[str], steps: int, data_root: str | None) -> tuple[float, object]:
    """Median seconds per trainer step (steps 3..N) from a real `train()` run into a temporary folder."""
    from vid2vid.config import load_config
    from vid2vid.train import train

    with tempfile.TemporaryDirectory() as tmp:
        extra = [f"train.out_dir={tmp}/run", f"train.max_steps={steps}", "train.log_every=1",
                 f"train.sample_every={steps + 1}", f"train.checkpoint_every={steps + 1}"]
        if data_root:
            extra.append(f"data.root={data_root}")
        cfg = load_config(cfg_path, [*overrides, *extra])
        train(cfg)
        log = [json.loads(x) for x in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines() if '"it_s"' in x]
    return statistics.median(1.0 / r["it_s"] for r in log[2:]), cfg


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    threads = torch.get_num_threads()
    return f"{cpu}; {os.cpu_count()} cores; torch threads {threads}; GPU {gpu}; torch {torch.__version__}"


def current_rss() -> int:
    """Resident set of this process now, in bytes."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def measure(config: str, overrides: list[str] | None = None, steps: int = 10, reps: int = 5,
            data_root: str | None = None, threads: int = 1) -> dict:
    overrides = overrides or []
    if not torch.cuda.is_available():
        torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if torch.cuda.is_available() else current_rss()
    step_s, cfg = trainer_step(config, overrides, steps, data_root)
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    ref_s = reference_step(cfg, device, reps)
    fps = inference_fps(cfg, device, reps)
    kind = "CUDA allocated" if torch.cuda.is_available() else "process RSS, PyTorch included"
    return {
        "config": f"{Path(config).name} {' '.join(overrides)}".strip(), "model": cfg.model.name,
        "batch, size, precision": f"{cfg.data.batch_size}, {cfg.data.crop_size}, {cfg.train.mixed_precision}",
        "trainer step (D + G, median of steps 3..N)": figure(step_s, "s", ref_s, "plain fp32 forward + backward of "
                                                             "G and D on the same batch"),
        f"peak memory ({kind})": figure(peak / 2**20, "MiB", before / 2**20, "before training, imports done"),
        "generator inference, batch 1, eval": figure(fps, "frames/s"),
        "machine": machine(),
    }


def run(quick: bool = True) -> dict:
    """Figures for tools/bench.py; quick: 6 trainer steps, 2 repetitions of the reference timings."""
    steps, reps = (6, 2) if quick else (10, 5)
    result = measure(str(REPO / "configs" / "demo_image.yaml"), steps=steps, reps=reps)
    result.pop("machine")
    result["reference"] = "the bare networks' forward + backward on the same batch (no Accelerate, no losses)"
    result["command"] = f"python tools/bench.py train --steps {steps} --reps {reps}"
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="trainer step time, peak memory and inference frames/s")
    p.add_argument("--config", default=str(REPO / "configs" / "demo_image.yaml"))
    p.add_argument("--steps", type=int, default=10, help="trainer steps (the first two are warm-up)")
    p.add_argument("--reps", type=int, default=5, help="repetitions of the reference and inference timings")
    p.add_argument("--data-root", default=None, help="dataset root (default: the config's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads on CPU (default 1)")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    print(area_table(measure(args.config, args.overrides, args.steps, args.reps, args.data_root, args.threads)))


if __name__ == "__main__":
    main()
