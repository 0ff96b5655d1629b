"""The video model's flow / warp / mask losses on hand-made tensors, and the reference flow with its
confidence: gt is the clip's flow_bw, DIS is near the truth on a synthetic clip, gt without flow is a
ConfigError, RAFT gets flow.corr."""

import pytest
import torch
from einops import rearrange

from vid2vid.config import FlowConfig, LossConfig, Size
from vid2vid.errors import ConfigError
from vid2vid.losses import VideoLosses, masked_l1, previous_frames
from vid2vid.reference_flow import (
    CONFIDENCE_THRESHOLD,
    build_reference_flow,
    flow_confidence,
    reference_flow,
    warp_sequence,
)

H, W = 8, 12


def shifted_pair(dx: int = 2, batch: int = 2, seed: int = 0):
    """(prev [B,3,H,W], cur [B,3,H,W], flow [B,2,H,W]): cur(x) = prev(x + dx), so backward_warp(prev, flow)
    with the constant flow (dx, 0) is cur exactly (integer shift, border clamp on the right)."""
    prev = torch.rand(batch, 3, H, W, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    cur = torch.cat([prev[..., dx:], prev[..., -1:].expand(-1, -1, -1, dx)], dim=-1)
    flow = torch.zeros(batch, 2, H, W)
    flow[:, 0] = dx
    return prev, cur, flow


def ones(batch: int = 2) -> torch.Tensor:
    return torch.ones(batch, 1, H, W)


def test_masked_l1_is_a_mean_over_all_pixels():
    a, b = torch.full((1, 3, 2, 2), 1.0), torch.zeros(1, 3, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert masked_l1(a, b, mask) == pytest.approx(0.25)
    assert masked_l1(a, b, torch.ones(1, 1, 2, 2)) == pytest.approx(1.0)


def test_shift_pair_is_exact():
    prev, cur, flow = shifted_pair()
    assert torch.allclose(warp_sequence(prev, flow), cur, atol=1e-6)


def test_warp_flow_zero_for_exact_flow_positive_otherwise():
    prev, cur, flow = shifted_pair()
    losses = VideoLosses()
    exact = losses(ref_flow=flow, confidence=ones(), flow=flow, real=cur, real_prev=prev)
    assert exact["warp_flow"] < 1e-5 and exact["flow"] == 0
    wrong = losses(ref_flow=flow, confidence=ones(), flow=torch.zeros_like(flow), real=cur, real_prev=prev)
    assert wrong["warp_flow"] > 1.0
    assert wrong["flow"] == pytest.approx(10.0 * 1.0)  # |0 - 2| on x, 0 on y: mean 1, weight 10


def test_flow_loss_value_and_confidence_masks_pixels():
    _, _, ref = shifted_pair()
    confidence = ones()
    confidence[..., : W // 2] = 0  # left half not confident
    pred = ref.clone()
    pred[..., : W // 2] += 5.0  # wrong only where not confident
    parts = VideoLosses(flow=10.0)(ref_flow=ref, confidence=confidence, flow=pred)
    assert parts["flow"] == 0
    pred = ref + 1.0  # wrong everywhere by 1 px on both channels
    parts = VideoLosses(flow=10.0)(ref_flow=ref, confidence=confidence, flow=pred)
    assert parts["flow"] == pytest.approx(10.0 * 0.5)  # half of the pixels count


def test_warp_output_zero_when_final_follows_the_reference_flow_and_target_is_detached():
    final_prev, final, ref = shifted_pair(seed=1)
    final_prev.requires_grad_(True)
    final = final.clone().requires_grad_(True)
    parts = VideoLosses()(ref_flow=ref, confidence=ones(), final=final, final_prev=final_prev)
    assert parts["warp_output"] < 1e-5
    moved = final + 0.5
    parts = VideoLosses(warp_output=10.0)(ref_flow=ref, confidence=ones(), final=moved, final_prev=final_prev)
    assert parts["warp_output"].item() == pytest.approx(10.0 * 0.5, rel=1e-5)
    parts["warp_output"].backward()
    assert final.grad is not None and final.grad.abs().sum() > 0
    assert final_prev.grad is None  # the warped previous output is a fixed target


def test_mask_loss_pushes_the_weight_toward_the_warp_where_confident():
    weight = torch.full((2, 1, H, W), 0.3, requires_grad=True)
    confidence = ones()
    confidence[..., : W // 2] = 0
    parts = VideoLosses(mask=1.0)(ref_flow=torch.zeros(2, 2, H, W), confidence=confidence, weight=weight)
    assert parts["mask"].item() == pytest.approx(0.3 * 0.5)
    parts["mask"].backward()
    assert (weight.grad[..., W // 2:] > 0).all()  # gradient descent lowers the weight of the raw frame
    assert (weight.grad[..., : W // 2] == 0).all()  # no push where the flow is not trusted


def test_parts_names_weights_and_total():
    prev, cur, flow = shifted_pair()
    weight = torch.rand(2, 1, H, W)
    inputs = dict(ref_flow=flow, confidence=ones(), flow=flow + 0.5, real=cur, real_prev=prev, final=cur + 0.1,
                  final_prev=prev, weight=weight)
    parts = VideoLosses()(**inputs)
    assert set(parts) == {"flow", "warp_flow", "warp_output", "mask", "total"}
    assert parts["total"] == pytest.approx(sum(v.item() for k, v in parts.items() if k != "total"), rel=1e-6)
    doubled = VideoLosses(flow=20.0, warp=20.0, warp_output=20.0, mask=2.0)(**inputs)
    assert doubled["total"] == pytest.approx(2 * parts["total"].item(), rel=1e-6)
    assert set(VideoLosses(mask=0.0, warp_output=0.0)(**inputs)) == {"flow", "warp_flow", "total"}
    with pytest.raises(ValueError, match="real_prev"):
        VideoLosses()(ref_flow=flow, confidence=ones(), flow=flow, real=cur)


def test_chunk_tensors_equal_the_mean_of_per_frame_calls():
    """[B,T,...] inputs give the mean of the per-frame [B,...] losses; previous_frames links chunks."""
    prev, cur, flow = shifted_pair()
    real = torch.stack([prev, cur, prev], dim=1)  # [B,3,3,H,W]
    final = real + 0.1 * torch.randn_like(real)
    ref = torch.stack([flow, -flow, flow], dim=1)
    pred = ref + torch.randn_like(ref)
    confidence = (torch.rand(2, 3, 1, H, W) > 0.3).float()
    weight = torch.rand(2, 3, 1, H, W)
    before_real, before_final = cur, cur + 0.2  # the frame preceding this chunk
    real_prev, final_prev = previous_frames(before_real, real), previous_frames(before_final, final)
    assert torch.equal(final_prev[:, 0], before_final) and torch.equal(final_prev[:, 1:], final[:, :-1])
    losses = VideoLosses()
    chunk = losses(ref_flow=ref, confidence=confidence, flow=pred, real=real, real_prev=real_prev, final=final,
                   final_prev=final_prev, weight=weight)
    steps = [losses(ref_flow=ref[:, t], confidence=confidence[:, t], flow=pred[:, t], real=real[:, t],
                    real_prev=real_prev[:, t], final=final[:, t], final_prev=final_prev[:, t], weight=weight[:, t])
             for t in range(3)]
    for key in chunk:
        assert chunk[key] == pytest.approx(sum(s[key].item() for s in steps) / 3, rel=1e-5)


def test_config_fields():
    assert LossConfig().warp_output == 10.0
    assert FlowConfig().corr == "all_pairs"


# ----------------------------------------------------------------------------------------------
# Reference flow and confidence
# ----------------------------------------------------------------------------------------------


def test_confidence_threshold_on_squared_rgb_error():
    frames = torch.zeros(1, 2, 3, 2, 2)
    frames[0, 1, :, 0, 0] = 0.1  # squared error summed over RGB: 0.03 > 0.02 -> not confident
    frames[0, 1, 0, 0, 1] = 0.1  # 0.01 < 0.02 -> confident
    confidence = flow_confidence(frames, torch.zeros(1, 1, 2, 2, 2))
    assert CONFIDENCE_THRESHOLD == 0.02
    assert confidence.shape == (1, 1, 1, 2, 2)
    assert confidence[0, 0, 0].tolist() == [[0.0, 1.0], [1.0, 1.0]]


def test_reference_flow_direction_frame_t_plus_1_into_frame_t():
    prev, cur, flow = shifted_pair(batch=1)
    frames = torch.stack([prev, cur], dim=1)  # [1,2,3,H,W]
    ref, confidence = reference_flow(frames, "gt", flow_bw=flow[:, None])
    assert torch.equal(ref[:, 0], flow) and confidence.min() == 1


@pytest.fixture(scope="module")
def synthetic_clip(tmp_path_factory):
    """A 4-frame clip [1,4,3,96,160] with its exact flow_bw / flow_fw (temporal stride up to 3)."""
    from vid2vid.data.sequences import ClipDataset, scan
    from vid2vid.data.synthetic import generate_synthetic

    root = generate_synthetic(tmp_path_factory.mktemp("refflow") / "street", sequences=1, test_sequences=0,
                              frames=10, size=Size(96, 160), seed=3)
    ds = ClipDataset(scan(root, "train"), n_frames=4, max_t_step=3, label_nc=35, load_size=Size(96, 160),
                     crop_size=Size(96, 160), seed=0)
    clip = ds[0]
    return {k: clip[k][None] for k in ("frames", "flow_bw", "flow_fw")}


def test_gt_reference_flow_is_the_clips_flow_bw(synthetic_clip):
    frames, flow_bw = synthetic_clip["frames"], synthetic_clip["flow_bw"]
    flow, confidence = build_reference_flow("gt")(frames, flow_bw=flow_bw)
    assert torch.equal(flow, flow_bw)
    assert confidence.shape == (1, 3, 1, 96, 160)
    assert set(confidence.unique().tolist()) <= {0.0, 1.0}
    assert confidence.mean() > 0.8  # exact flow reproduces most pixels; occlusions and resampling do not


def test_dis_reference_flow_is_near_the_truth(synthetic_clip):
    frames, flow_bw = synthetic_clip["frames"], synthetic_clip["flow_bw"]
    flow, confidence = build_reference_flow("dis", weights="ignored.pth")(frames)
    assert flow.shape == flow_bw.shape and not flow.requires_grad
    epe = (flow - flow_bw).norm(dim=2).mean()
    zero_epe = flow_bw.norm(dim=2).mean()
    assert epe < 0.6 and epe < 0.5 * zero_epe
    assert confidence.mean() > 0.8


def test_gt_without_flow_is_a_config_error():
    frames = torch.zeros(1, 3, 3, H, W)
    with pytest.raises(ConfigError, match=r"flow.model: gt needs data/train_flow.*flow.model=dis"):
        build_reference_flow("gt", flow_folder="data/train_flow")(frames, flow_bw=None)
    with pytest.raises(ConfigError, match="<root>/<phase>_flow"):
        reference_flow(frames, "gt")


def test_unknown_method_and_bad_raft_weights_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="flow.model"):
        build_reference_flow("flownet2")
    with pytest.raises(ConfigError, match="raft_small"):
        build_reference_flow("raft_small", weights=str(tmp_path / "missing.pth"))


def test_raft_reference_flow_takes_corr_and_runs(tmp_path):
    from flow import raft_small

    weights = tmp_path / "raft_small_random.pth"
    torch.save(raft_small().state_dict(), weights)  # random weights: this checks the plumbing, not accuracy
    ref = build_reference_flow("raft_small", weights=str(weights), corr="on_demand", iters=2)
    assert ref.keywords["estimator"].model.corr == "on_demand"
    frames = torch.rand(1, 2, 3, 32, 48) * 2 - 1
    flow, confidence = ref(frames)
    assert flow.shape == (1, 1, 2, 32, 48) and confidence.shape == (1, 1, 1, 32, 48)
    assert torch.isfinite(flow).all()


def test_frames_must_be_five_dimensional():
    with pytest.raises(ValueError, match=r"\[B,T,3,H,W\]"):
        reference_flow(rearrange(torch.zeros(1, 2, 3, H, W), "b t c h w -> (b t) c h w"), "gt")
