"""`vid2vid demo --task face --video FILE` end to end at a minimal size, on a short talking-face video made here
(vid2vid.data.synthetic_faces' procedural face, 60 frames): prepare (train = the first 80% of the frames, the rest one
held-out sequence), both models trained on time, the held-out tail rendered and measured, the table, results.json,
the side-by-side mp4 and the strip; a second run reuses everything; bad input exits 2 and writes nothing."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vid2vid import cli
from vid2vid.config import Size
from vid2vid.data.prepare import split_sequences
from vid2vid.data.synthetic_faces import background, draw_frame, face_motion, place, template_face
from vid2vid.demo import MIN_FRAMES, split_ok
from vid2vid.video_io import VideoWriter, probe

ROOT = Path(__file__).resolve().parent.parent
TINY = ["data.load_size=32x32", "model.ngf=8", "model.n_blocks=1", "discriminator.ndf=8", "discriminator.num_D=1",
        "train.sample_every=1000", "train.log_every=1"]


def talking_face(path: Path, frames: int, size: int = 96) -> Path:
    """A procedural talking face (vid2vid.data.synthetic_faces) as an mp4 of `frames` frames."""
    rng = np.random.default_rng(0)
    back, box = background(rng, Size(size, size)), Size(size, size)
    with VideoWriter(path, fps=10, crf=12) as writer:
        for t in range(frames):
            cx, cy, scale, roll, mouth = face_motion(t, frames, box, np.array([0.3, 1.0, 0.05, 2.0]))
            writer.write(draw_frame(place(template_face(mouth), cx, cy, scale, roll), back, (220, 170, 140)))
    return path


def demo(video: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "vid2vid", "demo", "--task", "face", "--video", str(video), "--minutes", "0.05",
           "--out", str(out), "--device", "cpu", "--set", *TINY]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={"OMP_NUM_THREADS": "1",
                                                                             "PATH": "/usr/bin:/bin"})


def test_face_demo_prepares_trains_measures_and_reuses_its_work(tmp_path):
    video = talking_face(tmp_path / "talk.mp4", 60)
    first = demo(video, tmp_path / "runs")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = tmp_path / "runs" / "0.05min"
    for banner in ("[demo 1/4] prepare", "face landmarks by", "train = its first 48 frames, test = the last 12",
                   "[demo 2/4] train per-frame", "[demo 3/4] train vid2vid", "[demo 4/4]"):
        assert banner in first.stdout, first.stdout[-3000:]
    assert f"model.init_from: the image branch starts from {out / 'per_frame' / 'export'}" in first.stdout
    data = tmp_path / "runs" / "data"
    assert sorted(p.name for p in (data / "test_img").iterdir()) == ["seq_0000"]  # the held-out tail: one sequence
    assert len(list((data / "test_img" / "seq_0000").glob("*.png"))) == 12
    table = first.stdout[first.stdout.index("model | trained"):]
    header = "model | trained | PSNR dB | landmark NME (face found %) | detail (aligned)"
    assert table.splitlines()[0].startswith(header)
    for row in ("real frames |", "per-frame pix2pixHD |", "per-frame + blur |", "per-frame filtered |", "vid2vid |",
                "vid2vid vs per-frame: E_warp x", "landmark NME: landmarks detected again"):
        assert row in table, table
    result = json.loads((out / "results.json").read_text())
    assert result["task"] == "face" and result["video"] == str(video) and "quality" not in result
    assert set(result["rows"]) == {"real frames", "per-frame", "per-frame + blur", "per-frame filtered", "vid2vid"}
    for label, rows in result["rows"].items():  # landmarks detected again on every row's frames
        assert all(0 <= row["found"] <= 1 and (row["nme"] is None) == (row["found"] == 0) for row in rows), label
    if result["landmarks"] == "mediapipe":  # it finds the procedural face in the real crops (dlib does not)
        assert result["rows"]["real frames"][0]["found"] == 1 and result["rows"]["real frames"][0]["nme"] < 0.15
    assert all(r["psnr"] > 0 for r in result["rows"]["vid2vid"])
    trained = result["trained"]
    assert set(trained) == {"per-frame", "vid2vid"} and all(t["steps"] >= 1 for t in trained.values())
    pictures = result["pictures"]
    side = probe(pictures["side_by_side"])
    assert (side.width, side.height, side.n_frames) == (4 * 32, 32, 12)  # landmark input | per-frame | vid2vid | real
    assert pictures["strip_frames"] == [0, 10, 11]  # frames 0, 10, 20, 29 clamped to the 12 held-out frames
    assert Path(pictures["strip"]).stat().st_size > 0 and Path(pictures["flicker_plot"]).is_file()

    again = demo(video, tmp_path / "runs")  # everything exists: no preparing, training or rendering
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reusing" in again.stdout and "already spent" in again.stdout and "wrote" not in again.stdout
    reused = json.loads((out / "results.json").read_text())
    assert reused["fingerprint"] == result["fingerprint"] and reused["wall_minutes"] == result["wall_minutes"]


def test_face_demo_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "runs"

    def refused(*args: str) -> str:
        assert cli.main(["demo", "--minutes", "0.05", "--out", str(out), "--device", "cpu", *args]) == 2
        assert not out.exists()
        return capsys.readouterr().err

    err = refused("--task", "face", "--video", str(tmp_path / "missing.mp4"))
    assert "missing.mp4: no such file" in err
    assert "--video FILE" in refused("--task", "face")
    assert "only with --task face" in refused("--video", str(tmp_path / "x.mp4"))
    short = talking_face(tmp_path / "short.mp4", MIN_FRAMES - 1)
    err = refused("--task", "face", "--video", str(short))
    assert f"{short}: {MIN_FRAMES - 1} frames" in err and f"at least {MIN_FRAMES}" in err
    blank = tmp_path / "blank.mp4"
    with VideoWriter(blank, fps=10) as writer:
        for t in range(MIN_FRAMES):
            writer.write(np.full((64, 64, 3), 60 + t, np.uint8))
    err = refused("--task", "face", "--video", str(blank))
    assert str(blank) in err and "no face" in err


def test_face_demo_refuses_another_video_in_the_same_out(tmp_path, capsys):
    (tmp_path / "runs" / "data").mkdir(parents=True)
    (tmp_path / "runs" / "data" / "demo_source.json").write_text(json.dumps({"video": "/x/other.mp4",
                                                                            "landmarks": "dlib"}))
    video = talking_face(tmp_path / "talk.mp4", MIN_FRAMES)
    assert cli.main(["demo", "--task", "face", "--video", str(video), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "prepared from /x/other.mp4" in err and "another --out" in err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["data"]  # nothing trained


@pytest.mark.parametrize("frames", [MIN_FRAMES - 1, MIN_FRAMES, 240])
def test_face_demo_split_is_by_time_with_one_held_out_tail(frames):
    plan = split_sequences(frames, 30, 0.2, 0)
    test = [(start, count) for phase, start, count in plan if phase == "test"]
    assert test == [(frames - round(0.2 * frames), round(0.2 * frames))]  # one contiguous tail
    train = [(start, count) for phase, start, count in plan if phase == "train"]
    assert train[0][0] == 0 and sum(c for _, c in train) == test[0][0]  # the first frames, contiguous
    assert split_ok(frames) == (frames >= MIN_FRAMES)
    if frames == 240:  # prepare's default (no --test-seq-len) still cuts the tail into sequences of --seq-len
        assert split_sequences(frames, 30, 0.2) == [*plan[:-1], ("test", 192, 30), ("test", 222, 18)]
