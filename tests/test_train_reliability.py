"""Training reliability on the tiny synthetic dataset (CPU): SIGTERM / SIGINT stop between steps with a checkpoint
and exit 143 / 130; non-finite losses or gradients skip the step and stop the run after train.max_bad_steps; runs
SIGKILLed at random moments (one in the middle of a checkpoint) resume from the last complete checkpoint and end
with the weights of an uninterrupted run.

Test hooks (no product code is changed for them): NaN values are injected by monkeypatching the video trainer in
this process; the kill test forks its training runs from a helper process that has imported torch and vid2vid once
(a start costs ~5 s of imports otherwise) and that slows the checkpoint writer of one run down by patching
`checkpoint.atomic_save_safetensors` in that run only. Only processes started here are ever signalled."""

import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vid2vid import checkpoint as ckpt
from vid2vid.config import load_config
from vid2vid.train import TrainingStopped, train
from vid2vid.train.video import VideoTrainer

REPO = Path(__file__).resolve().parents[1]
TINY_VIDEO = REPO / "configs" / "tiny_video.yaml"
# small and quick: 32x32 crops, 4-frame clips (2 generated frames), one clip per step, a checkpoint every step
SMALL = ["data.load_size=32x32", "data.crop_size=32x32", "data.n_frames=4", "data.batch_size=1",
         "train.checkpoint_every=1", "train.sample_every=1000", "optim.ema=0.9"]


@pytest.fixture(autouse=True)
def interruptible():
    """A test suite started in the background by a shell (`make test &`) inherits SIGINT ignored, and training
    rightly leaves an ignored SIGINT alone; these tests need Ctrl-C's usual handler, so they install it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def video_data(tiny_data):
    from vid2vid.data.synthetic import ensure_dataset

    ensure_dataset(load_config(TINY_VIDEO, [f"data.root={tiny_data}"]).data)
    return tiny_data


def small(out_dir: Path, data_root: Path, *overrides: str) -> list[str]:
    return [f"train.out_dir={out_dir}", f"data.root={data_root}", *SMALL, *overrides]


def step_rows(out_dir: Path) -> list[dict]:
    lines = (out_dir / "log.jsonl").read_text().splitlines() if (out_dir / "log.jsonl").is_file() else []
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            pass
    return [r for r in rows if "lr/G" in r]


def checkpoint_tensors(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    """Every network, the EMA and both optimizers of a checkpoint folder, keys prefixed by file name."""
    return {f"{f.stem}.{k}": v for f in sorted(ckpt_dir.glob("*.safetensors")) if not f.stem.startswith("rng_")
            for k, v in load_file(str(f)).items()}


def largest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


# ----------------------------------------------------------------------------------------------
# SIGTERM / SIGINT: a checkpoint at the current step, exit 143 / 130, resume
# ----------------------------------------------------------------------------------------------


def test_sigterm_saves_a_checkpoint_exits_143_and_resume_continues(tmp_path, video_data):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "vid2vid", "train", "--config", str(TINY_VIDEO), "--set",
           *small(out, video_data, "train.max_steps=1000", "train.checkpoint_every=1000")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not step_rows(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        logged = step_rows(out)[-1]["step"]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    stopped = ckpt.list_checkpoints(out / "checkpoints")[-1]
    step = ckpt.read_trainer_state(stopped)["step"]
    assert step >= logged and stopped.name == ckpt.checkpoint_name(step)
    assert message == (f"vid2vid: SIGTERM: stopped after step {step} with checkpoint {stopped}; resume with: "
                       f"vid2vid train --config {out / 'config.yaml'} --resume latest")
    assert (out / "export" / ckpt.EXPORT_WEIGHTS).is_file()

    resumed = train(load_config(out / "config.yaml"), resume="latest", stop_at=step + 1)
    assert resumed.step == step + 1
    assert [r["step"] for r in step_rows(out)] == list(range(1, step + 2))


def test_sigint_stops_after_the_step_in_progress_and_restores_the_handlers(tmp_path, video_data, monkeypatch,
                                                                          capsys):
    """Ctrl-C in the middle of step 2 (in this process): the step completes, its checkpoint is written, exit
    status 130; the handlers in place before training are back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are installed from the main thread only")
    original = VideoTrainer.step

    def step(self, micro_batches, step=0):
        if step == 1:
            signal.raise_signal(signal.SIGINT)  # delivered now: the handler only sets a flag
        return original(self, micro_batches, step)

    monkeypatch.setattr(VideoTrainer, "step", step)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    out = tmp_path / "run"
    with pytest.raises(TrainingStopped) as stopped:
        train(load_config(TINY_VIDEO, small(out, video_data, "train.max_steps=5", "train.checkpoint_every=1000")))
    assert stopped.value.code == 130 and stopped.value.step == 2
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["step_0000002"]
    assert [r["step"] for r in step_rows(out)] == [1, 2]
    assert "SIGINT: stopped after step 2" in capsys.readouterr().err


