"""Shared test set-up. Tests run on CPU and make their own small data."""

import os
from contextlib import contextmanager

import pytest
import torch

# Under pytest-xdist each worker gets one thread: two workers already fill this machine's 2 cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@contextmanager
def one_thread():
    """torch on 1 thread inside the block, whatever the test process had: the arithmetic of a launched process
    (OMP_NUM_THREADS=1), so that a comparison with it is equal by construction, not by the CPU's kernels."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Root for configs/tiny.yaml's synthetic dataset; the first training run generates it (ensure_dataset)."""
    return tmp_path_factory.mktemp("data") / "synthetic_tiny"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic street dataset (2 train + 1 test sequences, 10 frames, 128x256, seed 3),
    generated once per test process. Read-only: copy it before changing anything."""
    from vid2vid.config import Size
    from vid2vid.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("synthetic") / "street", sequences=2, test_sequences=1,
                              frames=10, size=Size(128, 256), seed=3)


@pytest.fixture(scope="session")
def vtest_avi():
    """OpenCV's sample video (360x480, 795 frames, AVI/H.264 with B-frames) from the workspace's shared data."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "vtest.avi"
    if not path.is_file():
        pytest.skip(f"{path} not found (sample video of the development workspace)")
    return path


@pytest.fixture(scope="session")
def parity_tool():
    """tools/check_original_parity.py as a module (tools/ is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "check_original_parity.py"
    spec = importlib.util.spec_from_file_location("check_original_parity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
