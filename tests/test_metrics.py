"""vid2vid.eval.metrics: warping error (Lai et al.) and tOF as library functions."""

import numpy as np
import pytest
import torch

from flow.classic import ClassicFlow
from vid2vid.errors import UserError
from vid2vid.eval.metrics import (
    frame_pair_batches,
    pair_flows,
    tecogan_crop,
    temporal_flow_error,
    tof_summary,
    warping_error,
)


def texture(h, w, seed=0):
    """Smooth random RGB texture [3,h,w] in [0.1, 0.9]."""
    import cv2

    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    image = cv2.GaussianBlur(noise, (0, 0), 1.5)
    image = (image - image.min()) / (image.max() - image.min())
    return torch.from_numpy(image).permute(2, 0, 1) * 0.8 + 0.1


def translating(frames=4, h=48, w=64, dx=2, dy=1):
    """Frames [T,3,h,w] where content at x in frame t is at x + (dx, dy) in frame t+1, and exact flows."""
    m = 2 + frames * max(abs(dx), abs(dy))
    big = texture(h + 2 * m, w + 2 * m)
    clip = torch.stack([big[:, m - t * dy : m - t * dy + h, m - t * dx : m - t * dx + w] for t in range(frames)])
    fw = torch.tensor([float(dx), float(dy)]).view(1, 2, 1, 1).expand(frames - 1, 2, h, w)
    return clip, (fw.clone(), -fw.clone())


def test_translation_with_exact_flow_is_zero_and_wrong_sign_is_large():
    clip, (fw, bw) = translating()
    result = warping_error(clip, (fw, bw))
    assert result.pairs == 3 and result.value < 1e-9 and result.empty_mask_pairs == 0
    assert 0.9 < result.mean_valid_fraction < 1  # the columns / rows that leave the frame are masked
    assert warping_error(clip, (-fw, -bw)).value > 1e-3
    assert warping_error(clip.flip(0), (fw, bw)).value > 1e-3


def test_value_range_is_explicit():
    clip, flows = translating()
    noisy = clip + 0.05 * torch.randn(clip.shape, generator=torch.Generator().manual_seed(1))
    in_unit = warping_error(noisy, flows).value
    torch.testing.assert_close(warping_error(noisy * 2 - 1, flows, value_range=(-1, 1)).value, in_unit)
    torch.testing.assert_close(warping_error(noisy * 255, flows, value_range=(0, 255)).value, in_unit)
    with pytest.raises(UserError, match="value_range"):
        warping_error(clip, flows, value_range=(1, 1))


def test_alternating_offset_and_out_of_frame_option():
    base = texture(32, 40)
    clip = torch.stack([base + (0.03 if t % 2 else -0.03) for t in range(5)])
    zero = torch.zeros(4, 2, 32, 40)
    assert warping_error(clip, (zero, zero)).value == pytest.approx(0.06**2, rel=1e-4)
    moving, flows = translating()
    assert warping_error(moving, flows, mask_out_of_frame=False).value > 1e-5  # border clamp mismatches count


def test_empty_mask_averages_all_pixels_and_is_counted():
    clip = torch.stack([torch.full((3, 16, 16), 0.2), torch.full((3, 16, 16), 0.5)])
    inconsistent = torch.full((1, 2, 16, 16), 5.0)  # fw == bw: fails the forward-backward check everywhere
    result = warping_error(clip, (inconsistent, inconsistent), mask_out_of_frame=False)
    assert result.empty_mask_pairs == 1 and result.valid_fraction == [0.0]
    assert result.value == pytest.approx(0.09, rel=1e-5)


def test_estimated_flow_on_frames_or_reference_and_batching():
    clip, _ = translating(frames=5, h=64, w=80)
    own = warping_error(clip, estimator="dis", batch_pairs=2)
    assert own.pairs == 4 and own.value < 2e-4
    flicker = clip.clone()
    flicker[1::2] += 0.05
    flickering = warping_error(flicker, reference=clip, estimator=ClassicFlow("dis"))
    assert flickering.value > 20 * own.value
    fw, bw = pair_flows(ClassicFlow("dis"), clip * 2 - 1)
    assert fw.shape == bw.shape == (4, 2, 64, 80)
    assert (fw[:, 0, 10:-10, 10:-10].median() - 2).abs() < 0.2 and (bw[:, 0, 10:-10, 10:-10].median() + 2).abs() < 0.2
    with pytest.raises(UserError, match=r"\[T-1,2,H,W\]"):
        warping_error(clip, (fw[:2], bw[:2]))