def test_a_second_sigint_interrupts_at_once(tmp_path, video_data, monkeypatch):
    """Ctrl-C twice: KeyboardInterrupt at once (exit 130 through run_cli), no checkpoint, handlers restored."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are installed from the main thread only")
    original = VideoTrainer.step

    def step(self, micro_batches, step=0):
        if step == 1:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        return original(self, micro_batches, step)

    monkeypatch.setattr(VideoTrainer, "step", step)
    before = signal.getsignal(signal.SIGINT)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(load_config(TINY_VIDEO, small(out, video_data, "train.max_steps=5", "train.checkpoint_every=1000")))
    assert signal.getsignal(signal.SIGINT) is before
    assert ckpt.list_checkpoints(out / "checkpoints") == []


# ----------------------------------------------------------------------------------------------
# Non-finite losses and gradients
# ----------------------------------------------------------------------------------------------


def inject_nan(monkeypatch, steps: set[int], where: str) -> None:
    """At the given steps (1-based, as logged) the video trainer's flow term becomes NaN (where="loss"), or
    stays finite while its gradient becomes NaN (where="gradient")."""
    current = {"step": 0}
    step, video_terms = VideoTrainer.step, VideoTrainer.video_terms

    def counting_step(self, micro_batches, step_index=0):
        current["step"] = step_index + 1
        return step(self, micro_batches, step_index)

    def poisoned_terms(self, chunk):
        parts = video_terms(self, chunk)
        if current["step"] in steps:
            if where == "loss":
                parts["flow"] = parts["flow"] * math.nan
            else:
                parts["flow"].register_hook(lambda grad: grad * math.nan)
        return parts

    monkeypatch.setattr(VideoTrainer, "step", counting_step)
    monkeypatch.setattr(VideoTrainer, "video_terms", poisoned_terms)


def test_a_non_finite_loss_skips_the_step(tmp_path, video_data, monkeypatch, caplog):
    """A NaN loss at step 2: no optimizer or EMA update (step 2's checkpoint equals step 1's), a warning and a
    "skipped" log line; step 3 trains again."""
    inject_nan(monkeypatch, {2}, "loss")
    out = tmp_path / "run"
    result = train(load_config(TINY_VIDEO, small(out, video_data, "train.max_steps=3")))
    assert result.step == 3
    at = {step: checkpoint_tensors(out / "checkpoints" / ckpt.checkpoint_name(step)) for step in (1, 2, 3)}
    assert any(name.startswith("ema.") for name in at[1]) and any(name.startswith("optimizer_G.") for name in at[1])
    assert largest_difference(at[1], at[2]) == 0.0
    assert largest_difference(at[2], at[3]) > 0.0
    rows = step_rows(out)
    assert [r.get("skipped") for r in rows] == [None, "G/flow, G/total, G gradients", None]
    assert all(math.isfinite(r["G/total"]) for r in rows if r["step"] != 2)
    warnings = [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("step 2: non-finite values (G/flow, G/total, G gradients)"), warnings


def test_max_bad_steps_in_a_row_stop_the_run_with_one_line(tmp_path, video_data, monkeypatch, capsys):
    """NaN gradients (finite losses) at steps 3 and 4 with train.max_bad_steps=2: exit 2 with one line naming the
    step, what was non-finite and the fixes; the step-2 checkpoint (the last good one) is intact."""
    from vid2vid.cli import main

    inject_nan(monkeypatch, {3, 4}, "gradient")
    out = tmp_path / "run"
    code = main(["train", "--config", str(TINY_VIDEO), "--set",
                 *small(out, video_data, "train.max_steps=6", "train.checkpoint_every=2", "train.max_bad_steps=2")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("vid2vid: error:")]
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err[-3000:]
    for words in ("step 4:", "G gradients", "2 steps in a row", "train.max_bad_steps=2", "optim.grad_clip",
                  "optim.lr", "fp16", "step_0000002) is intact"):
        assert words in lines[0], (words, lines[0])
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["step_0000002"]
    last_good = out / "checkpoints" / "step_0000002"
    assert ckpt.read_trainer_state(last_good)["step"] == 2
    assert all(torch.isfinite(v).all() for v in checkpoint_tensors(last_good).values())
    rows = step_rows(out)
    assert [r.get("skipped") for r in rows] == [None, None, "G gradients"]  # step 4 stopped the run (the error)
    assert all(math.isfinite(r["G/total"]) for r in rows)  # the losses stayed finite


def test_image_model_non_finite_generator_loss_skips_g_and_ema(tmp_path, tiny_data, monkeypatch):
    """The image models update D before G's loss exists: a NaN G loss at step 2 skips G's update and the EMA;
    that step's D update (from finite values) stands."""
    from vid2vid.train.image import ImageTrainer

    g_losses, calls = ImageTrainer.g_losses, {"n": 0}

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        parts = g_losses(self, *args, **kwargs)
        if calls["n"] == 2:  # step 2 (one micro-batch per step)
            parts["total"] = parts["total"] * math.nan
        return parts

    monkeypatch.setattr(ImageTrainer, "g_losses", poisoned)
    out = tmp_path / "run"
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"train.out_dir={out}", f"data.root={tiny_data}",
                                                       "train.max_steps=2", "train.checkpoint_every=1",
                                                       "train.sample_every=1000", "optim.ema=0.9"])
    train(cfg)
    one, two = (checkpoint_tensors(out / "checkpoints" / ckpt.checkpoint_name(s)) for s in (1, 2))
    unchanged = [name for name in one if name.split(".")[0] in ("G", "ema", "optimizer_G")]
    assert unchanged and all(torch.equal(one[name], two[name]) for name in unchanged)
    assert any(not torch.equal(one[name], two[name]) for name in one if name.startswith("D."))
    assert step_rows(out)[1]["skipped"] == "G/total, G gradients"


