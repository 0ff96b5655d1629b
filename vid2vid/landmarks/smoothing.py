"""Landmark smoothing over time: the One-Euro filter (Casiez, Roussel, Vogel, CHI 2012), an adaptive low-pass per
coordinate. Each frame, the speed of the signal (px/s, itself low-passed at d_cutoff Hz) sets the cutoff:
cutoff = min_cutoff + beta * |speed|; slow motion is smoothed hard (removes detector jitter), fast motion passes with
little lag. With sampling period T = 1/fps, a low-pass at cutoff f is x_hat = a x + (1 - a) x_hat_prev with
a = 1 / (1 + 1 / (2 pi f T)).

    parse_smoothing("one-euro:2,0.05", "--smooth") -> OneEuro(min_cutoff=2.0, beta=0.05)   ("none" -> None)
    smooth_track(track [T,68,2], fps, OneEuro())   # frames without a face: NaN in, NaN out

Gaps: a frame without a face (None in the streaming filter, NaN in a track) restarts the filter: the first frame
after it is taken as detected. A gap is not smoothed across (the held or interpolated points of a gap are not the
face's motion); prepare fills gaps after smoothing (fill_gaps), render keeps the last smoothed points through them.
min_cutoff is in Hz, beta in 1/px (speeds are in px/s: the parameters depend on the video's resolution). The defaults
(1 Hz, 0.2) were chosen on a hand-held 480x640 talking head and a noisy synthetic track (tools/eval_smoothing.py,
BENCHMARKS.md "Landmark smoothing (issue 28)"): the lowest error against the synthetic truth, ~2 px of lag behind a
shaking camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vid2vid.errors import UserError

SMOOTHINGS = ("none", "one-euro")
DEFAULT_FPS = 30.0  # a folder of frames has no frame rate


@dataclass(frozen=True)
class OneEuro:
    """The filter's parameters: min_cutoff (Hz, the cutoff at rest), beta (how fast the cutoff rises with the speed,
    1/px), d_cutoff (Hz, the low-pass of the speed)."""

    min_cutoff: float = 1.0
    beta: float = 0.2
    d_cutoff: float = 1.0

    def __str__(self) -> str:
        return f"one-euro:{self.min_cutoff:g},{self.beta:g}"


def smoothing_factor(cutoff: np.ndarray | float, fps: float) -> np.ndarray | float:
    """a of the one-pole low-pass x_hat = a x + (1 - a) x_hat_prev at `cutoff` Hz, sampled at fps."""
    return 1.0 / (1.0 + fps / (2 * math.pi * cutoff))


class OneEuroFilter:
    """The One-Euro filter over arrays of one shape (e.g. [68,2] points) given one frame at a time.

        f = OneEuroFilter(fps=25)
        smoothed = f(points)   # float64 array like points
        f(None)                # a frame without a face: the filter restarts at the next one (returns None)
    """

    def __init__(self, fps: float, params: OneEuro = OneEuro()):
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.fps, self.params = fps, params
        self.reset()

    def reset(self) -> None:
        self.x: np.ndarray | None = None  # the last output
        self.dx: np.ndarray | None = None  # the last low-passed speed, units per second

    def __call__(self, x: np.ndarray | None) -> np.ndarray | None:
        if x is None:
            self.reset()
            return None
        x = np.asarray(x, np.float64)
        if self.x is None:
            self.x, self.dx = x.copy(), np.zeros_like(x)
            return x.copy()
        p = self.params
        speed = (x - self.x) * self.fps
        self.dx = self.dx + smoothing_factor(p.d_cutoff, self.fps) * (speed - self.dx)
        a = smoothing_factor(p.min_cutoff + p.beta * np.abs(self.dx), self.fps)
        self.x = self.x + a * (x - self.x)
        return self.x.copy()


def smooth_points(points: list[np.ndarray | None], found: list[bool], fps: float, params: OneEuro
                  ) -> list[np.ndarray | None]:
    """Per-frame points and whether each had the face (FaceTracker's) -> the smoothed points of the frames with the
    face, None for the others (filled afterwards by fill_gaps)."""
    track = np.stack([p if ok else np.full((68, 2), np.nan) for p, ok in zip(points, found)]) if points else None
    return [] if track is None else [p if ok else None for p, ok in zip(smooth_track(track, fps, params), found)]


def smooth_track(track: np.ndarray, fps: float, params: OneEuro) -> np.ndarray:
    """track [T,...] (a frame without a face: all NaN) -> the One-Euro filtered track, float32 like it; each run of
    frames with a face is filtered from its first frame, NaN frames stay NaN."""
    f = OneEuroFilter(fps, params)
    out = np.full(track.shape, np.nan, np.float32)
    for t, x in enumerate(np.asarray(track, np.float64)):
        y = f(None if np.isnan(x).any() else x)
        if y is not None:
            out[t] = y
    return out


def parse_smoothing(text: str, option: str = "--smooth") -> OneEuro | None:
    """none -> None; one-euro -> OneEuro() (the defaults); one-euro:MIN_CUTOFF,BETA -> OneEuro(MIN_CUTOFF, BETA)
    (MIN_CUTOFF > 0 Hz, BETA >= 0). Anything else is a UserError naming the option, the value and the forms."""
    forms = (f"use none, one-euro (= {OneEuro()}) or one-euro:MIN_CUTOFF,BETA with MIN_CUTOFF > 0 (Hz) and BETA "
             ">= 0, e.g. one-euro:1,0.2")
    name, sep, values = text.strip().partition(":")
    if name == "none" and not sep:
        return None
    if name != "one-euro":
        raise UserError(f"{option} {text!r}: unknown smoothing; {forms}")
    if not sep:
        return OneEuro()
    try:
        min_cutoff, beta = (float(v) for v in values.split(","))
    except ValueError:
        raise UserError(f"{option} {text!r}: expected two numbers after the colon; {forms}") from None
    if not (min_cutoff > 0 and math.isfinite(min_cutoff) and beta >= 0 and math.isfinite(beta)):
        raise UserError(f"{option} {text!r}: MIN_CUTOFF must be > 0 and BETA >= 0 (both finite); {forms}")
    return OneEuro(min_cutoff, beta)
