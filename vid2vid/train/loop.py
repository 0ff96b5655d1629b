"""The training loop: `train(cfg, resume=None)` sets up data, networks and state, then runs steps until
train.max_steps (or the time budget, or a stop signal), logging, sampling and checkpointing between them.

Run folder (train.out_dir): config.yaml, log.jsonl, samples/step_XXXXXXX.png (.mp4 for the video model),
checkpoints/step_XXXXXXX/ (one safetensors file per network and per optimizer, named by network and group
name; trainer_state.json; RNG per process), export/ (config.yaml + generator.safetensors [+ encoder.safetensors,
feature_bank.safetensors for the image models' encoders]).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from flow import atomic_path
from vid2vid import checkpoint as ckpt
from vid2vid.checkpoint import build_first_frames, build_teacher
from vid2vid.config import Config, save_config
from vid2vid.data.check import check_dataset
from vid2vid.data.sampler import ClipSampler, endless_batches, make_loader
from vid2vid.data.sequences import build_dataset
from vid2vid.data.synthetic import ensure_dataset
from vid2vid.errors import ConfigError, DataError, UserError
from vid2vid.families import family
from vid2vid.models.build import (
    build_losses,
    build_reference_flow,
    build_video_losses,
)
from vid2vid.signals import StopSignals
from vid2vid.train.checks import check_trainable, clip_length
from vid2vid.train.image import ImageTrainer
from vid2vid.train.logs import JsonlLog, flat_config
from vid2vid.train.schedule import EMA, TrainClock
from vid2vid.train.state import load_checkpoint, save_checkpoint, write_export
from vid2vid.train.trainer import Group, Trainer, build_groups
from vid2vid.train.video import VideoTrainer


def build_trainer(cfg: Config, acc: Accelerator, groups: dict[str, Group], losses, ema: EMA | None) -> Trainer:
    """ImageTrainer for the per-frame models; VideoTrainer (with its reference flow, video losses and
    first-frame model) for the sequential generator."""
    if not family(cfg).sequential:
        return ImageTrainer(cfg, acc, groups, losses, ema)
    return VideoTrainer(cfg, acc, groups, losses, ema, video_losses=build_video_losses(cfg),
                        reference_flow=build_reference_flow(cfg, acc.device),
                        first_frames=build_first_frames(cfg, acc.device), teacher=build_teacher(cfg, acc.device))


def _build_data(cfg: Config, acc: Accelerator):
    ensure_dataset(cfg.data)
    if acc.is_main_process:  # every file, once, before a long run (the other processes wait)
        check_dataset(cfg.data)
    acc.wait_for_everyone()
    # image models: single frames (T = 1), so sequences of any length serve; the video model: clips
    n_frames = cfg.data.n_frames if family(cfg).sequential else 1
    dataset = build_dataset(replace(cfg.data, n_frames=n_frames), phase=cfg.data.phase, seed=cfg.train.seed)
    if family(cfg).sequential and cfg.flow.model == "gt" and not dataset.has_flow:
        raise ConfigError(f"flow.model: 'gt' needs the dataset's exact flow ({cfg.data.root}/{cfg.data.phase}_flow), "
                          "which this dataset does not have; use flow.model=dis (OpenCV, no weights) or raft_small")
    num_processes = acc.num_processes
    global_batch = cfg.data.batch_size * num_processes
    if len(dataset) < global_batch:
        raise DataError(f"{cfg.data.root}: {len(dataset)} training items, fewer than data.batch_size "
                        f"({cfg.data.batch_size}) x {num_processes} processes; lower data.batch_size or add data")
    # keys (epoch, index, n_frames) from the main process: the loader's workers hold no data-order state
    sampler = ClipSampler(len(dataset), cfg.train.seed, n_frames=dataset.n_frames, max_n_frames=dataset.shortest,
                          keys_per_batch=global_batch)
    loader = make_loader(dataset, sampler, cfg.data.batch_size, cfg.data.num_workers)
    return dataset, sampler, loader


@dataclass(kw_only=True)
class TrainResult:
    step: int
    out_dir: Path
    checkpoint: Path | None  # the last checkpoint folder (main process; None elsewhere)
    export: Path
    generator: torch.nn.Module  # this process's unwrapped modules, for inspection
    discriminator: torch.nn.Module
    ema: torch.nn.Module | None
    networks: dict[str, torch.nn.Module] = field(default_factory=dict)  # every trained network, unwrapped


def train(cfg: Config, resume: str | None = None, stop_at: int | None = None) -> TrainResult:
    """Train cfg's model for train.max_steps steps (or until step `stop_at`, checkpointing there,
    as a job with a time limit would; the LR schedule still follows train.max_steps).
    resume: "latest" (newest checkpoint of train.out_dir; a fresh start when there is none) or a folder."""

    out_dir = Path(cfg.train.out_dir)
    ckpt_root = out_dir / "checkpoints"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    # Several processes without CUDA (torchrun on CPUs): accelerate only goes multi-process (gloo) with cpu=True.
    acc = Accelerator(mixed_precision=cfg.train.mixed_precision, step_scheduler_with_optimizer=False,
                      log_with="tensorboard" if cfg.train.tracker == "tensorboard" else None,
                      project_dir=str(out_dir), cpu=world_size > 1 and not torch.cuda.is_available())
    if acc.num_processes != world_size:
        raise UserError(f"launched as {world_size} processes (WORLD_SIZE) but accelerate set up "
                        f"{acc.num_processes}; launch with torchrun or accelerate launch (see the README)")
    try:
        check_trainable(cfg, acc.num_processes)
        resume_from = ckpt.resolve_resume(resume, ckpt_root) if resume else None
        if resume is None and ckpt.list_checkpoints(ckpt_root):
            raise ConfigError(f"train.out_dir: {out_dir} already holds checkpoints; continue it with --resume "
                              "(latest or a checkpoint folder) or choose another train.out_dir")
        run = _setup(cfg, acc, out_dir, resume_from)
        return _loop(run, min(stop_at or cfg.train.max_steps, cfg.train.max_steps))
    finally:
        acc.end_training()


@dataclass(kw_only=True)
class Run:
    """Everything one training run holds between steps."""

    cfg: Config
    acc: Accelerator
    out_dir: Path
    trainer: Trainer
    batches: object  # endless_batches(...): (epoch, batch in epoch, batch)
    state: dict  # step, epoch, samples_in_epoch (the data position, in samples: any process count)
    log: JsonlLog | None  # main process only
    samples: dict | None  # fixed held-out inputs for samples (main process only)
    clock: TrainClock  # time spent against train.max_minutes
    last_checkpoint: Path | None = None


def _write_run_config(cfg: Config, acc: Accelerator, out_dir: Path) -> None:
    if acc.is_main_process:
        (out_dir / "samples").mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / "config.yaml") as tmp:
            save_config(cfg, tmp)
    acc.wait_for_everyone()


def _setup(cfg: Config, acc: Accelerator, out_dir: Path, resume_from: Path | None) -> Run:
    """Data, networks, optimizers, the resumed state, the log and the sample inputs."""
    set_seed(cfg.train.seed)
    dataset, sampler, loader = _build_data(cfg, acc)
    _write_run_config(cfg, acc, out_dir)
    clock = TrainClock(cfg.train.max_minutes * 60)
    groups, ema, loader = build_groups(cfg, acc, loader, clock, fresh=resume_from is None)
    losses = build_losses(cfg).to(acc.device)  # the frozen VGG is only moved, never prepared
    trainer = build_trainer(cfg, acc, groups, losses, ema)
    trainer.clock = clock

    state = {"step": 0, "epoch": 0, "samples_in_epoch": 0, "elapsed_s": 0.0}
    if resume_from is not None:
        saved = load_checkpoint(acc, trainer, resume_from)
        state = {k: saved.get(k, v) for k, v in state.items()}
        clock.elapsed_s = state["elapsed_s"]
        acc.print(f"resumed from {resume_from} at step {state['step']}")
    elif acc.is_main_process:
        acc.print(f"training {cfg.model.name} for {cfg.train.max_steps} steps into {out_dir}")
    log = JsonlLog(out_dir / "log.jsonl", state["step"] if resume_from is not None else None) \
        if acc.is_main_process else None
    if acc.is_main_process and cfg.train.tracker != "none":
        acc.init_trackers("vid2vid", config=flat_config(cfg))
    indices_per_batch = cfg.data.batch_size * acc.num_processes
    batches = endless_batches(loader, sampler, dataset, state["epoch"],
                              state["samples_in_epoch"] // indices_per_batch, indices_per_batch)
    samples = trainer.sample_inputs() if acc.is_main_process else None
    return Run(cfg=cfg, acc=acc, out_dir=out_dir, trainer=trainer, batches=batches, state=state, log=log,
               samples=samples, clock=clock)


def _loop(run: Run, last_step: int) -> TrainResult:
    cfg, acc, trainer, state = run.cfg, run.acc, run.trainer, run.state
    bar = progress_bar(cfg, state["step"], run.clock, disable=not acc.is_main_process)
    try:
        with StopSignals() as stop:  # SIGINT / SIGTERM: stop between steps, with a checkpoint (_stop)
            _steps(run, last_step, bar, stop)
    finally:
        bar.close()  # an error message that stops the run starts on a line of its own
    export_dir = run.out_dir / "export"
    if acc.is_main_process and not all((export_dir / f).is_file() for f in ckpt.export_files(cfg)):
        write_export(trainer, export_dir)  # resumed at the last step (or its export cut short)
    acc.wait_for_everyone()
    unwrapped = {name: acc.unwrap_model(net) for name, net in trainer.networks.items()}
    return TrainResult(step=state["step"], out_dir=run.out_dir, checkpoint=run.last_checkpoint,
                       export=run.out_dir / "export", generator=unwrapped["G"], discriminator=unwrapped["D"],
                       ema=trainer.ema.model if trainer.ema is not None else None, networks=unwrapped)


class _TimeBar(tqdm):
    """A tqdm whose bar and remaining-time estimate follow the training clock (train.max_minutes)
    while it counts steps; whichever ends first (time or max_steps) fills the bar."""

    def __init__(self, clock: TrainClock, max_steps: int, step: int, **kwargs):
        self.clock, self.max_steps = clock, max_steps
        super().__init__(total=1000, initial=self._permille(step), unit="‰", **kwargs)

    def _permille(self, step: int) -> int:
        return round(1000 * max(self.clock.fraction(), step / max(self.max_steps, 1)))

    def update(self, n: int = 1) -> bool | None:  # n: steps done; the bar moves by the time fraction
        self.step = getattr(self, "step", 0) + n
        return super().update(max(0, self._permille(self.step) - self.n))


def progress_bar(cfg: Config, step: int, clock: TrainClock, disable: bool) -> tqdm:
    """Steps out of train.max_steps; with train.max_minutes, the bar follows time (the budget decides)."""
    if clock.budget_s <= 0:
        return tqdm(total=cfg.train.max_steps, initial=step, disable=disable, desc="train", dynamic_ncols=True)
    bar = _TimeBar(clock, cfg.train.max_steps, step, disable=disable, desc=f"train {cfg.train.max_minutes:g} min",
                   dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")
    bar.step = step
    return bar


def _steps(run: Run, last_step: int, bar, stop: StopSignals) -> None:
    """Training steps until `last_step` (or the time budget, or a stop signal: TrainingStopped)."""
    cfg, acc, trainer, state = run.cfg, run.acc, run.trainer, run.state
    clock = {"t": time.perf_counter(), "steps": 0}
    indices_per_batch = cfg.data.batch_size * acc.num_processes
    bad_steps = 0  # skipped (non-finite) steps in a row
    if run.clock.out_of_time():  # resumed after the time budget was spent: nothing left to train
        acc.print(f"train.max_minutes={cfg.train.max_minutes} already spent at step {state['step']}")
        return
    while state["step"] < last_step:
        run.batches.set_n_frames(clip_length(cfg, state["step"]))  # the same on every process and after a resume
        trainer.set_stage(state["step"])  # progressive spatial scales: a growth step changes what trains
        micro = []
        for _ in range(cfg.optim.grad_accum):
            epoch, batch_in_epoch, batch = next(run.batches)
            micro.append(batch)
        lrs = trainer.lrs()  # the rates this step uses
        started = time.perf_counter()
        parts = trainer.step(micro, state["step"])
        # the slowest process's clock decides, so that every process stops at the same step
        run.clock.elapsed_s += float(acc.reduce(torch.tensor(time.perf_counter() - started, device=acc.device), "max"))
        state.update(step=state["step"] + 1, epoch=epoch, samples_in_epoch=batch_in_epoch * indices_per_batch,
                     elapsed_s=run.clock.elapsed_s)
        bar.update(1)
        bad_steps = _count_bad_step(run, bad_steps)
        if run.clock.out_of_time():
            acc.print(f"train.max_minutes={cfg.train.max_minutes} reached at step {state['step']}")
            last_step = state["step"]  # samples and checkpoints this step as the last one
        _after_step(run, parts, lrs, last_step, bar, clock)
        signum = stop.agreed(acc)
        if signum and state["step"] < last_step:  # (a signal during the last step: the run just ends)
            _stop(run, signum, last_step, bar)


class TrainingStopped(SystemExit):
    """Training stopped on SIGINT / SIGTERM after a checkpoint of the step just taken. A SystemExit whose code is
    the shell's status for the signal (130 / 143), so that the command line exits with it (run_cli lets it
    through); library callers can catch it."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        super().__init__(128 + signum)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint


