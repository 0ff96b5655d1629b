"""The one recurrence: unroll = repeated step, first-frame modes, truncated backpropagation."""

import pytest
import torch

from flow import backward_warp
from vid2vid.data.encoding import semantic_input
from vid2vid.errors import ConfigError
from vid2vid.models.video import VideoGenerator
from vid2vid.temporal import History, start_history, step, unroll

LABEL_NC, N, SIZE = 4, 3, 16  # 4 labels + edge channel per frame, n_frames_G 3, 16x16 frames


def generator(warp_features: bool = True) -> VideoGenerator:
    torch.manual_seed(0)
    return VideoGenerator(LABEL_NC + 1, N, ngf=4, n_downsample=2, n_blocks=2, norm="instance", use_fg=True,
                          fg_labels=[1], warp_features=warp_features)


def clip(frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(semantics [1,T,5,H,W], real frames [1,T,3,H,W])."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, LABEL_NC, (1, frames, SIZE // 4, SIZE // 4), generator=g)
    ids = ids.repeat_interleave(4, -2).repeat_interleave(4, -1)
    return semantic_input(ids, ids, LABEL_NC, use_instance=True), torch.rand(1, frames, 3, SIZE, SIZE, generator=g)


def test_unroll_equals_manual_steps_and_carries_outputs_and_features():
    g = generator().eval()
    labels, real = clip(N - 1 + 4)
    history = start_history("real", labels[:, : N - 1], real[:, : N - 1])
    with torch.no_grad():
        frames, after = unroll(g, history, labels[:, N - 1 :])
        manual, outputs = history, []
        for t in range(N - 1, labels.shape[1]):
            output, manual = step(g, manual, labels[:, t])
            outputs.append(output)
    assert frames.final.shape == (1, 4, 3, SIZE, SIZE) and frames.flow.shape == (1, 4, 2, SIZE, SIZE)
    assert frames.weight.shape == frames.fg_mask.shape == (1, 4, 1, SIZE, SIZE)
    for name in ("final", "raw", "flow", "weight", "warped", "fg_mask", "foreground"):
        assert torch.equal(getattr(frames, name), torch.stack([getattr(o, name) for o in outputs], 1)), name
    assert frames.composed == [True] * 4
    assert torch.equal(after.frames, manual.frames) and torch.equal(after.frames[:, -1], frames.final[:, -1])
    assert torch.equal(after.frames[:, -2], frames.final[:, -2])
    assert torch.equal(after.labels, labels[:, -(N - 1) :])
    assert all(torch.equal(a, b) for a, b in zip(after.features, outputs[-1].image_features, strict=True))
    # the first generated frame warps the last real seed frame
    assert torch.equal(frames.warped[:, 0], backward_warp(real[:, N - 2], frames.flow[:, 0]))


def test_history_keeps_no_features_without_warp_features():
    g = generator(warp_features=False).eval()
    labels, real = clip(N)
    with torch.no_grad():
        _, history = step(g, start_history("real", labels[:, : N - 1], real[:, : N - 1]), labels[:, N - 1])
    assert history.features is None


def test_detach_cuts_the_graph():
    g = generator()
    labels, real = clip(N + 1)
    real = real.requires_grad_()
    _, history = unroll(g, start_history("real", labels[:, : N - 1], real[:, : N - 1]), labels[:, N - 1 : N + 1])
    assert history.frames.grad_fn is not None and all(f.grad_fn is not None for f in history.features)
    cut = history.detach()
    assert cut.frames.grad_fn is None and all(f.grad_fn is None for f in cut.features)
    assert cut.labels.grad_fn is None and torch.equal(cut.frames, history.frames)
    output, _ = step(g, cut, labels[:, -1])
    output.final.sum().backward()
    assert real.grad is None  # nothing before the cut is reached
    assert g.scales[0].to_image[1].weight.grad is not None


def test_gradients_flow_through_the_history_without_detach():
    g = generator()
    labels, real = clip(N + 1)
    real = real.requires_grad_()
    frames, _ = unroll(g, start_history("real", labels[:, : N - 1], real[:, : N - 1]), labels[:, N - 1 :])
    frames.final[:, -1].sum().backward()
    assert real.grad is not None and real.grad.abs().sum() > 0


def test_zeros_first_frames_output_raw_until_the_history_is_full():
    g = generator().eval()
    labels, _ = clip(N - 1 + 4)
    history = start_history("zeros", labels[:, : N - 1])
    assert torch.equal(history.frames, torch.zeros(1, N - 1, 3, SIZE, SIZE)) and not history.full
    with torch.no_grad():
        frames, after = unroll(g, history, labels[:, N - 1 :])
    assert frames.composed == [False] * (N - 1) + [True] * 2
    assert torch.equal(frames.final[:, : N - 1], frames.raw[:, : N - 1])
    assert not torch.allclose(frames.final[:, N - 1 :], frames.raw[:, N - 1 :])
    assert after.full and torch.equal(after.frames, frames.final[:, -(N - 1) :])


def test_image_model_frames_seed_the_history_like_real_ones():
    labels, real = clip(N - 1)
    history = start_history("image-model:runs/single/export", labels, real)
    assert isinstance(history, History) and history.full and torch.equal(history.frames, real)


@pytest.mark.parametrize(("mode", "frames", "match"), [
    ("first", None, "not one of"),
    ("real", None, "needs frames"),
    ("image-model:x", torch.zeros(1, N - 1, 3, SIZE, SIZE + 1), "needs frames"),
])
def test_start_history_errors_name_the_problem(mode, frames, match):
    labels, _ = clip(N - 1)
    with pytest.raises(ConfigError, match=match):
        start_history(mode, labels, frames)


def test_a_wrapped_generator_still_carries_its_features():
    class Wrapper(torch.nn.Module):  # like DistributedDataParallel: the model is .module
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            return self.module(*args, **kwargs)

    labels, real = clip(N)
    with torch.no_grad():
        _, history = step(Wrapper(generator().eval()), start_history("real", labels[:, : N - 1], real[:, : N - 1]),
                          labels[:, N - 1])
    assert history.features is not None and len(history.features) == 2
