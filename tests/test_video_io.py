"""video_io: H.264 round trip, probe, random access, frame folders, atomic writes, errors naming the file."""

import cv2
import numpy as np
import pytest

from vid2vid.errors import DataError, UserError
from vid2vid.video_io import VideoIndex, VideoWriter, iter_frames, probe, read_image


def _clip(n=12, h=64, w=96):
    """A moving smooth pattern: frames [n,h,w,3] uint8."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for t in range(n):
        r = 128 + 100 * np.sin((x + 2 * t) / 9)
        g = 128 + 100 * np.cos((y - t) / 7)
        b = 128 + 60 * np.sin((x + y + 3 * t) / 13)
        frames.append(np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8))
    return np.stack(frames)


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return 10 * np.log10(255**2 / mse)


def test_h264_round_trip(tmp_path):
    frames = _clip()
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, fps=12.5, crf=18) as writer:
        for f in frames:
            writer.write(f)
    assert probe(path) == (12, 64, 96, 12.5)
    back = np.stack(list(iter_frames(path)))
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert _psnr(back, frames) > 35
    assert _psnr(back[::-1], frames) < 25  # order is kept
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_random_access_matches_sequential_decoding(tmp_path):
    frames = _clip(n=40)
    path = tmp_path / "long.mkv"
    with VideoWriter(path, fps=10) as writer:
        for f in frames:
            writer.write(f)
    seq = list(iter_frames(path))
    index = VideoIndex(path)
    assert len(index) == 40 and index.seekable
    picks = [33, 5, 6, 39, 0, 5]
    for i, got in zip(picks, index.read(picks)):
        assert np.array_equal(got, seq[i])
    with pytest.raises(IndexError):
        index.read([40])


def test_random_access_without_trustworthy_timestamps(vtest_avi):
    """AVI with B-frames: timestamps are decode-order counters; reads fall back to counting frames."""
    path = vtest_avi
    index = VideoIndex(path)
    assert not index.seekable
    seq = [f for _, f in zip(range(8), iter_frames(path))]
    for i, got in zip([7, 2, 3], index.read([7, 2, 3])):
        assert np.array_equal(got, seq[i])


def test_writer_is_atomic(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(path, fps=10) as writer:
            writer.write(_clip(n=1)[0])
            raise RuntimeError("crash while rendering")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="even frame size"):
        with VideoWriter(path, fps=10) as writer:
            writer.write(np.zeros((63, 96, 3), np.uint8))
    with pytest.raises(UserError, match="frame 1 is 32x32"):
        with VideoWriter(path, fps=10) as writer:
            writer.write(np.zeros((64, 96, 3), np.uint8))
            writer.write(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(UserError, match="no frames"):
        with VideoWriter(path, fps=10):
            pass
    assert list(tmp_path.iterdir()) == []


def test_frame_folders(tmp_path):
    frames = _clip(n=3)
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), f[..., ::-1])
    (tmp_path / "notes.txt").write_text("ignored")
    assert probe(tmp_path) == (3, 64, 96, None)
    assert np.array_equal(np.stack(list(iter_frames(tmp_path))), frames)  # PNG: lossless, RGB order


def test_bad_files_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(DataError, match="garbage.mp4"):
        probe(garbage)
    with pytest.raises(DataError, match="garbage.mp4"):
        list(iter_frames(garbage))
    with pytest.raises(DataError, match="missing.mp4"):
        probe(tmp_path / "missing.mp4")
    png = tmp_path / "cut.png"
    ok, data = cv2.imencode(".png", _clip(n=1)[0])
    png.write_bytes(data.tobytes()[: len(data) // 2])
    with pytest.raises(DataError, match="cut.png"):
        read_image(png)
