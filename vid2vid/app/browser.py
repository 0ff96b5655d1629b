"""Driving `vid2vid app` from outside, as its tests and tools do: the server in its own process, a headless
Chromium (the system's, through Playwright) with a fake camera, and y4m files for that camera."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def find_chromium() -> str | None:
    """The system's Chromium (Debian: apt-get install chromium), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def launch(playwright, camera: Path | None = None):
    """A headless Chromium whose webcam is Chromium's fake one: the y4m file `camera` when given (permission
    granted without asking)."""
    args = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    if camera is not None:
        args.append(f"--use-file-for-fake-video-capture={camera}")
    return playwright.chromium.launch(executable_path=find_chromium(), args=args)


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """RGB uint8 frames (even sizes) -> a YUV4MPEG2 (4:2:0) file, the format Chromium's fake camera plays."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


@contextmanager
def app_server(args: list[str], env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """`vid2vid app ARGS --port 0` in its own process -> (its URL, the process); stopped with SIGINT (Ctrl-C) at the
    end of the block (the caller reads its exit status and stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "vid2vid", "app", *args, "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        if "serving http://" not in line:
            proc.kill()
            raise RuntimeError(f"vid2vid app did not start: {line}{proc.stderr.read()}")
        yield line.split("serving ")[1].split()[0].rstrip("/"), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