def _stop(run: Run, signum: int, last_step: int, bar) -> None:
    """After the step just taken: its checkpoint (unless _after_step wrote it), one line on stderr saying how to
    resume, then TrainingStopped."""
    step = run.state["step"]
    if not _checkpoint_due(run.cfg, step, last_step):
        _save(run)
    bar.close()
    if run.acc.is_main_process:
        print(f"vid2vid: {signal.Signals(signum).name}: stopped after step {step} with checkpoint "
              f"{run.last_checkpoint}; resume with: vid2vid train --config {run.out_dir / 'config.yaml'} "
              "--resume latest", file=sys.stderr, flush=True)
    raise TrainingStopped(signum, step, run.last_checkpoint)


def _count_bad_step(run: Run, bad_steps: int) -> int:
    """Skipped (non-finite) steps in a row, the step just taken included: 0 after a good step, a warning after a
    skipped one, a UserError (on every process) when train.max_bad_steps are reached."""
    trainer, step, limit = run.trainer, run.state["step"], run.cfg.train.max_bad_steps
    if not trainer.skip_step:
        return 0
    bad_steps += 1
    what = ", ".join(dict.fromkeys(trainer.nonfinite)) or "on another process"
    if bad_steps >= limit:
        found = ckpt.list_checkpoints(run.out_dir / "checkpoints")
        last = f"the last checkpoint ({found[-1]}) is intact" if found else "no checkpoint had been written"
        raise UserError(f"step {step}: non-finite values ({what}) in {bad_steps} steps in a row "
                        f"(train.max_bad_steps={limit}), each skipped; training stopped, {last}. Fixes: set "
                        "optim.grad_clip (e.g. 1.0) or use train.mixed_precision=no (fp32) or bf16 instead of fp16 "
                        "and --resume latest, or start a new run with a lower optim.lr (a resume keeps the "
                        "checkpoint's learning rates)")
    if run.acc.is_main_process:
        logging.getLogger("vid2vid").warning(
            "step %d: non-finite values (%s): step skipped (no optimizer or EMA update); %d in a row, the run "
            "stops at train.max_bad_steps=%d", step, what, bad_steps, limit)
    return bad_steps


