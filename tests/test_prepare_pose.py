"""`vid2vid prepare video IN OUT --labels pose`: the original's pose layout (frames, OpenPose JSON, body masks) from a
tiny clip of scikit-image's astronaut (public domain) moving right, through the command line; --openpose DIR input."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data

from vid2vid.data.openpose import Person, read_openpose, write_openpose
from vid2vid.video_io import VideoWriter, read_image

FRAMES, SHIFT, EMPTY = 8, 3, 3  # frames of the clip, px it moves right per frame, the frame without her
needs_mediapipe = pytest.mark.skipif(sys.version_info >= (3, 13), reason="mediapipe 0.10.14 has no wheels for 3.13+")


def prepare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vid2vid", "prepare", "video", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def frame(t: int) -> np.ndarray:
    """The astronaut at 256x256, moved SHIFT * t px right (RGB uint8)."""
    image = cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    m = np.float32([[1, 0, SHIFT * t], [0, 1, 0]])
    return cv2.warpAffine(image, m, (256, 256), borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """FRAMES frames (256x256) of the astronaut moving right, frame EMPTY a plain grey picture."""
    path = tmp_path_factory.mktemp("clip") / "astronaut.mp4"
    with VideoWriter(path, fps=10, crf=12) as writer:
        for t in range(FRAMES):
            writer.write(np.full((256, 256, 3), 128, np.uint8) if t == EMPTY else frame(t))
    return path


def written(out, suffix: str, folder: str) -> list:
    """The files of <phase>_<folder> in frame order (train sequences, then test)."""
    files = []
    for phase in ("train", "test"):
        for seq in sorted((out / f"{phase}_{folder}").glob("seq_*")):
            files += sorted(seq.glob(f"*{suffix}"))
    return files


@needs_mediapipe
def test_prepare_pose_layout(clip, tmp_path):
    out = tmp_path / "pose"
    done = prepare(clip, out, "--labels", "pose", "--seq-len", "3", "--test-fraction", "0.25", "--max-frames", "7")
    assert done.returncode == 0, done.stderr
    assert "1 of 7 frames had no person: 1 filled" in done.stdout and "MediaPipe Holistic" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == [f"{phase}_{kind}" for phase in ("test", "train")
                                                     for kind in ("img", "mask", "openpose")]
    # 7 frames: train 5 (3 + 2), test the last 2
    for kind, suffix in (("img", ".png"), ("mask", ".png"), ("openpose", ".json")):
        for phase, names in (("train", {"seq_0000": 3, "seq_0001": 2}), ("test", {"seq_0000": 2})):
            for name, count in names.items():
                stems = sorted(p.stem for p in (out / f"{phase}_{kind}" / name).glob(f"*{suffix}"))
                assert stems == [f"{j:05d}" for j in range(count)], (kind, phase, name)
    people = [read_openpose(path) for path in written(out, ".json", "openpose")]  # frame order
    assert [len(p) for p in people] == [1] * 7  # frame 3 (no person) filled between frames 2 and 4
    necks = np.array([p[0].pose[1] for p in people])  # [7,3]
    assert (necks[:, 2] > 0.5).all()
    np.testing.assert_allclose(necks[EMPTY, :2], (necks[EMPTY - 1, :2] + necks[EMPTY + 1, :2]) / 2)
    times = [t for t in range(7) if t != EMPTY]
    slope, start = np.polyfit(times, necks[times, 0], 1)  # the neck follows her: SHIFT px a frame
    assert abs(slope - SHIFT) < 1 and np.abs(necks[times, 0] - (start + slope * np.array(times))).max() < 4
    masks = [read_image(path, cv2.IMREAD_UNCHANGED) for path in written(out, ".png", "mask")]
    assert all(m.shape == (256, 256) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255} for m in masks)
    assert all(m.mean() > 40 for m in masks)
    # the filled frame's mask: frame 2's (the nearer, before) moved right by the neck's shift
    def moved(shift: int) -> bool:
        return np.array_equal(masks[EMPTY][:, shift:], masks[EMPTY - 1][:, :256 - shift])

    assert any(moved(s) for s in range(SHIFT - 1, SHIFT + 2)) and not moved(0)
    first = read_image(out / "train_img" / "seq_0000" / "00000.png")
    assert first.shape == (256, 256, 3) and np.abs(first.astype(int) - frame(0)).mean() < 6


@needs_mediapipe
def test_prepare_pose_no_person_exits_2(tmp_path):
    video = tmp_path / "empty.mp4"
    with VideoWriter(video, fps=10) as writer:
        for t in range(4):
            writer.write(np.tile(np.linspace(0, 255, 96, dtype=np.uint8)[None, :, None], (64, 1, 3)) // (t + 1))
    out = tmp_path / "pose"
    done = prepare(video, out, "--labels", "pose", "--seq-len", "2")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and str(video) in done.stderr and "no person" in done.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [video]  # nothing half-written


def openpose_folder(tmp_path, n: int):
    """OpenPose-style output for n frames: a person whose nose is at (10 t + 40, 100) and mid-hip 60 px below it in
    frame t, frame 1 empty."""
    folder = tmp_path / "json"
    for t in range(n):
        person = Person()
        person.pose[[0, 8]] = [(10 * t + 40, 100, 0.8), (10 * t + 40, 160, 0.8)]
        write_openpose(folder / f"astronaut_{t:012d}_keypoints.json", [] if t == 1 else [person])
    return folder


def test_prepare_pose_from_openpose_json(clip, tmp_path):
    """--openpose DIR: its people, scaled to --size (pixel centres onto pixel centres); no masks, MediaPipe unused."""
    out = tmp_path / "pose"
    done = prepare(clip, out, "--labels", "pose", "--openpose", openpose_folder(tmp_path, FRAMES), "--size",
                   "128x128", "--seq-len", "4", "--test-fraction", "0")
    assert done.returncode == 0, done.stderr
    assert "1 of 8 frames had no person: 1 filled" in done.stdout and "no body masks" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["train_img", "train_openpose"]
    people = [read_openpose(path) for path in written(out, ".json", "openpose")]
    assert [len(p) for p in people] == [1] * 8  # frame 1 filled: the nose moves linearly
    for t, p in enumerate(people):
        np.testing.assert_allclose(p[0].pose[0], ((10 * t + 40.5) / 2 - 0.5, 100.5 / 2 - 0.5, 0.8))
        assert not p[0].pose[1:8].any() and not p[0].pose[9:].any()  # points not found stay zeros
    assert read_image(out / "train_img" / "seq_0001" / "00000.png").shape == (128, 128, 3)


def test_prepare_pose_follows_one_person(clip, tmp_path):
    """Two people in OpenPose's files: the larger is followed, the other left out (a frame where only the other is
    found is a gap, filled); --all-people keeps both, and the frame without anyone stays empty."""
    folder = openpose_folder(tmp_path, FRAMES)
    for t, path in enumerate(sorted(folder.iterdir())):
        people = read_openpose(path)
        passer_by = Person()
        passer_by.pose[[0, 1]] = [(200, 20, 0.9), (200, 30, 0.9)]  # 10 px tall, far from the other
        write_openpose(path, ([passer_by] + people) if t != 4 else [passer_by])
    out, everyone = tmp_path / "one", tmp_path / "all"
    summaries = []
    for where, extra in ((out, []), (everyone, ["--all-people"])):
        done = prepare(clip, where, "--labels", "pose", "--openpose", folder, "--seq-len", "8", "--test-fraction",
                       "0", *extra)
        assert done.returncode == 0, done.stderr
        summaries.append(done.stdout)
    assert "one person followed" in summaries[0] and "2 of 8 frames had no person: 2 filled" in summaries[0]
    assert "every person as found" in summaries[1] and "0 of 8 frames had no person" in summaries[1]
    people = [read_openpose(path) for path in written(out, ".json", "openpose")]
    assert [len(p) for p in people] == [1] * 8
    np.testing.assert_allclose([p[0].pose[0, 0] for p in people], [10 * t + 40 for t in range(8)])
    assert [len(read_openpose(path)) for path in written(everyone, ".json", "openpose")] == [2, 1, 2, 2, 1, 2, 2, 2]


@needs_mediapipe
def test_prepare_pose_openpose_with_mask(clip, tmp_path):
    out = tmp_path / "pose"
    done = prepare(clip, out, "--labels", "pose", "--openpose", openpose_folder(tmp_path, FRAMES), "--mask",
                   "--seq-len", "8", "--test-fraction", "0")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["train_img", "train_mask", "train_openpose"]
    assert read_image(out / "train_mask" / "seq_0000" / "00000.png", cv2.IMREAD_UNCHANGED).max() == 255


@pytest.mark.parametrize("args, message", [
    (["--labels", "pose", "--openpose", "{json6}"], "6 JSON files, but"),
    (["--labels", "pose", "--openpose", "{missing}"], "no such folder"),
    (["--labels", "pose", "--mask"], "--mask: only with --openpose"),
    (["--labels", "edges", "--openpose", "{json6}"], "--openpose"),
    (["--labels", "face", "--mask"], "--mask: only with --labels pose"),
    (["--labels", "pose", "--all-people"], "--all-people: only with --openpose"),
    (["--labels", "edges", "--all-people"], "--all-people: only with --labels pose"),
    (["--labels", "pose", "--max-frames", "1"], "--max-frames 1: a sequence needs at least 2 frames"),
])
def test_prepare_pose_bad_options_exit_2(clip, tmp_path, args, message):
    folders = {"json6": openpose_folder(tmp_path, 6), "missing": tmp_path / "nothing"}
    out = tmp_path / "pose"
    done = prepare(clip, out, *[a.format(**folders) for a in args])
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()
