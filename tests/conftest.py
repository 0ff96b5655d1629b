"""Shared test set-up. Tests run on CPU and make their own small data."""

import os

import torch

# Under pytest-xdist each worker gets one thread: two workers already fill this machine's 2 cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