def _checkpoint_due(cfg: Config, step: int, last_step: int) -> bool:
    return step % cfg.train.checkpoint_every == 0 or step == last_step


def _save(run: Run) -> None:
    """Checkpoint of the step just taken (every process; also refreshes the export)."""
    cfg = run.cfg
    schedule = {"max_steps": cfg.train.max_steps, "decay_start": cfg.optim.decay_start, **run.trainer.lrs()}
    run.last_checkpoint = save_checkpoint(run.acc, run.trainer, run.out_dir, {**run.state, **schedule})


def _after_step(run: Run, parts: dict[str, float], lrs: dict[str, float], last_step: int, bar, clock: dict) -> None:
    """Log line (always for a skipped step), sample and checkpoint of the step just taken. The non-finite
    checks come earlier, before the optimizer steps (Trainer.check_finite, _count_bad_step)."""
    cfg, acc, step = run.cfg, run.acc, run.state["step"]
    clock["steps"] += 1
    mean_parts = dict(zip(parts, acc.reduce(torch.tensor(list(parts.values()), device=acc.device), "mean").tolist()))
    skipped = run.trainer.skip_step
    if step % cfg.train.log_every == 0 or step == last_step or skipped:
        now = time.perf_counter()
        if acc.is_main_process:
            record = {"step": step, "epoch": run.state["epoch"], **lrs, **mean_parts,
                      "it_s": clock["steps"] / max(now - clock["t"], 1e-9)}
            if skipped:
                record["skipped"] = ", ".join(dict.fromkeys(run.trainer.nonfinite)) or "on another process"
            run.log.write(record)
            losses = {"G" if k == "G/total" else "D" if k == "D/total" else k.split("/")[-1]: f"{v:.3g}"
                      for k, v in mean_parts.items() if k.startswith("G/") or k == "D/total"}
            bar.set_postfix({"step": step} | losses, refresh=False)
            acc.log({k: v for k, v in record.items() if k not in ("step", "skipped")}, step=step)
        clock.update(t=now, steps=0)
    if acc.is_main_process and (step % cfg.train.sample_every == 0 or step == last_step):
        metrics = run.trainer.sample(run.samples, run.out_dir, step)
        if metrics:
            run.log.write({"step": step, **metrics})
            acc.log(metrics, step=step)
    if _checkpoint_due(cfg, step, last_step):
        _save(run)
