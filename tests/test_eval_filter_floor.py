"""tools/eval_filter_floor.py: what the recursive-filter bar asks of a clip's own footage (issue 25)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vid2vid.config import Size

TOOL = Path(__file__).resolve().parents[1] / "tools" / "eval_filter_floor.py"
_spec = importlib.util.spec_from_file_location("eval_filter_floor", TOOL)
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)
ROWS, chunks, measure, ratio = tool.ROWS, tool.chunks, tool.measure, tool.ratio


def scene(h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    """A smooth random texture [3,H,W] in [0.2, 0.8]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 8, w // 8, generator=g)
    return (0.2 + 0.6 * F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1))[0]


def test_sensor_noise_makes_the_footage_fail_its_own_filter():
    """A still scene with fresh noise every frame: the filter averages the noise away, so the footage flickers more
    than its filtered self even at the filtered frames' detail."""
    g = torch.Generator().manual_seed(1)
    still = scene()
    frames = ((still + 0.03 * torch.randn(14, *still.shape, generator=g)).clamp(0, 1) * 255).round() / 255
    r = measure(frames)
    assert r[ROWS[1]]["e_warp"] < 0.5 * r[ROWS[0]]["e_warp"]
    assert r[ROWS[1]]["detail"] < 1 and r[ROWS[2]]["detail"] == pytest.approx(r[ROWS[1]]["detail"], rel=0.02)
    assert ratio(r) > 1.5


def test_a_video_that_never_changes_passes_its_own_filter():
    """Nothing flickers, nothing to filter: every row's E_warp is zero up to roundoff (their ratio is roundoff over
    roundoff, not asserted) and the filter keeps the detail."""
    frames = scene().expand(8, -1, -1, -1).clone()
    r = measure(frames)
    assert all(r[row]["e_warp"] < 1e-6 for row in ROWS)  # measured <= 3.3e-10 (AMD EPYC); noise: 1.6e-3
    assert r[ROWS[1]]["detail"] == pytest.approx(1.0, abs=0.01)


def test_chunks_come_from_the_tail_resized_to_8_bits(tmp_path):
    for t in range(20):  # frame t is grey level 10 t
        cv2.imwrite(str(tmp_path / f"{t:05d}.png"), np.full((16, 24, 3), 10 * t, np.uint8))
    got = chunks(str(tmp_path), Size(8, 12), frames=5, count=3, tail=0.5)
    assert [c.shape for c in got] == [(5, 3, 8, 12)] * 2  # frames 10-14 and 15-19: a third would pass the end
    assert [round(float(c[0].mean()) * 255) for c in got] == [100, 150]


def test_bad_input_exits_2_with_one_line(tmp_path):
    for t in range(6):
        cv2.imwrite(str(tmp_path / f"{t:05d}.png"), np.zeros((8, 8, 3), np.uint8))
    for args in ([str(tmp_path / "missing.mp4")], [str(tmp_path), "--frames", "29"], [str(tmp_path), "--size", "8x"]):
        run = subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120)
        assert run.returncode == 2, (args, run.stderr)
        assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
