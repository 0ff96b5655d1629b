"""Temporal discriminators: which frames and flows each window holds at each temporal scale (frames that
encode their own index), chained flows against the dataset's compose_flows, None without a complete
window, the reference parameter count (meta device), and gradients through D and the windows."""

import numpy as np
import pytest
import torch

from vid2vid.losses import GANLoss, feature_matching
from vid2vid.models.discriminators import (
    build_temporal_discriminators,
    compose_over_stride,
    temporal_input_nc,
    temporal_windows,
)

B, T, H, W = 2, 7, 4, 5


def indexed_clip():
    """frames [B,T,3,H,W] = 100 b + t everywhere; flows [B,T-1,2,H,W] constant (2^t, -2^t) + b/4 on x, so any
    chained flow is the sum of the hops' constants (a constant field warps to itself)."""
    b = torch.arange(B).view(B, 1, 1, 1, 1).float()
    t = torch.arange(T).view(1, T, 1, 1, 1).float()
    frames = (100 * b + t).expand(B, T, 3, H, W).clone()
    hop = 2.0 ** torch.arange(T - 1).view(1, T - 1, 1, 1).float()
    flows = torch.cat([hop + b[:, :, 0] / 4, -hop.expand(B, -1, -1, -1)], dim=2)[..., None].expand(B, T - 1, 2, H, W)
    return frames, flows.clone()


def hop_sum(a: int, b: int) -> float:
    """Sum of the x constants 2^t of the hops between frames a < b (without the per-clip offset)."""
    return float(sum(2**t for t in range(a, b)))


def expected_window(clip: int, frame_ids: list[int]) -> list[float]:
    """Per-channel constants of one window: 3 channels per frame, then (x, y) per flow, divided by 20."""
    values = [100.0 * clip + f for f in frame_ids for _ in range(3)]
    for a, b in zip(frame_ids[:-1], frame_ids[1:]):
        x = hop_sum(a, b) + (b - a) * clip / 4
        values += [x / 20, -hop_sum(a, b) / 20]
    return values


@pytest.mark.parametrize("scale, stride", [(0, 1), (1, 3)])
def test_windows_hold_the_right_frames_and_flows(scale, stride):
    frames, flows = indexed_clip()
    windows = temporal_windows(frames, flows, n_frames_D=3, scale=scale)
    count = T - 2 * stride  # every start whose last frame is in the clip
    assert windows.shape == (B * count, temporal_input_nc(3), H, W)
    for clip in range(B):
        for start in range(count):
            window = windows[clip * count + start]  # batch-major
            assert torch.allclose(window[:, 0, 0], window.mean(dim=(1, 2)))  # constant channels
            got = window[:, 0, 0].tolist()
            want = expected_window(clip, [start, start + stride, start + 2 * stride])
            assert got == pytest.approx(want, rel=1e-6), (clip, start)


def test_real_and_fake_windows_get_the_same_real_flows():
    frames, flows = indexed_clip()
    fake = torch.rand_like(frames)
    real_windows = temporal_windows(frames, flows, 3, 0)
    fake_windows = temporal_windows(fake, flows, 3, 0)
    assert torch.equal(real_windows[:, 9:], fake_windows[:, 9:])
    assert not torch.equal(real_windows[:, :9], fake_windows[:, :9])


def test_no_complete_window_returns_none():
    frames, flows = indexed_clip()
    assert temporal_windows(frames, flows, 3, scale=2) is None  # stride 9: needs 19 frames
    assert temporal_windows(frames[:, :2], flows[:, :1], 3, scale=0) is None  # 2 frames < 3
    assert temporal_windows(frames[:, :3], flows[:, :2], 3, scale=0).shape[0] == B  # exactly one per clip
    assert temporal_windows(frames[:, :6], flows[:, :5], 3, scale=1) is None  # stride 3 needs 7 frames


def test_chained_flow_matches_the_datasets_compose_flows():
    from vid2vid.data.sequences import compose_flows

    gen = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    flows = torch.stack([torch.stack([0.1 * x + k + torch.rand((), generator=gen), 0.05 * y - k])
                         for k in range(3)])[None]  # [1,3,2,12,16]: smooth, varying hops
    chained = compose_over_stride(flows, 3)  # [1,1,2,H,W]: frame 3 -> frame 0
    hops = [f.permute(1, 2, 0).numpy() for f in flows[0]]  # [H,W,2] each, frame t+1 -> t
    want = compose_flows(hops[::-1])  # the dataset's chaining: 3 -> 2 first, then 2 -> 1, then 1 -> 0
    assert chained.shape == (1, 1, 2, 12, 16)
    assert np.allclose(chained[0, 0].permute(1, 2, 0).numpy(), want, atol=0.02)  # cv2.remap: 1/32 px grid
    assert torch.equal(compose_over_stride(flows, 1), flows)


def test_parameter_count_of_the_reference_temporal_d():
    assert temporal_input_nc(3) == 13
    with torch.device("meta"):
        nets = build_temporal_discriminators(13, ndf=64, n_layers=3, num_D=2, norm="batch", scales=2)
    assert len(nets) == 2
    for net in nets:
        assert sum(p.numel() for p in net.parameters()) == 5_553_538


def test_gradients_flow_through_windows_and_d():
    torch.manual_seed(0)
    nets = build_temporal_discriminators(13, ndf=8, n_layers=2, num_D=2, norm="instance", scales=2)
    real = torch.rand(1, 7, 3, 32, 32) * 2 - 1
    fake = (torch.rand(1, 7, 3, 32, 32) * 2 - 1).requires_grad_(True)
    flows = torch.randn(1, 6, 2, 32, 32)
    gan = GANLoss("ls")
    total = 0
    for scale, net in enumerate(nets):
        fake_out = net(temporal_windows(fake, flows, 3, scale))
        real_out = net(temporal_windows(real, flows, 3, scale))
        total = total + gan.generator(fake_out) + 10 * feature_matching(real_out, fake_out)
    total.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in nets.parameters())
