"""Video files (PyAV) and folders of frames: read, probe, index for random access, write H.264.

Every reader yields RGB uint8 arrays [H,W,3]. Errors are DataError naming the file.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import cv2
import numpy as np

from flow import atomic_path
from vid2vid.errors import DataError, UserError, writing

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class VideoInfo(NamedTuple):
    n_frames: int
    height: int
    width: int
    fps: float | None  # None for a folder of frames


def image_files(folder: str | os.PathLike) -> list[Path]:
    """PNG/JPG files of a folder, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_image(path: str | os.PathLike, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """cv2.imread with a DataError naming the file when it cannot be decoded (missing, truncated, not an image).
    IMREAD_COLOR results are converted to RGB."""
    path = Path(path)
    data = np.fromfile(path, np.uint8) if path.is_file() else None
    image = _quiet_imdecode(data, flags) if data is not None and data.size else None
    if image is None:
        why = "file not found" if data is None else "cannot decode it (unreadable, truncated or not an image)"
        raise DataError(f"{path}: {why}; replace or remove the file")
    if flags == cv2.IMREAD_COLOR:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an image file (format from the suffix): RGB uint8 [H,W,3], or one channel [H,W] (8- or 16-bit)
    unchanged. A DataError names the file when it cannot be written."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise DataError(f"cannot write {path}; check that the folder is writable and the disk not full")


def _quiet_imdecode(data: np.ndarray, flags: int) -> np.ndarray | None:
    """cv2.imdecode without OpenCV's own warnings on stderr (our DataError says what is wrong)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        return cv2.imdecode(data, flags)
    finally:
        cv2.utils.logging.setLogLevel(level)


def _open(path: Path):
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise DataError(f"{path}: cannot open the video ({e}); check that the file is complete and a video") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: has no video stream")
    return container


def _decode_error(path: Path, e: Exception) -> DataError:
    return DataError(f"{path}: the video is damaged or truncated ({e}); re-encode or replace it")


def iter_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Frames of a video file or of a folder of PNG/JPG images (sorted by name), RGB uint8 [H,W,3]."""
    path = Path(path)
    if path.is_dir():
        for file in image_files(path):
            yield read_image(file)
        return
    if not path.exists():
        raise DataError(f"{path}: no such video file or folder of frames")
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as e:
        raise _decode_error(path, e) from None
    finally:
        container.close()


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count, size and frame rate without decoding (a folder: its images, first image's size)."""
    path = Path(path)
    if path.is_dir():
        files = image_files(path)
        if not files:
            raise DataError(f"{path}: no PNG/JPG frames in this folder")
        h, w = read_image(files[0]).shape[:2]
        return VideoInfo(len(files), h, w, None)
    if not path.exists():
        raise DataError(f"{path}: no such video file or folder of frames")
    container = _open(path)
    try:
        stream = container.streams.video[0]
        n = stream.frames or sum(1 for p in container.demux(stream) if p.size)
        fps = float(stream.average_rate) if stream.average_rate else None
        return VideoInfo(n, stream.codec_context.height, stream.codec_context.width, fps)
    except av.FFmpegError as e:
        raise _decode_error(path, e) from None
    finally:
        container.close()


class VideoIndex:
    """Random access to a video's frames: the packet index is read once (no decoding), then each
    read seeks to the key frame before the first wanted frame and decodes only up to the last one."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        container = _open(self.path)
        try:
            stream = container.streams.video[0]
            pts, keys = [], []
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None:
                    pts.append(packet.pts)
                    if packet.is_keyframe:
                        keys.append(packet.pts)
        except av.FFmpegError as e:
            raise _decode_error(self.path, e) from None
        finally:
            container.close()
        if not pts:
            raise DataError(f"{self.path}: the video holds no frames")
        self.pts = sorted(pts)  # presentation order
        self.keyframes = sorted(keys) or self.pts[:1]
        self.seekable = self._timestamps_match()

    def _timestamps_match(self, n: int = 48) -> bool:
        """Whether decoded frames carry the packet timestamps in presentation order (true for MP4/MKV;
        false e.g. for AVI with B-frames, whose timestamps are decode-order counters)."""
        container = _open(self.path)
        try:
            stream = container.streams.video[0]
            got = [frame.pts for _, frame in zip(range(min(n, len(self.pts))), container.decode(stream))]
        except av.FFmpegError as e:
            raise _decode_error(self.path, e) from None
        finally:
            container.close()
        return got == self.pts[: len(got)]

    def __len__(self) -> int:
        return len(self.pts)

    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Frames at the given indices (any order, repeats allowed), RGB uint8 [H,W,3] each."""
        for i in indices:
            if not 0 <= i < len(self.pts):
                raise IndexError(f"{self.path}: frame {i} out of range (the video has {len(self)} frames)")
        found = self._read_seek(set(indices)) if self.seekable else self._read_sequential(set(indices))
        missing = [i for i in indices if i not in found]
        if missing:
            raise DataError(f"{self.path}: frame {missing[0]} of {len(self)} could not be decoded; "
                            "the file is damaged or truncated; re-encode or replace it")
        return [found[i] for i in indices]

    def _read_seek(self, indices: set[int]) -> dict[int, np.ndarray]:
        wanted = {self.pts[i]: i for i in indices}
        first, last = min(wanted), max(wanted)
        key = self.keyframes[max(0, bisect.bisect_right(self.keyframes, first) - 1)]
        found: dict[int, np.ndarray] = {}
        container = _open(self.path)
        try:
            stream = container.streams.video[0]
            container.seek(key, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts in wanted:
                    found[wanted[frame.pts]] = frame.to_ndarray(format="rgb24")
                if frame.pts is not None and frame.pts >= last:
                    break
        except av.FFmpegError as e:
            raise _decode_error(self.path, e) from None
        finally:
            container.close()
        return found

    def _read_sequential(self, indices: set[int]) -> dict[int, np.ndarray]:
        """Without trustworthy timestamps: decode from the start, counting frames."""
        found: dict[int, np.ndarray] = {}
        last = max(indices)
        for i, frame in enumerate(iter_frames(self.path)):
            if i in indices:
                found[i] = frame
            if i >= last:
                break
        return found


class VideoWriter:
    """H.264 (yuv420p) writer; the file appears under its name only when the context exits cleanly.

        with VideoWriter("out.mp4", fps=10) as w:
            w.write(frame)  # uint8 [H,W,3] RGB, every frame the same even size
    """

    def __init__(self, path: str | os.PathLike, fps: float, crf: int = 18):
        self.path = Path(path)
        if fps <= 0:
            raise UserError(f"{self.path}: frame rate must be > 0, got {fps}")
        self.fps, self.crf = fps, crf
        self.tmp: Path | None = None
        self._atomic = ExitStack()  # holds flow's atomic_path: the temporary file is self.tmp
        self.container = None
        self.stream = None
        self.n_frames = 0

    def __enter__(self) -> VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fmt = None if self.path.suffix else "mp4"
        with ExitStack() as stack:
            self.tmp = stack.enter_context(atomic_path(self.path))
            try:
                self.container = av.open(str(self.tmp), mode="w", format=fmt)
            except (av.FFmpegError, OSError, ValueError) as e:
                raise UserError(f"{self.path}: cannot write a video here ({e}); use a .mp4 or .mkv name "
                                "in a writable folder") from None
            self._atomic = stack.pop_all()
        return self

    def write(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise UserError(f"{self.path}: frames must be uint8 [H,W,3] RGB, got {frame.dtype} {frame.shape}")
        h, w = frame.shape[:2]
        if self.stream is None:
            if h % 2 or w % 2:
                raise UserError(f"{self.path}: H.264 yuv420p needs an even frame size, got {h}x{w}; "
                                "crop or pad the frames by one pixel")
            self.stream = self.container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self.stream.width, self.stream.height = w, h
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": str(self.crf)}
        elif (h, w) != (self.stream.height, self.stream.width):
            raise UserError(f"{self.path}: frame {self.n_frames} is {h}x{w}, earlier frames are "
                            f"{self.stream.height}x{self.stream.width}; every frame must have the same size")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        with self._writing():
            self.container.mux(self.stream.encode(video_frame))
        self.n_frames += 1

    def _writing(self):
        """A failed write (full disk, no permission) -> a UserError naming the output, not its temporary name."""
        return writing(self.path, also=(av.FFmpegError,))

    def __exit__(self, exc_type, exc, tb) -> None:
        """Finish the file; atomic_path then renames it to self.path, or removes it after any error."""
        try:
            self._close(flush=exc_type is None)
        except BaseException as error:
            self._atomic.__exit__(type(error), error, error.__traceback__)
            if exc_type is None:
                raise
            return  # the error that ended the block is the one to report
        self._atomic.__exit__(exc_type, exc, tb)

    def _close(self, flush: bool) -> None:
        with self._writing():
            try:
                if flush and self.stream is not None:
                    self.container.mux(self.stream.encode(None))  # flush the encoder
            finally:
                self.container.close()  # writes the index (moov) of an mp4
        if flush and self.stream is None:
            raise UserError(f"{self.path}: no frames were written")
