"""The one place the vid2vid recurrence over time is written; training and rendering both call it.

    history = start_history(first_frame, labels[:, :N-1], frames[:, :N-1])   # N = G.n_frames_G
    outputs, history = unroll(G, history, labels[:, N-1:])                   # or step() frame by frame
    history = history.detach()                                               # truncated backpropagation

A History holds what generating the next frame needs: the semantics of the N-1 frames before it, the
N-1 outputs (or seed frames) of those frames, and, for warp_features, the image-decoder features of the
newest one. The first N-1 frames of a clip seed the history and are not generated: from the real frames
(first_frame "real"), from frames a per-frame image model made ("image-model:PATH"; the caller passes
those frames), or from zeros ("zeros"), in which case the generator outputs its raw frame (no warp
composition) until N-1 generated frames have replaced the zeros, as the original does.

With several active spatial scales (vid2vid.models.video), every scale keeps its own N-1 previous outputs: `frames`
are the finest active scale's, `coarse_frames` the coarser scales' (coarsest first). A history starts with the
frames at the finest active resolution only; the first step makes the coarse histories as the avg-pool pyramid of
those seed frames (the original's test-time behaviour), and from then on each scale appends its own output.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from vid2vid.errors import ConfigError
from vid2vid.models.video import VideoOutput, pyramid


@dataclass
class History:
    """The generator's memory between frames (oldest first; N = n_frames_G)."""

    labels: torch.Tensor  # [B,N-1,C,H,W] semantics of the N-1 frames before the next one
    frames: torch.Tensor  # [B,N-1,3,H,W] outputs (or seed frames) of those frames
    features: list[torch.Tensor] | None = None  # image-decoder features of the newest frame (warp_features)
    filled: int | None = None  # frames that are not zero padding; None = all (zeros mode starts at 0)
    # the coarser active scales' own previous outputs, coarsest first, [B,N-1,3,H/2^(k-1-s),W/2^(k-1-s)] for
    # scale s of k active ones; None: not made yet (one scale, or before the first step)
    coarse_frames: list[torch.Tensor] | None = None
    shown: torch.Tensor | None = None  # [B,C,H,W] what the newest frame shows (model.warp_gate shown), else None

    @property
    def full(self) -> bool:
        """True once every history frame is a seed or generated frame (then outputs are composed)."""
        return self.filled is None or self.filled >= self.frames.shape[1]

    def detach(self) -> History:
        """The same history cut from the autograd graph (truncated backpropagation through time)."""
        features = None if self.features is None else [f.detach() for f in self.features]
        coarse = None if self.coarse_frames is None else [f.detach() for f in self.coarse_frames]
        return replace(self, labels=self.labels.detach(), frames=self.frames.detach(), features=features,
                       coarse_frames=coarse, shown=None if self.shown is None else self.shown.detach())

    def push(self, window: torch.Tensor, output: VideoOutput, keep_features: bool,
             coarse_frames: list[torch.Tensor] | None = None) -> History:
        """The history after frame t: window [B,N,C,H,W] (the labels the step saw: this history's and frame t's)
        without its oldest frame (a view: no copy), and output.final appended, the oldest dropped; with
        coarser scales (output.coarser), each one's final appended to its previous frames `coarse_frames` (the
        ones that step used). keep_features: keep scale 0's image-decoder features (warp_features)."""
        filled = None if self.full else self.filled + 1
        coarse = None
        if output.coarser:
            coarse = [torch.cat([prev[:, 1:], out.final[:, None]], dim=1)
                      for prev, out in zip(coarse_frames, output.coarser, strict=True)]
        scale0 = output.coarser[0] if output.coarser else output
        return History(labels=window[:, 1:],
                       frames=torch.cat([self.frames[:, 1:], output.final[:, None]], dim=1),
                       features=scale0.image_features if keep_features else None, filled=filled,
                       coarse_frames=coarse, shown=output.shown)


