"""RAFT checkpoints: the original-format fixture, a 179-key original large state dict, torchvision
files in the hub cache, and clear errors."""

import re
from pathlib import Path

import pytest
import torch
from torchvision.models.optical_flow import raft_large as tv_raft_large
from torchvision.models.optical_flow import raft_small as tv_raft_small

from flow import load_raft
from flow.errors import FlowError

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "raft_small_original_format.pt"

# torchvision -> original names, written independently of flow.weights (the inverse of its mapping).
TO_ORIGINAL = (
    (r"^feature_encoder\.", "fnet."),
    (r"^context_encoder\.", "cnet."),
    (r"^(fnet|cnet)\.convnormrelu\.0\.", r"\1.conv1."),
    (r"^(fnet|cnet)\.convnormrelu\.1\.", r"\1.norm1."),
    (r"^(fnet|cnet)\.conv\.", r"\1.conv2."),
    (r"\.convnormrelu(\d)\.0\.", r".conv\1."),
    (r"\.convnormrelu(\d)\.1\.", r".norm\1."),
    (r"^update_block\.motion_encoder\.convcorr(\d)\.0\.", r"update_block.encoder.convc\1."),
    (r"^update_block\.motion_encoder\.convflow(\d)\.0\.", r"update_block.encoder.convf\1."),
    (r"^update_block\.motion_encoder\.conv\.0\.", "update_block.encoder.conv."),
    (r"^update_block\.recurrent_block\.convgru(\d)\.conv(\w)\.", r"update_block.gru.conv\2\1."),
    (r"^mask_predictor\.convrelu\.0\.", "update_block.mask.0."),
    (r"^mask_predictor\.conv\.", "update_block.mask.2."),
)


def to_original_large(state_dict: dict) -> dict:
    out = {}
    for key, value in state_dict.items():
        name = key
        for pattern, replacement in TO_ORIGINAL:
            name = re.sub(pattern, replacement, name)
        out["module." + name] = value
        duplicate = re.match(r"^(cnet\.layer\d\.0)\.downsample\.1\.(.+)$", name)
        if duplicate:  # the original registers the shortcut's norm twice, also as norm3
            out[f"module.{duplicate[1]}.norm3.{duplicate[2]}"] = value
    return out


@pytest.mark.skipif(not FIXTURE.is_file(), reason=f"{FIXTURE} not found (fixtures of the development workspace)")
def test_original_format_fixture_reproduces_original_flow(tmp_path):
    data = torch.load(FIXTURE, weights_only=True)
    assert len(data["state_dict_original_format"]) == 106
    torch.save(data["state_dict_original_format"], tmp_path / "raft-small.pth")
    model = load_raft(tmp_path / "raft-small.pth")
    image1 = data["image1_0_255"] / 127.5 - 1
    image2 = data["image2_0_255"] / 127.5 - 1
    with torch.no_grad():
        flow = model(image1, image2, iters=12)
    assert (flow - data["expected_flow_12_iters"]).abs().max() <= 1e-3


def test_original_format_large_with_179_keys_loads_strictly(tmp_path):
    torch.manual_seed(0)
    reference = tv_raft_large().eval()
    for module in reference.modules():  # make the batch-norm entries distinguishable
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2)
    tv_state = reference.state_dict()
    original = to_original_large(tv_state)
    assert len(tv_state) == 169 and len(original) == 179
    torch.save(original, tmp_path / "raft-things.pth")
    model = load_raft(tmp_path / "raft-things.pth")
    loaded = model.state_dict()
    assert loaded.keys() == tv_state.keys()
    assert all(torch.equal(loaded[k], tv_state[k]) for k in tv_state)


def test_mismatch_lists_missing_and_unexpected_keys(tmp_path):
    state = tv_raft_small().state_dict()
    del state["update_block.flow_head.conv2.bias"]
    state["update_block.flow_head.conv3.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(FlowError) as error:
        load_raft(tmp_path / "bad.pth")
    message = str(error.value)
    assert "bad.pth" in message
    assert "missing keys (1): update_block.flow_head.conv2.bias" in message
    assert "unexpected keys (1): update_block.flow_head.conv3.weight" in message


def test_wrong_shape_and_wrong_model_are_reported(tmp_path):
    state = tv_raft_small().state_dict()
    state["update_block.flow_head.conv2.bias"] = torch.zeros(3)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(FlowError, match=r"wrong shapes \(1\): update_block.flow_head.conv2.bias"):
        load_raft(tmp_path / "shape.pth")
    torch.save(tv_raft_small().state_dict(), tmp_path / "small.pth")
    with pytest.raises(FlowError, match="raft_small weights, but raft_large"):
        load_raft(tmp_path / "small.pth", model="raft_large")


def test_unreadable_files_raise_flow_error(tmp_path):
    with pytest.raises(FlowError, match="does not exist"):
        load_raft(tmp_path / "nothing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(FlowError, match="junk.pth"):
        load_raft(tmp_path / "junk.pth")
    torch.save({"lr": 0.1}, tmp_path / "notweights.pth")
    with pytest.raises(FlowError, match="state dict"):
        load_raft(tmp_path / "notweights.pth")


def test_hub_cache_lookup_and_download_instructions(tmp_path):
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        with pytest.raises(FlowError) as error:
            load_raft(model="raft_small")
        message = str(error.value)
        assert "https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth" in message
        assert str(tmp_path / "hub" / "checkpoints") in message
        (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
        reference = tv_raft_small()
        torch.save({"state_dict": reference.state_dict()}, tmp_path / "hub" / "checkpoints" /
                   "raft_small_C_T_V2-01064c6d.pth")  # wrapped, as training checkpoints often are
        model = load_raft()
        assert torch.equal(model.state_dict()["feature_encoder.conv.weight"],
                           reference.state_dict()["feature_encoder.conv.weight"])
    finally:
        torch.hub.set_dir(previous)
