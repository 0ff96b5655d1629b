"""Streaming around the model: a reader thread and an encoder thread with small bounded queues (the model does not
wait on I/O, memory does not grow with the video length), and the sinks they write to (H.264 through PyAV, or a
folder of PNGs), each complete under its name only when finished.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import threading
from pathlib import Path

import numpy as np

from flow import commit_dir
from flow.io import temp_sibling
from vid2vid.errors import DataError, UserError, write_failed, writing
from vid2vid.video_io import VideoWriter, write_image

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")
QUEUE_FRAMES = 4  # frames waiting between reader, model and encoder


def check_output(output: str | Path, *, frames_dir: bool, overwrite: bool) -> Path:
    """The output path, or a UserError: missing folder, unknown container, existing output without overwrite."""
    output = Path(output)
    if not output.parent.is_dir():
        raise UserError(f"{output}: the folder {output.parent} does not exist; create it or choose another output")
    if not frames_dir and output.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"{output}: unknown video container {output.suffix or '(no suffix)'!r}; name the output "
                        f"{'/'.join(VIDEO_SUFFIXES)} (H.264), or pass --frames-dir to write PNG frames into a folder")
    if output.exists() and not overwrite:
        raise UserError(f"{output}: already exists; pass --overwrite to replace it, or choose another output")
    if output.exists() and output.is_dir() != frames_dir:
        kind = "a folder" if output.is_dir() else "a file"
        raise UserError(f"{output}: is {kind}; --overwrite replaces only outputs of the same kind; remove it first")
    return output


class Mp4Sink:
    """VideoWriter (H.264 yuv420p, atomic) that pads odd frame sizes by one repeated row / column."""

    def __init__(self, path: Path, fps: float, crf: int):
        self.writer = VideoWriter(path, fps=fps, crf=crf)

    def __enter__(self) -> Mp4Sink:
        self.writer.__enter__()
        return self

    def write(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        self.writer.write(frame)

    def __exit__(self, *exc) -> None:
        self.writer.__exit__(*exc)


class FramesDirSink:
    """00000.png, 00001.png, ... in a temporary folder beside `path`, renamed to `path` when complete."""

    def __init__(self, path: Path, overwrite: bool):
        self.path, self.overwrite, self.tmp, self.n = path, overwrite, temp_sibling(path), 0

    def __enter__(self) -> FramesDirSink:
        with writing(self.path):
            self.tmp.mkdir()
        return self

    def write(self, frame: np.ndarray) -> None:
        try:
            write_image(self.tmp / f"{self.n:05d}.png", frame)
        except DataError:  # a full disk, no permission
            raise write_failed(self.path, f"frame {self.n} could not be saved") from None
        self.n += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                commit_dir(self.tmp, self.path, replace=self.overwrite)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


_END, _ABORT = object(), object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class Reader(threading.Thread):
    """Runs an iterator in a thread into a bounded queue; iterating the Reader yields its items in order and
    re-raises its error."""

    def __init__(self, items, maxsize: int = QUEUE_FRAMES):
        super().__init__(daemon=True, name="vid2vid-render-reader")
        self.items, self.queue, self.stop = items, queue.Queue(maxsize), threading.Event()

    def run(self) -> None:
        try:
            for item in self.items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as error:  # handed to the main thread
            self._put(_Failed(error))

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while (item := self.queue.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def close(self) -> None:
        self.stop.set()
        self.join()


class Encoder(threading.Thread):
    """Writes frames to a sink (a context manager with write(frame)) in a thread, from a bounded queue. finish()
    completes the output; abort() leaves nothing behind."""

    def __init__(self, sink, maxsize: int = QUEUE_FRAMES):
        super().__init__(daemon=True, name="vid2vid-render-encoder")
        self.sink, self.queue = sink, queue.Queue(maxsize)
        self.error: BaseException | None = None
        self.aborted = False

    def run(self) -> None:
        try:
            with self.sink:
                while (item := self.queue.get()) is not _END:
                    if item is _ABORT or self.aborted:
                        raise _Aborted
                    self.sink.write(item)
        except _Aborted:
            pass
        except BaseException as error:  # handed to the main thread
            self.error = error

    def put(self, frame) -> None:
        while True:
            if not self.is_alive():
                raise self.error or RuntimeError("the encoder thread stopped")
            try:
                self.queue.put(frame, timeout=0.05)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        self.put(_END)
        self.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        self.aborted = True
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(_ABORT)
        self.join()


class _Aborted(Exception):
    pass
