"""`vid2vid check-data`: the summary, and every validation error through the CLI (exit code 2, the
offending file named in the message)."""

import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import yaml

from vid2vid.config import Size
from vid2vid.data.synthetic import generate_synthetic
from vid2vid.video_io import VideoWriter


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """1 train + 1 test sequence of 3 frames, 32x48."""
    return generate_synthetic(tmp_path_factory.mktemp("check") / "tiny", sequences=1, test_sequences=1, frames=3,
                              size=Size(32, 48), seed=1)


def _check_data(root, *overrides):
    config = root.parent / "config.yaml"
    config.write_text(yaml.safe_dump({"data": {"root": str(root), "source": "folder", "load_size": "32x48",
                                               "crop_size": "32x48"}}))
    cmd = [sys.executable, "-m", "vid2vid", "check-data", "--config", str(config)]
    if overrides:
        cmd += ["--set", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_summary(tiny_root):
    result = _check_data(tiny_root)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"dataset {tiny_root}" in out
    assert "train: 1 sequences, 3 frames; sizes 32x48 (3 frames)" in out
    assert "test: 1 sequences, 3 frames" in out
    assert "instance maps: yes; exact flow: yes" in out
    assert "7 road" in out and "23 sky" in out and "of data.label_nc=35 ids used" in out


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _replace_with_size(path, h, w):
    cv2.imwrite(str(path), np.zeros((h, w, 3), np.uint8))


def _label_as_colour(path):
    cv2.imwrite(str(path), cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), cv2.COLOR_GRAY2BGR))


def _video_side(root, damage):
    frames = [cv2.imread(str(p))[..., ::-1] for p in sorted((root / "train_B/seq_0000").glob("*.png"))]
    shutil.rmtree(root / "train_B/seq_0000")
    video = root / "train_B/seq_0000.mp4"
    with VideoWriter(video, fps=10) as writer:
        for f in frames:
            writer.write(np.ascontiguousarray(f))
    damage(video)


CASES = {
    # name: (mutation of a copy of the dataset, extra --set overrides, text the message must contain)
    "truncated frame": (lambda r: _truncate(r / "train_B/seq_0000/00001.png"), [], "train_B/seq_0000/00001.png"),
    "truncated label map": (lambda r: _truncate(r / "test_A/seq_0000/00002.png"), [], "test_A/seq_0000/00002.png"),
    "truncated instance map": (lambda r: _truncate(r / "train_inst/seq_0000/00000.png"), [],
                               "train_inst/seq_0000/00000.png"),
    "truncated flow": (lambda r: _truncate(r / "train_flow/seq_0000/bw_00001.flo"), [],
                       "train_flow/seq_0000/bw_00001.flo"),
    "unreadable video": (lambda r: _video_side(r, lambda v: v.write_bytes(b"garbage" * 50)), [],
                         "train_B/seq_0000.mp4"),
    "truncated video": (lambda r: _video_side(r, _truncate), [], "train_B/seq_0000.mp4"),
    "frame sequences differ": (lambda r: (r / "train_B/seq_0000").rename(r / "train_B/seq_0007"), [],
                               "missing seq_0000"),
    "frame count differs": (lambda r: (r / "train_B/seq_0000/00002.png").unlink(), [],
                            "train_B/seq_0000: sequence 'seq_0000' has 2 frames"),
    "instance count differs": (lambda r: (r / "test_inst/seq_0000/00001.png").unlink(), [],
                               "test_inst/seq_0000: sequence 'seq_0000' has 2 frames"),
    "instance sequences differ": (lambda r: shutil.rmtree(r / "train_inst/seq_0000"), [], "train_inst: instance"),
    "mixed frame sizes": (lambda r: _replace_with_size(r / "train_B/seq_0000/00002.png", 40, 48), [],
                          "train_B/seq_0000/00002.png: size 40x48 differs"),
    "label id too large": (lambda r: None, ["data.label_nc=20", "data.fg_labels=[]"],
                           "label id 2"),  # the synthetic scenes hold ids up to 26; checked below
    "colour label map": (lambda r: _label_as_colour(r / "train_A/seq_0000/00001.png"), [],
                         "train_A/seq_0000/00001.png: label map has 3 channels"),
    "empty dataset": (lambda r: [shutil.rmtree(p) for p in (r / "train_A").iterdir()], [], "empty dataset"),
    "missing phase": (lambda r: None, ["data.phase=val"], "val_A: folder not found"),
    "missing root": (lambda r: shutil.rmtree(r), [], "dataset folder not found"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validation_errors_exit_2_and_name_the_file(tiny_root, tmp_path, case):
    mutate, overrides, expected = CASES[case]
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    mutate(root)
    result = _check_data(root, *overrides)
    assert result.returncode == 2, (result.stdout, result.stderr)
    message = result.stderr
    assert message.startswith("vid2vid: error: ") and "Traceback" not in message
    assert expected in message, message
    if case == "label id too large":
        assert "data.label_nc is 20" in message and "label id 2" in message
        found = int(message.split("label id ")[1].split()[0])
        assert 20 <= found <= 26
