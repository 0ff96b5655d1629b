"""`vid2vid demo` (make demo) end to end at a minimal size: both models train on time, the held-out sequences
are rendered and measured, the table, videos and pictures exist, and a second run reuses everything."""

import json
import subprocess
import sys
from pathlib import Path

from vid2vid.video_io import probe

ROOT = Path(__file__).resolve().parent.parent
TINY = ["data.synthetic={sequences: 2, test_sequences: 1, frames: 6, size: 32x64, seed: 3}", "data.load_size=32x64",
        "data.crop_size=32x64", "model.ngf=8", "model.n_blocks=1", "discriminator.ndf=8", "discriminator.num_D=1",
        "train.sample_every=1000", "train.log_every=1"]


def demo(tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "vid2vid", "demo", "--minutes", "0.05", "--out", str(tmp_path / "runs"),
           "--device", "cpu", "--segmenter-steps", "5", "--set", f"data.root={tmp_path / 'data'}", *TINY]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={"OMP_NUM_THREADS": "1",
                                                                             "PATH": "/usr/bin:/bin"})


def test_demo_trains_both_models_measures_them_and_reuses_its_work(tmp_path):
    first = demo(tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = tmp_path / "runs" / "0.05min"
    result = json.loads((out / "results.json").read_text())
    table = first.stdout[first.stdout.index("model | trained"):]
    for row in ("real frames |", "per-frame pix2pixHD |", "per-frame + blur |", "per-frame filtered |", "vid2vid |",
                "vid2vid vs per-frame: E_warp x", "at matched detail (bar: <= 0.6)", "detail (aligned)"):
        assert row in table, table
    assert set(result["quality"]) == {"real frames", "per-frame", "per-frame + blur", "per-frame filtered", "vid2vid"}
    trained = result["trained"]
    assert set(trained) == {"per-frame", "vid2vid"} and all(t["steps"] >= 1 for t in trained.values())
    assert f"model.init_from: the image branch starts from {out / 'per_frame' / 'export'}" in first.stdout
    assert 0 <= result["quality"]["vid2vid"]["miou"] <= 1 and result["quality"]["real frames"]["miou"] > 0
    pictures = result["pictures"]
    side = probe(pictures["side_by_side"])
    assert (side.width, side.height, side.n_frames) == (5 * 64, 32, 6)  # labels | 3 videos + filtered | real
    assert pictures["strip_frames"] == [0, 5]  # frames 0, 10, 20, 29 clamped to the 6 frames
    assert Path(pictures["strip"]).stat().st_size > 0 and Path(pictures["flicker_plot"]).is_file()
    for rows in result["rows"].values():
        assert all(probe(r["mp4"]).n_frames == 6 for r in rows)

    again = demo(tmp_path)  # everything exists: no training, no rendering
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already spent" in again.stdout and "reusing" in again.stdout and "loaded from" in again.stdout
    reused = json.loads((out / "results.json").read_text())
    assert reused["fingerprint"] == result["fingerprint"]
    assert reused["wall_minutes"] == result["wall_minutes"]  # the measured demo's time, not the reuse's
