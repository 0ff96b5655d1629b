"""`vid2vid prepare video IN OUT --labels face`: the original's face layout (frames + 68 landmarks per frame) from a
tiny clip of the astronaut's head (scikit-image's public-domain photo), through the command line."""

import subprocess
import sys

import numpy as np
import pytest
from test_landmarks import affine, blank_face, head, moved

from vid2vid.data.keypoint_files import read_keypoints
from vid2vid.landmarks import open_backend
from vid2vid.video_io import VideoWriter, read_image


def prepare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vid2vid", "prepare", "video", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    """8 frames (256x256) of the head moving right 2 px a frame, the face blanked in frames 3 and 4."""
    path = tmp_path_factory.mktemp("clip") / "talk.mp4"
    image = head()
    with VideoWriter(path, fps=10, crf=12) as writer:
        for t in range(8):
            frame = moved(image, affine(2 * t - 8, 0, 0, 1.0))
            writer.write(blank_face(frame) if t in (3, 4) else frame)
    return path


@pytest.mark.parametrize("landmarks", ["dlib", "mediapipe"])
def test_prepare_face_layout(face_clip, tmp_path, landmarks):
    if landmarks == "mediapipe" and sys.version_info >= (3, 13):
        pytest.skip("mediapipe 0.10.14 has no wheels for Python 3.13+")
    out = tmp_path / "face"
    done = prepare(face_clip, out, "--labels", "face", "--landmarks", landmarks, "--seq-len", "3",
                   "--test-fraction", "0.25")
    assert done.returncode == 0, done.stderr
    assert "2 of 8 frames had no face" in done.stdout
    assert "warning: 25% of the frames had no face" in done.stdout  # 2 of 8: above the 20% that warns
    assert ("--landmarks mediapipe finds turned faces" in done.stdout) == (landmarks == "dlib")
    sequences = {"train": {"seq_0000": 3, "seq_0001": 3}, "test": {"seq_0000": 2}}
    assert sorted(p.name for p in out.iterdir()) == ["test_img", "test_keypoints", "train_img", "train_keypoints"]
    tracks = []
    for phase, names in sequences.items():
        assert sorted(p.name for p in (out / f"{phase}_img").iterdir()) == sorted(names)
        for name, count in names.items():
            stems = [f"{j:05d}" for j in range(count)]
            assert sorted(p.stem for p in (out / f"{phase}_img" / name).glob("*.png")) == stems
            assert sorted(p.stem for p in (out / f"{phase}_keypoints" / name).glob("*.txt")) == stems
            tracks += [read_keypoints(out / f"{phase}_keypoints" / name / f"{s}.txt") for s in stems]
    track = np.stack(tracks)  # [8,68,2] in frame order
    assert read_image(out / "train_img" / "seq_0000" / "00000.png").shape == (256, 256, 3)
    shift = (track - track[0]).mean(1)[:, 0]  # the face's x motion per frame
    np.testing.assert_allclose(shift, 2 * np.arange(8), atol=1.5)  # the blanked frames 3, 4 interpolated too


def test_prepare_face_size_scales_points(face_clip, tmp_path):
    """With --size the points are in the written frames' pixels."""
    out = tmp_path / "face"
    done = prepare(face_clip, out, "--labels", "face", "--size", "192x192", "--seq-len", "8", "--test-fraction", "0")
    assert done.returncode == 0, done.stderr
    frame = read_image(out / "train_img" / "seq_0000" / "00000.png")
    assert frame.shape == (192, 192, 3)
    points = read_keypoints(out / "train_keypoints" / "seq_0000" / "00000.txt")
    (full,) = open_backend("dlib").detect(moved(head(), affine(-8, 0, 0, 1.0)))
    assert np.abs(points - ((full + 0.5) * 0.75 - 0.5)).mean() < 2.0


def test_prepare_no_face_exits_2_naming_the_video(tmp_path):
    video = tmp_path / "noface.mp4"
    with VideoWriter(video, fps=10) as writer:
        for t in range(6):
            writer.write(np.tile(np.linspace(0, 255, 96, dtype=np.uint8)[None, :, None], (64, 1, 3)) // (t + 1))
    out = tmp_path / "face"
    done = prepare(video, out, "--labels", "face", "--seq-len", "3")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and str(video) in done.stderr and "no face" in done.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [video]  # nothing half-written


def test_landmarks_only_with_face_labels(face_clip, tmp_path):
    done = prepare(face_clip, tmp_path / "out", "--labels", "edges", "--landmarks", "dlib")
    assert done.returncode == 2 and "--labels face" in done.stderr


def test_prepare_train_render_through_the_cli(face_clip, tmp_path):
    """A tiny clip to a face model and back, every step a `vid2vid` command: prepare (dlib, the default), train the
    per-frame face model a few steps on it, render its held-out keypoint sequence and the raw clip."""
    from vid2vid.video_io import probe

    data, run = tmp_path / "face", tmp_path / "run"
    assert prepare(face_clip, data, "--labels", "face", "--seq-len", "4", "--test-fraction", "0.5").returncode == 0
    small = ["model.ngf=8", "model.n_downsample=2", "model.n_blocks=1", "discriminator.ndf=8", "discriminator.num_D=1",
             "discriminator.n_layers=2", "train.max_steps=2", "train.checkpoint_every=2", "train.sample_every=2"]
    cli = [sys.executable, "-m", "vid2vid"]
    train = subprocess.run([*cli, "train", "--config", "configs/demo_face_image.yaml", "--set", f"data.root={data}",
                            "data.source=folder", "data.load_size=32x32", "data.batch_size=1", f"train.out_dir={run}",
                            *small],
                           capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    for source, extra in ((data / "test_keypoints" / "seq_0000", []), (face_clip, ["--labels", "face"])):
        out = tmp_path / f"{source.stem}.mp4"
        done = subprocess.run([*cli, "render", str(source), str(out), "-m", str(run / "export"), *extra],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert probe(out).n_frames == (4 if extra == [] else 8) and probe(out).height == 32


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="mediapipe 0.10.14 has no wheels for Python 3.13+")
def test_prepare_face_smooth(face_clip, tmp_path):
    """--smooth one-euro: the summary says so; the points stay within a few px of the detector's (the head moves
    2 px a frame) and differ from them after the first frame."""
    tracks = {}
    for smooth in ("none", "one-euro"):
        out = tmp_path / smooth
        done = prepare(face_clip, out, "--labels", "face", "--landmarks", "mediapipe", "--seq-len", "8",
                       "--test-fraction", "0", "--smooth", smooth)
        assert done.returncode == 0, done.stderr
        assert ("smoothed (one-euro:1,0.2)" in done.stdout) == (smooth == "one-euro")
        files = sorted((out / "train_keypoints" / "seq_0000").glob("*.txt"))
        tracks[smooth] = np.stack([read_keypoints(f) for f in files])
    difference = np.abs(tracks["one-euro"] - tracks["none"])
    assert difference[0].max() < 1e-3 and 0 < difference[1:].mean() < 3