def test_max_bad_steps_is_a_positive_config_key():
    from vid2vid.errors import ConfigError

    assert load_config(TINY_VIDEO).train.max_bad_steps == 5
    with pytest.raises(ConfigError, match="train.max_bad_steps"):
        load_config(TINY_VIDEO, ["train.max_bad_steps=0"])


# ----------------------------------------------------------------------------------------------
# SIGKILL at random moments
# ----------------------------------------------------------------------------------------------

# Forks one training run at a time (commands as JSON lines on stdin). It alone reaps its children, so a pid it
# signals is always its own live (or not yet reaped) child; a run still going when the test ends is killed.
FORKER = textwrap.dedent('''
    import json, os, signal, sys, time, traceback
    import torch
    torch.set_num_threads(1)
    import torch._dynamo  # noqa: F401  (what makes a training start slow: imported once, before forking)
    import vid2vid.models.build, vid2vid.train, vid2vid.train.video  # noqa: F401
    from vid2vid import checkpoint as ckpt
    from vid2vid.cli import main


    def run(args, log, slow):
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout.reconfigure(line_buffering=True)  # what was printed is in the file when the kill comes
        if slow:  # a slow checkpoint writer, in this run only
            save = ckpt.atomic_save_safetensors

            def slow_save(tensors, path):
                time.sleep(slow)
                save(tensors, path)

            ckpt.atomic_save_safetensors = slow_save
        code = 1
        try:
            code = main(args)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


    def answer(value):
        print(json.dumps(value), flush=True)


    child = None
    answer("ready")
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "launch":
            child = os.fork()
            if child == 0:
                run(cmd["args"], cmd["log"], cmd["slow"])
            answer(child)
            continue
        if child is None:  # reaped already
            answer("no run")
            continue
        if cmd["op"] == "kill":
            os.kill(child, signal.SIGKILL)
        pid, status = os.waitpid(child, os.WNOHANG if cmd["op"] == "poll" else 0)
        if pid:
            child = None
        answer(None if pid == 0 else os.waitstatus_to_exitcode(status))
    if child is not None:  # the test ended (stdin closed) with a run going
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
''')


