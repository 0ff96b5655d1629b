"""Reliability of what the product writes: `vid2vid render` stopped by SIGINT / SIGTERM (exit 130 / 143; no output,
or with --keep-partial a playable one holding the frames rendered so far), write failures (a file size limit in a
child process stands in for a full disk) during rendering, checkpointing and export (exit 2 naming the output; the
previous output, checkpoint and export intact; no partial or temporary file left), and a 5,000-frame render whose
memory stays flat.

Every command runs in a child process started here; only those are signalled."""

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from vid2vid import checkpoint as ckpt
from vid2vid.checkpoint import export_generator
from vid2vid.config import load_config
from vid2vid.models.build import build_generator

REPO = Path(__file__).resolve().parents[1]
TINY_VIDEO = REPO / "configs" / "tiny_video.yaml"
# the smallest video model: 4 label ids, no foreground branch, width 4, one residual block; seeds with zeros
SMALL_MODEL = ["data.label_nc=4", "model.use_fg=false", "data.fg_labels=[1]", "model.ngf=4", "model.n_blocks=1",
               "model.first_frame=zeros"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def small_export(tmp_path_factory) -> Path:
    cfg = load_config(TINY_VIDEO, SMALL_MODEL)
    torch.manual_seed(0)
    return export_generator(build_generator(cfg).state_dict(), cfg, tmp_path_factory.mktemp("small") / "export")


def label_folder(folder: Path, n: int, size: tuple[int, int] = (32, 64)) -> Path:
    """n label maps (ids 0..3) named 00000.png ...: links to 8 random maps, so that long inputs cost nothing."""
    distinct = folder.with_name(folder.name + "_distinct")
    distinct.mkdir()
    for i in range(8):
        cv2.imwrite(str(distinct / f"{i}.png"), np.random.default_rng(i).integers(0, 4, size).astype(np.uint8))
    folder.mkdir()
    for i in range(n):
        os.symlink(distinct / f"{i % 8}.png", folder / f"{i:05d}.png")
    return folder


def start(args: list[str], cwd: Path, preexec=None) -> subprocess.Popen:
    """`python -m vid2vid ARGS` in a child process, SIGINT handled as in a terminal (not inherited as ignored)."""
    def child_setup():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if preexec is not None:
            preexec()

    return subprocess.Popen([sys.executable, "-m", "vid2vid", *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=child_setup)


def file_size_limit(nbytes: int):
    """A preexec_fn: no file of the child can grow past nbytes (a write past it fails with EFBIG, as on a full disk,
    since SIGXFSZ is ignored)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return limit


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def temporaries(folder: Path) -> list[Path]:
    """Temporary files and folders the atomic writers use (.<name>.<pid>.<id>.tmp<suffix>, .tmp_step_*, .old_*)."""
    return [p for p in folder.rglob(".*") if ".tmp" in p.name or p.name.startswith(".old_")]


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# ----------------------------------------------------------------------------------------------
# SIGINT / SIGTERM during a render
# ----------------------------------------------------------------------------------------------


def test_render_stopped_by_a_signal_keeps_a_playable_partial_output_only_when_asked(tmp_path, small_export):
    """Two renders of 3,000 frames, each signalled once its first encoded frames are on disk: SIGINT with
    --keep-partial exits 130 with an mp4 holding exactly the frame count it prints; SIGTERM without it exits 143
    and leaves nothing (no output, no temporary file)."""
    labels = label_folder(tmp_path / "labels", 3000)
    runs = {}
    for name, sig, extra in (("kept", signal.SIGINT, ["--keep-partial"]), ("dropped", signal.SIGTERM, [])):
        out = tmp_path / name
        out.mkdir()
        runs[name] = (out, sig, start(["render", str(labels), str(out / "out.mp4"), "-m", str(small_export), *extra],
                                      cwd=tmp_path))
    deadline = time.monotonic() + 180
    pending = dict(runs)
    while pending:  # the encoder's temporary file holds data once the first frames are encoded
        for name, (out, sig, proc) in list(pending.items()):
            assert proc.poll() is None, f"{name}: ended before the signal: {proc.communicate()[1][-2000:]}"
            if any(p.stat().st_size > 0 for p in temporaries(out)):
                proc.send_signal(sig)
                del pending[name]
        assert time.monotonic() < deadline, "no frames were written in time"
        time.sleep(0.02)
    results = {name: finish(proc) for name, (_, _, proc) in runs.items()}

    code, err = results["kept"]
    out = runs["kept"][0] / "out.mp4"
    assert code == 130 and "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("vid2vid: SIGINT: stopped after ") and last.endswith(f"kept the partial output {out} "
                                                                                f"({last.split()[4]} frames)"), last
    frames = int(last.split()[4])
    assert 0 < frames < 3000 and "of 3000 frames" in last
    assert decoded_frames(out) == frames
    assert temporaries(out.parent) == []

    code, err = results["dropped"]
    assert code == 143 and "Traceback" not in err, err[-3000:]
    assert "vid2vid: SIGTERM: stopped after " in err and "no output written (--keep-partial keeps" in err
    assert list(runs["dropped"][0].iterdir()) == []


# ----------------------------------------------------------------------------------------------
# Write failures: a file size limit in the child stands in for a full disk
# ----------------------------------------------------------------------------------------------


def test_render_write_failure_names_the_output_and_keeps_the_previous_one(tmp_path, small_export):
    labels = label_folder(tmp_path / "labels", 300)
    out = tmp_path / "out" / "video.mp4"
    out.parent.mkdir()
    out.write_bytes(b"the previous render")
    proc = start(["render", str(labels), str(out), "-m", str(small_export), "--overwrite"], cwd=tmp_path,
                 preexec=file_size_limit(64 * 1024))  # the 300 noisy frames need ~300 KB
    code, err = finish(proc)
    assert code == 2 and "Traceback" not in err, err[-3000:]
    assert err.startswith(f"vid2vid: error: {out}: could not be written (File too large)") and err.count("\n") == 1
    assert out.read_bytes() == b"the previous render"
    assert list(out.parent.iterdir()) == [out]


@pytest.fixture(scope="module")
def video_data(tiny_data):
    from vid2vid.data.synthetic import ensure_dataset

    ensure_dataset(load_config(TINY_VIDEO, [f"data.root={tiny_data}"]).data)
    return tiny_data


def test_checkpoint_write_failure_keeps_the_previous_checkpoint_and_export(tmp_path, video_data):
    """A run checkpointed at step 2 resumes with a file size limit below a network file's size: the step-4 checkpoint
    fails with exit 2 naming the file and what is intact; step 2 and the export are unchanged (byte for byte) and
    no temporary folder or file is left; a resume without the limit continues from step 2."""
    from vid2vid.train import train

    out = tmp_path / "run"
    overrides = [f"train.out_dir={out}", f"data.root={video_data}", "data.load_size=32x32", "data.crop_size=32x32",
                 "data.n_frames=4", "data.batch_size=1", "train.checkpoint_every=2", "train.sample_every=1000"]
    train(load_config(TINY_VIDEO, [*overrides, "train.max_steps=2"]))
    step2 = out / "checkpoints" / ckpt.checkpoint_name(2)
    before = {"checkpoint": digests(step2), "export": digests(out / "export")}
    assert before["checkpoint"]["G.safetensors"] and (out / "checkpoints" / "step_0000002" / "G.safetensors"
                                                      ).stat().st_size > 100_000

    proc = start(["train", "--config", str(out / "config.yaml"), "--resume", "latest", "--set", "train.max_steps=6"],
                 cwd=tmp_path, preexec=file_size_limit(20_000))  # logs and the RNG file fit; networks do not
    code, err = finish(proc)
    assert code == 2 and "Traceback" not in err, err[-3000:]
    line = [x for x in err.splitlines() if x.startswith("vid2vid: error: ")]
    assert len(line) == 1, err[-3000:]
    for words in ("checkpoint step_0000004 not written", ".safetensors: could not be written (File too large)",
                  f"the previous checkpoint {step2} and the export are intact", "--resume latest"):
        assert words in line[0], (words, line[0])
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["step_0000002"]
    assert {"checkpoint": digests(step2), "export": digests(out / "export")} == before
    assert temporaries(out) == []

    resumed = train(load_config(out / "config.yaml"), resume="latest", stop_at=3)
    assert resumed.step == 3


EXPORT_CHILD = textwrap.dedent("""
    import sys
    import torch
    from vid2vid.checkpoint import export_generator
    from vid2vid.config import load_config
    from vid2vid.errors import run_cli
    from vid2vid.models.build import build_generator

    cfg = load_config(sys.argv[1], sys.argv[3:])
    sys.exit(run_cli("export", lambda: export_generator(build_generator(cfg).state_dict(), cfg, sys.argv[2])))
""")


def test_export_write_failure_keeps_the_previous_export_whole(tmp_path, small_export):
    """An export of a wider model over an existing one, with a file size limit that its config passes and its
    weights do not: exit 2 naming generator.safetensors; config and weights both stay the previous export's (the
    files are renamed into place together), no temporary file."""
    import shutil

    export = tmp_path / "export"
    shutil.copytree(small_export, export)
    before = digests(export)
    script = tmp_path / "export_child.py"
    script.write_text(EXPORT_CHILD)
    proc = subprocess.run([sys.executable, str(script), str(TINY_VIDEO), str(export), *SMALL_MODEL, "model.ngf=16"],
                          env=ENV, capture_output=True, text=True, timeout=240,
                          preexec_fn=file_size_limit(max(p.stat().st_size for p in export.iterdir()) + 1))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.startswith(f"export: error: {export / ckpt.EXPORT_WEIGHTS}: could not be written (File too "
                                  "large)"), proc.stderr
    assert digests(export) == before and temporaries(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# Long renders: constant memory
# ----------------------------------------------------------------------------------------------

LONG_CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from vid2vid.render import render_video

    rss = []  # (frames rendered, VmRSS in kB) every 100 frames

    def sample(frames):
        if frames % 100 == 0:
            status = Path("/proc/self/status").read_text()
            rss.append((frames, int(status.split("VmRSS:")[1].split()[0])))

    summary = render_video(sys.argv[1], sys.argv[2], sys.argv[3], device="cpu", progress=False, on_frame=sample)
    print(json.dumps({"frames": summary.frames, "seconds": summary.seconds, "rss": rss}))
""")


@pytest.mark.slow
def test_a_5000_frame_render_keeps_memory_flat(tmp_path, small_export):
    """5,000 frames (16x32) through render_video in a child process: the peak resident memory of the last 1,000
    frames is within 10% of the first 1,000's, and the mp4 holds all 5,000 frames."""
    labels = label_folder(tmp_path / "labels", 5000, size=(16, 32))
    script = tmp_path / "long_child.py"
    script.write_text(LONG_CHILD)
    out = tmp_path / "long.mp4"
    proc = subprocess.run([sys.executable, str(script), str(small_export), str(labels), str(out)], env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["frames"] == 5000 and len(result["rss"]) == 50
    first = max(kb for frames, kb in result["rss"] if frames <= 1000)
    last = max(kb for frames, kb in result["rss"] if frames > 4000)
    assert last <= 1.10 * first, (first, last, result["rss"])
    assert decoded_frames(out) == 5000