def test_tof_is_zero_on_the_reference_and_grows_with_different_motion():
    clip, _ = translating(frames=4, h=64, w=96)
    assert temporal_flow_error(clip, clip) == [0.0, 0.0, 0.0]
    still = clip[:1].expand(4, -1, -1, -1)
    assert min(temporal_flow_error(still, clip)) > 1.0  # the reference moves ~2.2 px per frame
    assert tecogan_crop(64, 96) == (slice(16, 48), slice(16, 80))
    assert tecogan_crop(360, 480) == (slice(20, 340), slice(16, 464))  # 320x448
    assert tecogan_crop(20, 30) == (slice(0, 20), slice(0, 30))
    assert tof_summary([9, 9, 1, 2, 3, 9, 9]) == 2.0 and tof_summary([1.0, 3.0]) == 2.0


@pytest.mark.parametrize("prefetch", [False, True])
def test_frame_pair_batches_cover_every_pair_once(prefetch):
    batches = list(frame_pair_batches(iter("abcdefg"), 4, lambda first, run: (first, len(run)), prefetch=prefetch))
    assert batches == [(0, list("abcde"), (0, 5)), (4, list("efg"), (4, 3))]
    assert [b[1] for b in frame_pair_batches("abcde", 2, lambda *_: None)] == [list("abc"), list("cde")]
    assert list(frame_pair_batches("a", 2, lambda *_: None)) == []


def test_motion_split_tells_a_video_that_holds_moving_content_still_from_one_that_shows_the_motion():
    """motion_split_warping_error: a 16 px square moving 2 px a frame over a still background (exact flows): the
    footage itself scores ~0 on both parts; the same video with the square held still where it started (a lag, a
    ghost) scores high on the moving pixels and ~0 on the still ones; the footage flickering by +-0.03 (on the
    0..255 scale here) scores 0.06^2 on both parts; the moving share is the square's share of the valid pixels;
    frames where nothing moves have no moving part (None)."""
    from vid2vid.eval.metrics import motion_split_warping_error

    background, square = texture(48, 64, seed=1), texture(16, 16, seed=2)
    frames, held = [], []
    for t in range(5):
        frame = background.clone()
        frame[:, 16:32, 8 + 2 * t:24 + 2 * t] = square
        frames.append(frame)
        still_one = background.clone()
        still_one[:, 16:32, 8:24] = square
        held.append(still_one)
    clip, held = torch.stack(frames), torch.stack(held)
    fw, bw = torch.zeros(4, 2, 48, 64), torch.zeros(4, 2, 48, 64)
    for t in range(4):
        fw[t, 0, 16:32, 8 + 2 * t:24 + 2 * t] = 2  # frame t -> t+1: the square's pixels move 2 px right
        bw[t, 0, 16:32, 10 + 2 * t:26 + 2 * t] = -2
    truth = motion_split_warping_error(clip, (fw, bw))
    assert truth["moving"] < 1e-9 and truth["still"] < 1e-9
    assert 0.6 * 256 / (48 * 64) < truth["moving_share"] < 256 / (48 * 64)  # the square less its masked edges
    ghost = motion_split_warping_error(held, (fw, bw))
    assert ghost["moving"] > 1e-3 and ghost["still"] < 1e-9
    assert motion_split_warping_error(held, (fw, bw), batch_pairs=3) == pytest.approx(ghost, rel=1e-9)  # 2 runs
    flicker = clip + torch.tensor([0.03 if t % 2 else -0.03 for t in range(5)]).view(5, 1, 1, 1)
    split = motion_split_warping_error(flicker * 255, (fw, bw), value_range=(0, 255))
    assert split["still"] == pytest.approx(0.06**2, rel=1e-3) and split["moving"] == pytest.approx(0.06**2, rel=1e-3)
    nothing = motion_split_warping_error(held, (torch.zeros_like(fw), torch.zeros_like(bw)))
    assert nothing["moving"] is None and nothing["moving_share"] == 0 and nothing["still"] > 0
