"""The environment `make install` makes: exactly one OpenCV (every OpenCV wheel installs the same `cv2`), the one
pyproject.toml asks for, with what the project uses (DIS flow) and what mediapipe needs."""

import subprocess
import sys
from pathlib import Path

import cv2

TOOL = Path(__file__).resolve().parents[1] / "tools" / "one_opencv.py"


def test_exactly_one_opencv():
    done = subprocess.run([sys.executable, str(TOOL), "--check"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    wanted = "opencv-contrib-python" if sys.version_info < (3, 13) else "opencv-python-headless"
    assert done.stdout.startswith(f"one OpenCV: {wanted} ")


def test_opencv_has_what_we_use():
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    assert flow is not None and cv2.COLOR_RGB2Lab is not None
