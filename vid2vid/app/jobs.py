"""Render jobs of `vid2vid app`: one input rendered by one export through vid2vid render's own path, then measured.

A job renders with render_video (frames_dir and side_by_side, as `vid2vid render --frames-dir --side-by-side`), in
its own thread with its own VideoRenderer, into its own folder of the app's temporary folder. Then it writes
output.mp4 (the model's frames, at the export's render.fps / render.crf: the download), player.mp4 (input | labels |
output in one video, so the three are in step by construction) and the warping error of the output beside the
input's own (metrics.warping_error, the library call of tools/eval_flicker.py; DIS flow on the input).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import torch

from flow import FlowError
from vid2vid.app.exports import ExportInfo
from vid2vid.errors import UserError
from vid2vid.eval.metrics import warping_error
from vid2vid.render import RenderOptions, render_video
from vid2vid.video_io import VideoWriter, image_files, iter_frames, read_image

log = logging.getLogger("vid2vid")
PRECISIONS = ("fp32", "bf16", "fp16")


class JobStopped(Exception):
    """Raised from a render's on_frame when the server closes: the render stops after its current frame."""


@dataclass
class Job:
    id: str
    export: ExportInfo
    inputs: Path  # the uploaded video or the dataset sequence folder
    name: str  # what the user calls the input (the upload's file name, the sequence's name)
    options: RenderOptions
    folder: Path
    total: int
    state: str = "queued"  # queued -> rendering -> measuring -> done, or failed
    done: int = 0
    began: float | None = None
    finished: float | None = None
    error: str | None = None
    metrics: dict = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def fps(self) -> float:
        end = self.finished or time.perf_counter()
        return self.done / (end - self.began) if self.began and end > self.began else 0.0

    def status(self) -> dict:
        return {"id": self.id, "export": self.export.id, "input": self.name, "state": self.state, "frames": self.done,
                "total": self.total, "fps": round(self.fps, 3), "error": self.error}

    def progress(self, done: int) -> None:
        """render_video's on_frame: counts the frames; stops the render when the server closes."""
        self.done = done
        if self.stop.is_set():
            raise JobStopped(f"job {self.id}: stopped, the server is closing")

    def file(self, name: str) -> Path:
        return self.folder / name


class Jobs:
    """The jobs of one server: at most `workers` render at once, the others wait in order."""

    def __init__(self, workdir: Path, workers: int = 2):
        self.workdir = workdir
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vid2vid-job")
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()

    def folder(self) -> tuple[str, Path]:
        """A new job's id and its (new, empty) folder."""
        job_id = secrets.token_hex(8)
        folder = self.workdir / job_id
        folder.mkdir()
        return job_id, folder

    def submit(self, job: Job) -> Job:
        with self.lock:
            self.jobs[job.id] = job
        self.pool.submit(run_job, job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def close(self) -> None:
        """Stop the renders after their current frame, drop the waiting jobs, wait for the threads."""
        with self.lock:
            for job in self.jobs.values():
                job.stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)


def run_job(job: Job) -> None:
    """Render, then write the videos and metrics; any error ends the job as failed with one line."""
    job.state, job.began = "rendering", time.perf_counter()
    try:
        render_video(job.export.path, job.inputs, job.file("frames"), RenderOptions.of(job.options,
                                                                                       on_frame=job.progress))
        job.finished = time.perf_counter()
        job.state = "measuring"
        finish(job)
        job.state = "done"
    except (UserError, FlowError, OSError, JobStopped) as e:
        job.error = user_line(e, job.folder)
        job.state = "failed"
    except Exception as e:  # a bug: the server keeps serving; the traceback goes to the log
        log.exception("job %s failed", job.id)
        job.error, job.state = f"internal error: {type(e).__name__}: {e}", "failed"
    finally:
        job.finished = job.finished or time.perf_counter()


def user_line(error: Exception, folder: Path) -> str:
    """The error's message with the job's upload named as the user named it, not by its temporary path."""
    return str(error).replace(f"{folder}/upload/", "").replace(f"{folder}/", "")


def finish(job: Job) -> None:
    """output.mp4, player.mp4 and the metrics from the rendered side-by-side frames."""
    cfg = job.export.cfg
    panels = [read_image(f) for f in image_files(job.file("frames"))]
    n_panels = 3 if cfg.data.condition == "pose" else 2  # a pose model's: source | keypoints | output
    width = panels[0].shape[1] // n_panels
    outputs = [p[:, -width:] for p in panels]
    fps = job.options.fps or cfg.render.fps
    inputs = input_frames(job, len(outputs), outputs[0].shape[:2])
    write_video(job.file("output.mp4"), outputs, fps, cfg.render.crf)
    player = panels if inputs is None else [np.concatenate([i, p], axis=1) for i, p in zip(inputs, panels)]
    write_video(job.file("player.mp4"), player, fps, cfg.render.crf)
    shown = {"pose": ["source", "keypoints"], "face": ["edges"]}.get(cfg.data.condition, ["labels"])
    panels_named = (["input"] if inputs is not None else []) + shown + ["output"]
    job.metrics = measure(outputs, inputs) | {"frames": len(player), "fps": fps, "panels": panels_named}


def input_frames(job: Job, n: int, size: tuple[int, int]) -> list[np.ndarray] | None:
    """The input's own frames at the output's size, from the first rendered frame: a video's frames or a dataset
    sequence's real frames; None where they do not match the output pixel for pixel (face and pose models crop
    the person; a sequence without real frames)."""
    if job.export.cfg.data.condition != "labels":
        return None
    source = job.inputs
    if source.is_dir():  # a dataset sequence <root>/<phase>_A/<seq>: its <phase>_B/<seq>; a painting: none
        if not source.parent.name.endswith("_A"):
            return None
        source = source.parent.parent / f"{source.parent.name[:-2]}_B" / source.name
        if not source.is_dir():
            return None
    h, w = size
    frames = islice(iter_frames(source), job.options.start, job.options.start + n)
    return [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) if f.shape[:2] != (h, w) else f for f in frames]


def _tensor(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255  # [T,3,H,W] in [0, 1]


def measure(outputs: list[np.ndarray], inputs: list[np.ndarray] | None) -> dict:
    """E_warp (raw, per pair and mean) of the output and of the input, both on DIS flow of the input (of the
    output itself when there is no input to compare with)."""
    if len(outputs) < 2:
        return {"flow": None, "e_warp_output": None, "e_warp_input": None, "pairs_output": [], "pairs_input": []}
    out = _tensor(outputs)
    reference = None if inputs is None else _tensor(inputs)
    with torch.inference_mode():
        e_out = warping_error(out, reference=reference, estimator="dis")
        e_in = None if reference is None else warping_error(reference, estimator="dis")
    return {"flow": "DIS flow on the output" if reference is None else "DIS flow on the input",
            "e_warp_output": e_out.value, "e_warp_input": None if e_in is None else e_in.value,
            "pairs_output": e_out.per_pair, "pairs_input": [] if e_in is None else e_in.per_pair}


def write_video(path: Path, frames: list[np.ndarray], fps: float, crf: int) -> None:
    """H.264 of the frames, padded by a pixel where a side is odd (yuv420p needs even sizes)."""
    h, w = frames[0].shape[:2]
    with VideoWriter(path, fps=fps, crf=crf) as writer:
        for frame in frames:
            writer.write(np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge"))
