"""Middlebury .flo files, byte-identical to cv2.readOpticalFlow / cv2.writeOpticalFlow.

Layout (little-endian): float32 magic 202021.25, int32 width, int32 height, then H*W*2 float32
(u, v interleaved, row-major).
"""

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from flow.errors import FlowError

FLO_MAGIC = np.float32(202021.25)
_HEADER = np.dtype([("magic", "<f4"), ("width", "<i4"), ("height", "<i4")])


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a .flo file -> flow [H,W,2] float32 (channel 0 = u = x, channel 1 = v = y)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FlowError(f"cannot read flow file {path}: {e.strerror}") from e
    if len(data) < _HEADER.itemsize:
        raise FlowError(f"{path} is not a .flo file: only {len(data)} bytes (a header needs 12)")
    header = np.frombuffer(data, _HEADER, count=1)[0]
    magic, width, height = header["magic"], int(header["width"]), int(header["height"])
    if magic != FLO_MAGIC:
        raise FlowError(f"{path} is not a .flo file: magic number {float(magic)!r}, expected 202021.25")
    if width <= 0 or height <= 0:
        raise FlowError(f"{path}: invalid flow size {width}x{height} (width x height) in the header")
    expected = _HEADER.itemsize + width * height * 2 * 4
    if len(data) < expected:
        raise FlowError(f"{path} is truncated: {len(data)} bytes, a {width}x{height} flow needs {expected}")
    flow = np.frombuffer(data, "<f4", count=width * height * 2, offset=_HEADER.itemsize)
    return flow.reshape(height, width, 2).astype(np.float32)  # astype copies: writable, native order


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write flow [H,W,2] (any float dtype, converted to float32) to a .flo file, atomically."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[0] == 0 or flow.shape[1] == 0:
        raise FlowError(f"write_flo({path}): flow must have shape [H,W,2], got {tuple(flow.shape)}")
    path = Path(path)
    height, width = flow.shape[:2]
    header = np.array([(FLO_MAGIC, width, height)], dtype=_HEADER)
    payload = header.tobytes() + np.ascontiguousarray(flow, dtype="<f4").tobytes()
    try:
        with atomic_path(path) as tmp, open(tmp, "xb") as f:  # created with the user's umask, like OpenCV's
            f.write(payload)
    except OSError as e:
        raise FlowError(f"cannot write flow file {path}: {e.strerror}") from e


def temp_sibling(path: str | os.PathLike) -> Path:
    """A hidden, unique name beside `path` (same suffix) to write to before renaming it to `path`."""
    target = Path(path)
    return target.with_name(f".{target.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary name beside `path` (same suffix) to write to; it replaces `path` when the block ends
    without an error and is removed otherwise, so readers never see a half-written file. The project's
    one atomic-write helper for files (vid2vid and the tools use it too)."""
    target = Path(path)
    tmp = temp_sibling(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A new temporary folder beside `path` to fill; it is renamed to `path` (which must not exist) when the
    block ends without an error and removed otherwise, so a folder under the final name is always complete."""
    target = Path(path)
    tmp = temp_sibling(target)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        commit_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def commit_dir(tmp: str | os.PathLike, target: str | os.PathLike, *, replace: bool = False) -> None:
    """Rename the complete folder `tmp` to `target`. An existing `target` is an error (OSError) unless
    `replace`: then the old folder is first renamed aside (`.old_<name>`), the new one renamed in, and only
    then the old one removed, so a kill at any moment leaves `target` either the old or the new folder,
    never a partial one (a left-over `.old_<name>` is removed by the next commit)."""
    target = Path(target)
    aside = target.with_name(f".old_{target.name}")
    if replace and target.is_dir():
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(target, aside)
    os.rename(tmp, target)
    shutil.rmtree(aside, ignore_errors=True)