def start_history(first_frame: str, labels: torch.Tensor, frames: torch.Tensor | None = None) -> History:
    """The history before the first generated frame.

    labels [B,N-1,C,H,W]: semantics of the clip's first N-1 frames. frames [B,N-1,3,H,W]: with "real" the
    clip's real frames, with "image-model:PATH" the frames that model made for them; ignored with "zeros".
    """
    if first_frame == "zeros":
        b, n, _, h, w = labels.shape
        return History(labels=labels, frames=labels.new_zeros(b, n, 3, h, w), filled=0)
    if first_frame != "real" and not first_frame.startswith("image-model:"):
        raise ConfigError(f"first_frame: {first_frame!r} is not one of 'real', 'zeros', 'image-model:PATH'")
    if frames is None or frames.shape[:2] != labels.shape[:2] or frames.shape[-2:] != labels.shape[-2:]:
        got = None if frames is None else tuple(frames.shape)
        raise ConfigError(f"first_frame {first_frame!r} needs frames [B,N-1,3,H,W] matching labels "
                          f"{tuple(labels.shape)}, got {got}")
    return History(labels=labels, frames=frames)


def step(G: nn.Module, history: History, labels_t: torch.Tensor) -> tuple[VideoOutput, History]:
    """Generate one frame: labels_t [B,C,H,W] (semantics of frame t, at the finest active scale) -> (its outputs,
    the history after it)."""
    labels = torch.cat([history.labels, labels_t[:, None]], dim=1)  # [B,N,C,H,W], oldest first
    n_coarse = _attribute(G, "active_scales", 1) - 1
    if n_coarse == 0:
        shown = {} if history.shown is None else {"shown": history.shown}  # model.warp_gate shown only
        output = G(labels, history.frames, history.features, raw_only=not history.full, **shown)
        return output, history.push(labels, output, keep_features=uses_features(G))
    coarse = history.coarse_frames
    if coarse is None or len(coarse) != n_coarse:  # the first step: the pyramid of the seed frames
        coarse = pyramid(history.frames, n_coarse + 1)[:-1]
    output = G(labels, history.frames, history.features, raw_only=not history.full, coarse_frames=coarse)
    return output, history.push(labels, output, keep_features=uses_features(G), coarse_frames=coarse)


def uses_features(G: nn.Module) -> bool:
    """G's warp_features, also through DDP (.module) and torch.compile (._orig_mod) wrappers."""
    return bool(_attribute(G, "warp_features", False))


def _attribute(G: nn.Module, name: str, default):
    """An attribute of G, also through DDP (.module) and torch.compile (._orig_mod) wrappers."""
    while G is not None and not hasattr(G, name):
        G = getattr(G, "module", None) or getattr(G, "_orig_mod", None)
    return getattr(G, name, default)


@dataclass
class VideoFrames:
    """Per-frame outputs of an unroll, stacked on dim 1 (T frames)."""

    final: torch.Tensor  # [B,T,3,H,W]
    raw: torch.Tensor  # [B,T,3,H,W]
    flow: torch.Tensor  # [B,T,2,H,W] pixels, frame t -> t-1
    weight: torch.Tensor  # [B,T,1,H,W] weight of the hallucinated frame
    warped: torch.Tensor  # [B,T,3,H,W] previous output warped by flow
    fg_mask: torch.Tensor | None  # [B,T,1,H,W]
    foreground: torch.Tensor | None  # [B,T,3,H,W]
    composed: list[bool]  # per frame: False where the output was raw only (zeros history not yet full)


def unroll(G: nn.Module, history: History, labels: torch.Tensor) -> tuple[VideoFrames, History]:
    """Generate T frames in order: labels [B,T,C,H,W] -> (stacked outputs [B,T,...], the history after them)."""
    if labels.shape[1] == 0:
        raise ValueError("unroll needs at least one frame of labels [B,T,C,H,W], got T = 0")
    outputs, composed = [], []
    for t in range(labels.shape[1]):
        composed.append(history.full)
        output, history = step(G, history, labels[:, t])
        outputs.append(output)

    def stack(name: str) -> torch.Tensor | None:
        values = [getattr(o, name) for o in outputs]
        return None if values[0] is None else torch.stack(values, dim=1)

    frames = VideoFrames(final=stack("final"), raw=stack("raw"), flow=stack("flow"), weight=stack("weight"),
                         warped=stack("warped"), fg_mask=stack("fg_mask"), foreground=stack("foreground"),
                         composed=composed)
    return frames, history