class Forker:
    """The test's side of FORKER: launch a run, poll it, kill it (SIGKILL) or wait for it."""

    def __init__(self, tmp_path: Path):
        script = tmp_path / "forker.py"
        script.write_text(FORKER)
        self.proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert self.answer() == "ready"

    def answer(self):
        return json.loads(self.proc.stdout.readline())

    def ask(self, cmd: dict):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.answer()

    def launch(self, args: list[str], log: Path, slow: float = 0.0) -> None:
        self.ask({"op": "launch", "args": args, "log": str(log), "slow": slow})

    def poll(self) -> int | None:
        return self.ask({"op": "poll"})

    def kill(self) -> int:
        return self.ask({"op": "kill"})

    def wait(self) -> int:
        return self.ask({"op": "wait"})

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def wait_for(forker: Forker, ready, what: str, timeout: float = 120.0) -> None:
    """Poll until ready() (the run still going), else fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    while not ready():
        code = forker.poll()
        assert code is None, f"the run ended ({code}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def kill_at(moment: str, forker: Forker, out: Path, start: int, rng: random.Random) -> None:
    """SIGKILL the run at `moment`: after_step (a random time after the first new checkpoint), checkpoint (while a
    checkpoint folder is half written) or any_time (a random time after the launch). Never later than two steps
    past `start` (the step it resumed from), so that the run cannot finish first."""
    def progressed(n: int) -> bool:
        found = ckpt.list_checkpoints(out / "checkpoints")
        return bool(found) and int(found[-1].name.removeprefix("step_")) >= start + n

    if moment == "checkpoint":
        def half_written() -> bool:
            return any(len(list(tmp.iterdir())) >= 2 for tmp in (out / "checkpoints").glob(".tmp_step_*"))

        wait_for(forker, half_written, "a checkpoint being written")
        time.sleep(rng.uniform(0.0, 0.1))
        assert half_written()
    else:
        if moment == "after_step":
            wait_for(forker, lambda: progressed(1), f"step {start + 1}")
        until = time.monotonic() + rng.uniform(0.0, 0.4 if moment == "after_step" else 2.5)
        wait_for(forker, lambda: time.monotonic() >= until or progressed(2), "the kill time")
    assert forker.kill() == -signal.SIGKILL


def resumed_step(log: Path) -> int | None:
    """The step a run said it resumed from (0: a fresh start; None: killed before it said)."""
    for line in log.read_text().splitlines():
        if line.startswith("resumed from "):
            return int(line.rsplit(" ", 1)[1])
        if line.startswith("training vid2vid for "):
            return 0
    return None


def test_sigkill_at_random_moments_resumes_from_complete_checkpoints(tmp_path, video_data):
    """5 SIGKILLs (one while a checkpoint is half written) then a run to the end: each start resumes from the newest
    complete checkpoint (never a .tmp_step_* folder) and the final weights, EMA and optimizer states equal an
    uninterrupted run's (one thread each, the same seed and steps)."""
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    moments = ["checkpoint", "after_step", "after_step", "any_time", rng.choice(["after_step", "any_time"])]
    rng.shuffle(moments)
    steps, out = 12, tmp_path / "killed"
    overrides = small(out, video_data, f"train.max_steps={steps}", "train.keep_last=2")
    forker = Forker(tmp_path)
    try:
        forker.launch(["train", "--config", str(TINY_VIDEO), "--set",
                       *small(tmp_path / "reference", video_data, f"train.max_steps={steps}")], tmp_path / "ref.log")
        assert forker.wait() == 0, (tmp_path / "ref.log").read_text()[-3000:]
        history = []
        for i, moment in enumerate([*moments, "end"]):
            found = ckpt.list_checkpoints(out / "checkpoints")
            start = ckpt.read_trainer_state(found[-1])["step"] if found else 0
            # the command the stop message prints, once the run folder has its config
            config = ["--config", str(out / "config.yaml")] if (out / "config.yaml").is_file() else \
                ["--config", str(TINY_VIDEO), "--set", *overrides]
            log = tmp_path / f"run{i}.log"
            forker.launch(["train", *config, "--resume", "latest"], log, slow=0.15 if moment == "checkpoint" else 0.0)
            if moment == "end":
                assert forker.wait() == 0, log.read_text()[-3000:]
            else:
                kill_at(moment, forker, out, start, rng)
            history.append((moment, start, resumed_step(log)))
            assert resumed_step(log) in (start, None), (seed, history, log.read_text()[-2000:])
        assert history[-1][2] == start and sum(s is not None for _, _, s in history) >= 4, (seed, history)
    finally:
        forker.close()
    assert not list((out / "checkpoints").glob(".tmp_step_*")), "a half-written checkpoint was left behind"
    final, reference = (d / "checkpoints" / ckpt.checkpoint_name(steps) for d in (out, tmp_path / "reference"))
    worst = largest_difference(checkpoint_tensors(final), checkpoint_tensors(reference))
    assert worst <= 1e-6, (seed, history, worst)
    rows, ref_rows = step_rows(out), step_rows(tmp_path / "reference")
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    for row, ref in zip(rows, ref_rows):
        assert row["G/total"] == pytest.approx(ref["G/total"], rel=1e-6), (seed, history, row["step"])
