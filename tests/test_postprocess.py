"""vid2vid.eval.postprocess: the flow-guided recursive filter lowers the flicker of a noisy static scene, keeps a
moving pattern in place (no ghost trail, where a blend without motion compensation smears it), and refuses bad
settings naming the value."""

import pytest
import torch

from vid2vid.errors import UserError
from vid2vid.eval.detail import gaussian_blur
from vid2vid.eval.metrics import psnr, warping_error
from vid2vid.eval.postprocess import RecursiveFilter, recursive_filter


def texture(h: int = 64, w: int = 96, seed: int = 0) -> torch.Tensor:
    """[3,H,W] in [0, 1]: smooth random structure DIS can follow."""
    noise = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))
    blurred = gaussian_blur(noise, 2.0)[0]
    return ((blurred - blurred.mean()) * 6 + 0.5).clamp(0, 1)


def test_static_scene_with_per_frame_noise_flickers_less():
    t = 8
    still = texture().expand(t, -1, -1, -1)
    noisy = (still + torch.randn(still.shape, generator=torch.Generator().manual_seed(1)) * 0.03).clamp(0, 1)
    zero = torch.zeros(t - 1, 2, *still.shape[2:])
    before = warping_error(noisy, (zero, zero)).value
    after = warping_error(recursive_filter(noisy, 0.3), (zero, zero)).value
    assert after < 0.25 * before  # theory for exact zero flow: 0.09 * 1.18 / 2 = 0.053x
    assert psnr(recursive_filter(noisy, 0.3)[4:], still[4:]) > psnr(noisy[4:], still[4:]) + 3


def test_moving_pattern_stays_aligned_not_ghosted():
    """A pattern moving 3 px right per frame: filtered frames match the input inside the frame (borders see new
    content); the same blend without motion compensation (zero flow) leaves a ghost trail."""
    big = texture(64, 140)
    frames = torch.stack([big[:, :, 30 - 3 * t: 126 - 3 * t] for t in range(8)])  # [8,3,64,96]
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    filtered = recursive_filter(frames, 0.3)
    assert torch.equal(filtered[0], frames[0])
    assert psnr(filtered[inner][1:], frames[inner][1:]) > 30
    still = recursive_filter(frames, 0.3, estimator=lambda a, b: torch.zeros(a.shape[0], 2, *a.shape[2:]))
    assert psnr(still[inner][1:], frames[inner][1:]) < 22


def test_value_range_weight_one_and_streaming():
    frames = torch.stack([texture(seed=s) for s in range(3)])
    assert torch.allclose(recursive_filter(frames, 1.0), frames)
    signed = recursive_filter(frames * 2 - 1, 0.5, value_range=(-1, 1))
    assert torch.allclose((signed + 1) / 2, recursive_filter(frames, 0.5), atol=1e-5)
    filt = RecursiveFilter(0.5)
    streamed = torch.stack([filt.step(f) for f in frames])
    assert torch.allclose(streamed, recursive_filter(frames, 0.5))
    with pytest.raises(UserError, match="call reset"):
        filt.step(frames[0, :, :32])
    filt.reset()
    assert torch.equal(filt.step(frames[0, :, :32]), frames[0, :, :32])


@pytest.mark.parametrize("weight", [0, -0.1, 1.5])
def test_bad_weight_names_the_value(weight):
    with pytest.raises(UserError, match=f"current_weight {weight} must be in"):
        RecursiveFilter(weight)
    with pytest.raises(UserError, match="takes frames"):
        recursive_filter(torch.zeros(3, 8, 8))
