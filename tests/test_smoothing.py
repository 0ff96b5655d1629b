"""Landmark smoothing (vid2vid.landmarks.smoothing): the One-Euro filter on known tracks, gaps, the --smooth option
of `vid2vid prepare video` and `vid2vid render`, and smoothing while a face model's video input streams."""

import sys

import numpy as np
import pytest
from test_landmarks import affine, blank_face, head, moved

from vid2vid import cli
from vid2vid.errors import UserError
from vid2vid.landmarks.smoothing import OneEuro, OneEuroFilter, parse_smoothing, smooth_points, smooth_track
from vid2vid.render.faces import FaceSource, iter_faces
from vid2vid.video_io import VideoWriter

FPS = 30.0


def second_difference(track: np.ndarray) -> float:
    return float(np.abs(track[2:] - 2 * track[1:-1] + track[:-2]).mean())


def test_constant_track_passes_unchanged():
    track = np.broadcast_to(np.random.default_rng(0).uniform(0, 200, (1, 68, 2)), (20, 68, 2)).astype(np.float32)
    np.testing.assert_array_equal(smooth_track(track, FPS, OneEuro()), track)


def test_noise_on_a_slow_track_is_reduced():
    """A slow sway (0.5 Hz, 5 px) with 1 px of noise: the jitter drops by more than half and the smoothed track
    lies closer to the truth than the noisy one."""
    t = np.arange(120) / FPS
    truth = np.zeros((120, 68, 2)) + 100 + 5 * np.sin(2 * np.pi * 0.5 * t)[:, None, None]
    noisy = truth + np.random.default_rng(1).normal(0, 1.0, truth.shape)
    smoothed = smooth_track(noisy, FPS, OneEuro())
    assert second_difference(smoothed) < 0.5 * second_difference(noisy)
    error = lambda x: np.abs(x - truth)[10:].mean()  # noqa: E731 (after the first frames, taken as they come)
    assert error(smoothed) < 0.8 * error(noisy)


def test_large_beta_follows_a_fast_step():
    """A 100 px jump: with a large beta the filter is within 2 px two frames later; without beta it lags far."""
    track = np.zeros((20, 1, 2))
    track[10:] = 100
    fast = smooth_track(track, FPS, OneEuro(1.0, 5.0))
    slow = smooth_track(track, FPS, OneEuro(1.0, 0.0))
    assert np.abs(fast[12] - 100).max() < 2
    assert np.abs(slow[12] - 100).min() > 50


def test_gaps_restart_the_filter():
    """NaN frames stay NaN; the first frame after a gap is taken as it is (the filter restarts); the streaming
    filter restarts on None; smooth_points gives None where there was no face."""
    rng = np.random.default_rng(2)
    track = 50 + rng.normal(0, 1, (12, 68, 2))
    track[5:7] = np.nan
    track[7:] += 30  # the face came back elsewhere
    out = smooth_track(track, FPS, OneEuro())
    assert np.isnan(out[5:7]).all() and not np.isnan(out[:5]).any() and not np.isnan(out[7:]).any()
    np.testing.assert_allclose(out[7], track[7], rtol=1e-6)
    np.testing.assert_allclose(out[0], track[0], rtol=1e-6)
    assert not np.allclose(out[8], track[8])
    f = OneEuroFilter(FPS)
    f(track[0]), f(track[1])
    assert f(None) is None
    np.testing.assert_array_equal(f(track[7]), track[7])
    points = [track[t] if t not in (5, 6) else track[4] for t in range(12)]  # the tracker holds the last points
    found = [t not in (5, 6) for t in range(12)]
    smoothed = smooth_points(points, found, FPS, OneEuro())
    assert smoothed[5] is None and smoothed[6] is None
    np.testing.assert_allclose(smoothed[9], out[9], rtol=1e-6)


def test_parse_smoothing():
    assert parse_smoothing("none") is None
    assert parse_smoothing("one-euro") == OneEuro()
    assert parse_smoothing("one-euro:2,0.05") == OneEuro(2.0, 0.05)
    assert str(OneEuro(2.0, 0.05)) == "one-euro:2,0.05"
    for bad in ("gauss", "one-euro:1", "one-euro:a,b", "one-euro:0,1", "one-euro:1,-1", "one-euro:nan,1",
                "none:1", "one-euro:1,2,3"):
        with pytest.raises(UserError, match=f"--smooth '{bad}'"):
            parse_smoothing(bad)


@pytest.mark.parametrize("argv", [
    ["prepare", "video", "missing.mp4", "OUT", "--labels", "face", "--smooth", "one-euro:0,1"],
    ["prepare", "video", "missing.mp4", "OUT", "--labels", "edges", "--smooth", "one-euro"],
    ["render", "missing.mp4", "out.mp4", "-m", "no_export", "--labels", "face", "--smooth", "kalman"],
])
def test_cli_rejects_bad_smoothing(argv, capsys, tmp_path, monkeypatch):
    """Exit 2 naming --smooth, before any file is read."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--smooth" in err and ("one-euro:MIN_CUTOFF,BETA" in err or "only with --labels face" in err)
    assert not (tmp_path / "OUT").exists()


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="mediapipe 0.10.14 has no wheels for Python 3.13+")
def test_detected_landmarks_are_smoothed_while_streaming(tmp_path):
    """A face model's video input with --smooth: the first frame and the first after a gap are the detector's own
    points, the frames between are smoothed; the gap keeps the last smoothed points."""
    path = tmp_path / "talk.mp4"
    with VideoWriter(path, fps=10, crf=12) as writer:
        for t in range(8):
            frame = moved(head(), affine(3 * t, 0, 0, 1.0))
            writer.write(blank_face(frame) if t == 4 else frame)
    raw = [f["landmarks"] for f in iter_faces(FaceSource("talk", None, path, detector="mediapipe"))]
    smooth = [f["landmarks"] for f in iter_faces(FaceSource("talk", None, path, detector="mediapipe",
                                                            smooth=OneEuro(1.0, 0.0)))]
    assert len(smooth) == 8 and all(p.dtype == np.float32 and p.shape == (68, 2) for p in smooth)
    np.testing.assert_allclose(smooth[0], raw[0])
    np.testing.assert_allclose(smooth[5], raw[5])  # restarted after the gap
    np.testing.assert_allclose(smooth[4], smooth[3])  # the gap holds the last smoothed points
    assert (raw[3] - smooth[3]).mean(0)[0] > 3  # the face moves right 3 px a frame; the slow filter lags behind
