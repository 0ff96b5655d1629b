"""NVIDIA's original vid2vid generator timed beside ours, in the same run (`tools/bench.py render`).

    python tools/bench.py render --original-code PATH [--size 256x512 --threads 2 --frames 10]

PATH: a checkout of NVIDIA/vid2vid (its models/networks.py; also read from $VID2VID_ORIGINAL_CODE). Its code is
non-commercial: it is imported from the user's checkout and run, never copied here. Without it the row says so
and the benchmark goes on.

The original's CompositeGenerator is built with the reference configuration through its own constructor and norm
(instance norm with running statistics, called in train mode under no_grad, as its test.py runs it), loaded
with OUR export's weights (our key map read backwards: vid2vid.interop.originals.vid2vid_g0_name), and called on
the very inputs our renderer's step used (the history before the step + the current frame's semantics). Each frame times
ours (VideoRenderer.step: input checks, semantics, history, the uint8 copy included) and then the original's
forward; both medians, their ratio, and the largest difference between the two outputs (uint8 levels) are reported.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import statistics
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from bench import figure
from einops import rearrange

from vid2vid.imaging import to_uint8
from vid2vid.interop.originals import vid2vid_g0_name
from vid2vid.render import VideoRenderer

ENV = "VID2VID_ORIGINAL_CODE"


def original_code(path: str | Path | None) -> Path | None:
    """The checkout to use (argument, else $VID2VID_ORIGINAL_CODE), or None when neither names one."""
    path = path or os.environ.get(ENV)
    return Path(path) if path else None


@contextlib.contextmanager
def as_the_fixtures_ran_it():
    """The original's forward on a CPU, as shared/fixtures' original-code runs did: its .cuda(gpu_id) calls keep
    the tensors where they are, and its grid_sample gets align_corners=True (the geometry of its linspace(-1, 1)
    grid; torch >= 1.3 would silently use False)."""
    saved = torch.Tensor.cuda, F.grid_sample
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    F.grid_sample = functools.partial(saved[1], align_corners=True)
    try:
        yield
    finally:
        torch.Tensor.cuda, F.grid_sample = saved


def load_networks(code: Path) -> ModuleType:
    """The checkout's models/networks.py as a module (it imports only torch and numpy)."""
    path = code / "models" / "networks.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; --original-code must be a checkout of NVIDIA/vid2vid")
    spec = importlib.util.spec_from_file_location("original_vid2vid_networks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def original_generator(networks: ModuleType, renderer: VideoRenderer) -> torch.nn.Module:
    """The original's CompositeGenerator of the renderer's (single-scale) model, holding the renderer's weights."""
    m, ours = renderer.cfg.model, renderer.export.generator
    per_frame = ours.scales[0].label_encoder[1].in_channels // m.n_frames_G
    net = networks.CompositeGenerator(SimpleNamespace(fp16=False), per_frame * m.n_frames_G, 3,
                                      3 * (m.n_frames_G - 1), m.ngf, m.n_downsample, m.n_blocks, m.use_fg, False,
                                      networks.get_norm_layer("instance"))
    state = ours.state_dict()
    weights = {k: state[vid2vid_g0_name(k)] for k in net.state_dict() if k.split(".")[-1] in ("weight", "bias")}
    missing = [k for k in net.load_state_dict(weights, strict=False).missing_keys
               if k.split(".")[-1] in ("weight", "bias")]
    assert not missing, missing
    return net.train()  # batch statistics, as the original's test.py


def original_inputs(renderer: VideoRenderer, history) -> tuple[torch.Tensor, ...]:
    """(input [1,N*C,H,W], img_prev [1,3(N-1),H,W], mask [1,1,H,W]) of the frame the renderer just made, from the
    history before that step and the current semantics (the last labels of the history after it)."""
    labels = torch.cat([history.labels, renderer.history.labels[:, -1:]], 1)  # [1,N,C,H,W]
    fg = renderer.export.generator.scales[0].fg_labels
    mask = labels[:, -1, fg].sum(1, keepdim=True).clamp(0, 1)
    return rearrange(labels, "b n c h w -> b (n c) h w"), rearrange(history.frames, "b n c h w -> b (n c) h w"), mask


def timed_pair(renderer: VideoRenderer, net: torch.nn.Module, source, frames: int) -> dict[str, list]:
    """Per timed frame: ours (VideoRenderer.step) then the original's forward on the same inputs."""
    times = {"ours": [], "original": [], "levels": []}
    warmup = 2 * renderer.n_seed + 2
    for t in range(frames + warmup):
        history = renderer.history
        began = time.perf_counter()
        ours = renderer.step(*source(t))
        spent = time.perf_counter() - began
        if history is None or not history.full:  # seed frames, and raw-only frames of a zeros history
            continue
        inputs = original_inputs(renderer, history)
        with torch.no_grad(), as_the_fixtures_ran_it():
            began = time.perf_counter()
            final = net(*inputs, None, None, None, False)[0]
            theirs_s = time.perf_counter() - began
        if t >= warmup:
            theirs = to_uint8(final[..., : renderer.size.h, : renderer.size.w])[0]
            times["ours"].append(spent)
            times["original"].append(theirs_s)
            times["levels"].append(int(np.abs(ours.astype(int) - theirs.astype(int)).max()))
    return times


def original_rows(export: Path, code: Path | None, frames: int, source) -> dict:
    """The rows: ours and the original's s/frame (median), the ratio, and the outputs' largest difference."""
    if code is None:
        return {"original generator": f"skipped: pass --original-code PATH (a checkout of NVIDIA/vid2vid) or set {ENV}"}
    try:
        networks = load_networks(code)
    except Exception as e:  # an unreadable or foreign checkout: the rest of the benchmark still counts
        return {"original generator": f"skipped: {type(e).__name__}: {str(e)[:200]}"}
    renderer = VideoRenderer(export, first_frame="zeros", device="cpu")
    times = timed_pair(renderer, original_generator(networks, renderer), source, frames)
    ours, theirs = statistics.median(times["ours"]), statistics.median(times["original"])
    return {f"original CompositeGenerator forward, s/frame (median of {frames})": figure(theirs, "s"),
            "ours, eager fp32 VideoRenderer.step, interleaved": figure(ours, "s", theirs, "the original, same run"),
            "largest output difference, uint8 levels": figure(max(times["levels"]), "")}

