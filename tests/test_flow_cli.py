"""`python -m flow A.png B.png --out f.flo`: OpenCV reads what it writes; bad input exits 2."""

import subprocess
import sys

import cv2
import numpy as np
import torch
from torchvision.models.optical_flow import raft_small as tv_raft_small

from flow.__main__ import main


def write_pair(folder, shift=(3, 2), size=(64, 80)):
    rng = np.random.default_rng(0)
    height, width = size
    canvas = cv2.resize(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8), (width + 16, height + 16),
                        interpolation=cv2.INTER_CUBIC)
    dx, dy = shift
    cv2.imwrite(str(folder / "a.png"), canvas[8 : 8 + height, 8 : 8 + width])
    cv2.imwrite(str(folder / "b.png"), canvas[8 - dy : 8 - dy + height, 8 - dx : 8 - dx + width])
    return folder / "a.png", folder / "b.png"


def test_cli_dis_writes_flo_that_opencv_reads(tmp_path):
    a, b = write_pair(tmp_path)
    result = subprocess.run([sys.executable, "-m", "flow", str(a), str(b), "--out", str(tmp_path / "f.flo"),
                             "--viz", str(tmp_path / "f.png"), "--model", "dis"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    flow = cv2.readOpticalFlow(str(tmp_path / "f.flo"))
    assert flow.shape == (64, 80, 2)
    assert np.abs(np.median(flow[16:-16, 16:-16], axis=(0, 1)) - [3, 2]).max() < 0.5  # the texture moved (3, 2)
    assert cv2.imread(str(tmp_path / "f.png")).shape == (64, 80, 3)


def test_cli_raft_with_weights_file(tmp_path):
    a, b = write_pair(tmp_path)
    torch.manual_seed(0)
    torch.save(tv_raft_small().state_dict(), tmp_path / "w.pth")
    code = main([str(a), str(b), "--out", str(tmp_path / "f.flo"), "--model", "raft_small",
                 "--weights", str(tmp_path / "w.pth"), "--iters", "2"])
    assert code == 0
    flow = cv2.readOpticalFlow(str(tmp_path / "f.flo"))
    assert flow.shape == (64, 80, 2) and np.isfinite(flow).all()


def test_cli_bad_input_exits_2_with_message(tmp_path, capsys):
    a, _ = write_pair(tmp_path)
    assert main([str(a), str(tmp_path / "missing.png"), "--out", str(tmp_path / "f.flo"), "--model", "dis"]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert main([str(a), str(a), "--out", str(tmp_path / "f.flo"), "--weights", str(tmp_path / "no.pth")]) == 2
    assert "no.pth" in capsys.readouterr().err
    assert not (tmp_path / "f.flo").exists()
