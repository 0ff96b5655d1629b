"""RAFT network: torchvision parity, parameter counts, correlation modes, any input size, video mode."""

import pytest
import torch
from torchvision.models.optical_flow import raft_large as tv_raft_large
from torchvision.models.optical_flow import raft_small as tv_raft_small

from flow import estimate_video_flow, load_raft, raft_large, raft_small
from flow.corr import AllPairsCorr, OnDemandCorr
from flow.errors import FlowError
from flow.video import forward_splat


def randomise_batch_norm(model: torch.nn.Module, generator: torch.Generator) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(torch.randn(c, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.5)
            module.weight.data.copy_(1 + 0.2 * torch.randn(c, generator=generator))
            module.bias.data.copy_(0.2 * torch.randn(c, generator=generator))


def image_pair(height=128, width=128, seed=0):
    """A smooth random texture and a sub-pixel shifted copy, in [-1, 1] ([1,3,H,W] each)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 8 + 2, width // 8 + 2, generator=g) * 2 - 1
    big = torch.nn.functional.interpolate(coarse, scale_factor=8, mode="bicubic", align_corners=False).clamp(-1, 1)
    return big[..., 4 : 4 + height, 4 : 4 + width], big[..., 2 : 2 + height, 5 : 5 + width]


@pytest.mark.parametrize(("ours", "theirs", "count"), [(raft_small, tv_raft_small, 990_162),
                                                       (raft_large, tv_raft_large, 5_257_536)])
def test_parameter_count(ours, theirs, count):
    assert sum(p.numel() for p in ours().parameters()) == count
    assert sum(p.numel() for p in theirs().parameters()) == count


@pytest.mark.parametrize("theirs", [tv_raft_small, tv_raft_large])
def test_matches_torchvision_through_load_raft(theirs, tmp_path):
    torch.manual_seed(1)
    reference = theirs().eval()
    randomise_batch_norm(reference, torch.Generator().manual_seed(2))
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    model = load_raft(tmp_path / "tv.pth")
    assert not model.training
    image1, image2 = image_pair(128, 136)
    with torch.no_grad():
        expected = reference(image1, image2, num_flow_updates=12)[-1]
        got = model(image1, image2, iters=12)
    assert got.shape == expected.shape == (1, 2, 128, 136)
    assert expected.abs().max() > 1  # a real flow, not a trivial zero
    assert (got - expected).abs().max() <= 1e-3


def test_on_demand_equals_all_pairs():
    g = torch.Generator().manual_seed(0)
    fmap1, fmap2 = torch.randn(2, 64, 16, 20, generator=g), torch.randn(2, 64, 16, 20, generator=g)
    grid = torch.stack(torch.meshgrid(torch.arange(16.0), torch.arange(20.0), indexing="ij")[::-1])[None]
    coords = grid + 6 * torch.randn(2, 2, 16, 20, generator=g)  # sub-pixel, some windows leave the frame
    for radius in (3, 4):
        all_pairs = AllPairsCorr(fmap1, fmap2, num_levels=4, radius=radius)(coords)
        on_demand = OnDemandCorr(fmap1, fmap2, num_levels=4, radius=radius, block_pixels=50)(coords)
        assert on_demand.shape == all_pairs.shape == (2, 4 * (2 * radius + 1) ** 2, 16, 20)
        assert (on_demand - all_pairs).abs().max() <= 1e-4


def test_corr_channel_order_x_offset_slowest():
    """A feature of image 2 at (x0+1, y0) must show up at window offset (dx=+1, dy=0) = channel (r+1)*(2r+1)+r."""
    fmap1 = torch.zeros(1, 4, 16, 16)
    fmap2 = torch.zeros(1, 4, 16, 16)
    fmap1[0, 0, 5, 5] = 1.0
    fmap2[0, 0, 5, 6] = 2.0  # y=5, x=6
    coords = torch.stack(torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")[::-1])[None]
    for corr in (AllPairsCorr, OnDemandCorr):
        features = corr(fmap1, fmap2, num_levels=4, radius=3)(coords)[0, :49, 5, 5]  # level 0 at pixel (5, 5)
        assert features.argmax().item() == 4 * 7 + 3
        assert features.max().item() == pytest.approx(1.0)  # 2 / sqrt(4)


def test_model_on_demand_matches_all_pairs():
    torch.manual_seed(0)
    model = raft_small().eval()
    image1, image2 = image_pair(128, 128)
    with torch.no_grad():
        reference = model(image1, image2, iters=4)
        model.corr = "on_demand"
        assert (model(image1, image2, iters=4) - reference).abs().max() <= 1e-3
    with pytest.raises(FlowError, match="on_demand"):
        model.corr = "sparse"


@pytest.mark.parametrize(("height", "width"), [(100, 100), (61, 83), (8, 8)])
def test_small_and_odd_sizes_give_finite_flow(height, width):
    torch.manual_seed(0)
    model = raft_small().eval()
    image1, image2 = image_pair(height + 8, width + 8)
    with torch.no_grad():
        flow = model(image1[..., :height, :width], image2[..., :height, :width], iters=2)
    assert flow.shape == (1, 2, height, width)
    assert torch.isfinite(flow).all()


def test_return_all_and_flow_init():
    torch.manual_seed(0)
    model = raft_small().eval()
    image1, image2 = image_pair(128, 128)
    with torch.no_grad():
        flows = model(image1, image2, iters=3, return_all=True)
        assert len(flows) == 3 and torch.equal(flows[-1], model(image1, image2, iters=3))
        # flow_init is full resolution in pixels: 8 px is one step of the 1/8 grid.
        init = torch.tensor([8.0, -4.0]).view(1, 2, 1, 1).expand(1, 2, 128, 128)
        fmaps = model.encode_features(torch.cat([image1, image2])).chunk(2)
        hidden, context = model.encode_context(image1)
        low = torch.tensor([1.0, -0.5]).view(1, 2, 1, 1).expand(1, 2, 16, 16)
        (expected,), _ = model.refine(*fmaps, hidden, context, iters=2, flow_low=low)
        assert (model(image1, image2, iters=2, flow_init=init) - expected).abs().max() < 1e-4
        with pytest.raises(FlowError, match="flow_init"):
            model(image1, image2, flow_init=init[..., :64, :])


def test_autocast_keeps_flow_float32_and_finite():
    torch.manual_seed(0)
    model = raft_small().eval()
    image1, image2 = image_pair(128, 128)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        flow = model(image1, image2, iters=2)
    assert flow.dtype == torch.float32 and torch.isfinite(flow).all()


def test_video_flow_cold_equals_pairwise_and_warm_start_runs():
    torch.manual_seed(0)
    model = raft_small().eval()
    g = torch.Generator().manual_seed(3)
    frames = torch.rand(5, 3, 120, 128, generator=g) * 2 - 1
    with torch.no_grad():
        pairwise = torch.cat([model(frames[t : t + 1], frames[t + 1 : t + 2], iters=3) for t in range(4)])
    cold = estimate_video_flow(frames, model, iters=3, warm_start=False, batch_frames=2)
    assert cold.shape == (4, 2, 120, 128)
    assert (cold - pairwise).abs().max() <= 1e-3
    warm = estimate_video_flow(frames, model, iters=3, cold_iters=3, warm_start=True, batch_frames=3)
    assert warm.shape == (4, 2, 120, 128) and torch.isfinite(warm).all()
    assert torch.equal(warm[0], cold[0])  # the first pair has nothing to start from
    one_at_a_time = estimate_video_flow(frames, model, iters=3, cold_iters=3)  # CPU default: frames one by one
    assert (one_at_a_time - warm).abs().max() <= 1e-4
    with torch.no_grad():
        first12 = model(frames[:1], frames[1:2], iters=12)
    assert (estimate_video_flow(frames, model, iters=3)[0] - first12).abs().max() <= 1e-4  # cold_iters=12


def test_video_flow_refresh_restarts_every_nth_pair_from_zero():
    torch.manual_seed(0)
    model = raft_small().eval()
    frames = torch.rand(5, 3, 120, 128, generator=torch.Generator().manual_seed(3)) * 2 - 1
    cold = estimate_video_flow(frames, model, iters=3, warm_start=False)
    refreshed = estimate_video_flow(frames, model, iters=1, cold_iters=3, refresh_every=2)
    for t in (0, 2):  # cold pairs: as without warm start
        assert (refreshed[t] - cold[t]).abs().max() <= 1e-4
    for t in (1, 3):  # warm pairs: one update from the carried flow
        assert (refreshed[t] - cold[t]).abs().max() > 1e-2
    every = estimate_video_flow(frames, model, iters=1, cold_iters=3, refresh_every=1)
    assert (every - cold).abs().max() <= 1e-4
    with pytest.raises(FlowError, match="refresh_every"):
        estimate_video_flow(frames, model, refresh_every=0)


def test_forward_splat_carries_flow_along_itself():
    """u = 2, v = 0.1 x: the flow that lands on column x' comes from column x' - 2, so v there is 0.1 (x' - 2)."""
    xs = torch.arange(16.0).expand(16, 16)
    flow = torch.stack([torch.full((16, 16), 2.0), 0.1 * xs])[None]
    splatted = forward_splat(flow)
    expected_v = 0.1 * (xs[4:14, 2:] - 2)
    assert torch.allclose(splatted[0, 1, 4:14, 2:], expected_v, atol=1e-5)
    assert torch.allclose(splatted[0, 0], torch.full((16, 16), 2.0))
    assert torch.equal(splatted[0, :, :, :2], flow[0, :, :, :2])  # nothing lands there: keeps its own flow


def test_bad_inputs_raise_flow_error():
    model = raft_small().eval()
    with pytest.raises(FlowError, match="same shape"):
        model(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 72))
    with pytest.raises(FlowError, match="T >= 2"):
        estimate_video_flow(torch.zeros(1, 3, 64, 64), model)


def test_corr_lookup_matches_bilinear_sampling_of_the_volume():
    """Both correlation modes read windows with one gather and two lerps; the reference here samples the
    pooled volume with grid_sample (zeros outside, align_corners=True), as RAFT defines the lookup."""
    g = torch.Generator().manual_seed(4)
    fmap1, fmap2 = torch.randn(1, 32, 16, 24, generator=g), torch.randn(1, 32, 16, 24, generator=g)
    grid = torch.stack(torch.meshgrid(torch.arange(16.0), torch.arange(24.0), indexing="ij")[::-1])[None]
    coords = grid + 5 * torch.randn(1, 2, 16, 24, generator=g)  # many windows partly or wholly outside
    radius, levels = 2, 3
    volume = torch.einsum("chw,cij->hwij", fmap1[0], fmap2[0]).reshape(16 * 24, 1, 16, 24) / 32**0.5
    span = torch.arange(-radius, radius + 1.0)
    offsets = torch.stack(torch.meshgrid(span, span, indexing="ij"), dim=-1)  # [dx, dy], dx slowest
    expected = []
    for level in range(levels):
        h, w = volume.shape[-2:]
        points = coords[0].permute(1, 2, 0).reshape(-1, 1, 1, 2) / 2**level + offsets  # [HW,5,5,2]
        normalised = points / torch.tensor([(w - 1) / 2, (h - 1) / 2]) - 1
        sampled = torch.nn.functional.grid_sample(volume, normalised, align_corners=True)  # zeros outside
        expected.append(sampled.reshape(16, 24, -1))
        volume = torch.nn.functional.avg_pool2d(volume, 2)
    expected = torch.cat(expected, dim=-1).permute(2, 0, 1)[None]  # [1, L*(2r+1)^2, H, W]
    for corr in (AllPairsCorr, OnDemandCorr):
        got = corr(fmap1, fmap2, num_levels=levels, radius=radius)(coords)
        assert (got - expected).abs().max() <= 1e-4


def test_gru_with_the_context_convolved_once_equals_the_plain_gru():
    """ConvGRU.prepare convolves the fixed context once and forward only cat(h, motion); the result is the
    GRU on cat(h, context, motion) with the checkpoint's weights, update after update."""
    from flow.raft import ConvGRU

    torch.manual_seed(0)
    gru = ConvGRU(input_size=10 + 6, hidden_size=8, kernel=(1, 5), padding=(0, 2))
    h, context = torch.randn(2, 8, 9, 11), torch.randn(2, 10, 9, 11)
    prepared = gru.prepare(context)
    expected = h
    for _ in range(3):
        motion = torch.randn(2, 6, 9, 11)
        hx = torch.cat([expected, context, motion], dim=1)
        z, r = torch.sigmoid(gru.convz(hx)), torch.sigmoid(gru.convr(hx))
        q = torch.tanh(gru.convq(torch.cat([r * expected, context, motion], dim=1)))
        expected = (1 - z) * expected + z * q
        h = gru(h, motion, prepared)
        assert (h - expected).abs().max() <= 1e-5
