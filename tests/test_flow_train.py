"""RAFT training on a tiny dataset in the vid2vid layout with exact flow."""

import json

import cv2
import numpy as np
import pytest
import torch

from flow import load_raft, raft_small
from flow.__main__ import main
from flow.errors import FlowError
from flow.io import write_flo
from flow.train import COLD, EXACT, OWN, FlowPairs, find_pairs, own_starts, read_image, sequence_loss
from flow.video import forward_splat
from flow.warp import backward_warp


def write_translation_dataset(root, *, size=(128, 128), frames=3, shifts=((2, 1), (-1, 3)), seed=0):
    """Smooth textures moving by integer shifts (dx, dy) per frame; exact fw/bw flow."""
    rng = np.random.default_rng(seed)
    height, width = size
    for phase, phase_shifts in (("train", shifts), ("test", shifts[:1])):
        for s, (dx, dy) in enumerate(phase_shifts):
            canvas = cv2.resize(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), (width + 64, height + 64),
                                interpolation=cv2.INTER_CUBIC)
            (root / f"{phase}_B" / f"seq_{s:04d}").mkdir(parents=True)
            (root / f"{phase}_flow" / f"seq_{s:04d}").mkdir(parents=True)
            for t in range(frames):
                top, left = 32 - t * dy, 32 - t * dx  # frame_t(p) = canvas(p + o_t), o_t = o_0 - t d
                frame = canvas[top : top + height, left : left + width]
                cv2.imwrite(str(root / f"{phase}_B" / f"seq_{s:04d}" / f"{t:05d}.png"), frame)
            for t in range(frames - 1):
                constant = np.broadcast_to(np.float32([dx, dy]), (height, width, 2))
                write_flo(root / f"{phase}_flow" / f"seq_{s:04d}" / f"fw_{t:05d}.flo", constant)
                write_flo(root / f"{phase}_flow" / f"seq_{s:04d}" / f"bw_{t:05d}.flo", -constant)


def test_augmented_pairs_stay_consistent_with_their_flow(tmp_path):
    write_translation_dataset(tmp_path)
    pairs = find_pairs(tmp_path, "train", both_directions=True)
    assert len(pairs) == 8  # 2 sequences x 2 pairs x 2 directions
    dataset = FlowPairs(pairs, crop=(96, 112), augment=True, seed=0)
    flips = set()
    for epoch in range(4):
        dataset.epoch = epoch
        for i in range(len(dataset)):
            item = dataset[i]
            image1, image2, flow = item["image1"], item["image2"], item["flow"]
            assert image1.shape == (3, 96, 112) and flow.shape == (2, 96, 112)
            assert not item["init"].any() and item["start"] == COLD  # warm_start 0: every pair starts from zero
            flips.add((float(flow[0, 0, 0]), float(flow[1, 0, 0])))
            warped = backward_warp(image2[None], flow[None])[0]  # image2 sampled at x + flow(x) = image1
            assert (warped - image1)[:, 8:-8, 8:-8].abs().max() < 1e-5
    assert (-2.0, 1.0) in flips and (2.0, 1.0) in flips  # horizontal flips happened and negated u


def test_pairs_know_the_previous_flow_in_their_direction(tmp_path):
    write_translation_dataset(tmp_path, frames=4)
    pairs = {(p.image1.stem, p.image2.stem): p for p in find_pairs(tmp_path, "train", both_directions=True)
             if p.image1.parent.name == "seq_0000"}
    flows = tmp_path / "train_flow" / "seq_0000"
    frames = tmp_path / "train_B" / "seq_0000"
    assert pairs["00000", "00001"].previous_flow is None and pairs["00000", "00001"].history == ()
    assert pairs["00001", "00002"].previous_flow == flows / "fw_00000.flo"  # frame 0 -> 1 flows into frame 1
    assert pairs["00002", "00003"].history == (frames / "00000.png", frames / "00001.png")  # oldest first
    assert pairs["00002", "00001"].previous_flow == flows / "bw_00002.flo"  # reversed: 3 -> 2 flows into 2
    assert pairs["00002", "00001"].history == (frames / "00003.png",)
    assert pairs["00001", "00000"].history == (frames / "00003.png", frames / "00002.png")
    assert pairs["00003", "00002"].previous_flow is None and pairs["00003", "00002"].history == ()


def test_warm_started_pairs_start_from_the_carried_previous_flow(tmp_path):
    write_translation_dataset(tmp_path, frames=3)
    pairs = find_pairs(tmp_path, "train", both_directions=True)
    exact = FlowPairs(pairs, crop=(96, 112), augment=True, seed=0, warm_start=1.0, init_noise=0.0)
    noisy = FlowPairs(pairs, crop=(96, 112), augment=True, seed=0, warm_start=1.0, init_noise=2.0)
    warm = 0
    for epoch in range(3):
        exact.epoch = noisy.epoch = epoch
        for i, pair in enumerate(pairs):
            item = exact[i]
            if pair.previous_flow is None:
                assert not item["init"].any() and item["start"] == COLD
                continue
            warm += 1
            # constant motion carried forward is the same constant: cropped and flipped like the flow
            assert item["start"] == EXACT
            torch.testing.assert_close(item["init"], item["flow"])
            noisy_flow, noisy_init = noisy[i]["flow"], noisy[i]["init"]
            error = (noisy_init - noisy_flow).norm(dim=0)  # [h,w]
            assert 0 < error.mean() < 6
            assert (noisy_init[:, :, 1:] - noisy_init[:, :, :-1]).abs().max() < 1.0  # smooth, not per-pixel noise
    assert warm == 3 * 4  # 2 sequences x 2 directions x 1 pair with a previous one, 3 epochs
    half = FlowPairs(pairs, crop=None, augment=False, seed=0, warm_start=0.5)
    starts = []
    for epoch in range(20):
        half.epoch = epoch
        starts += [int(half[i]["start"]) for i, pair in enumerate(pairs) if pair.previous_flow is not None]
    assert 0.25 < np.mean(starts) < 0.75  # EXACT is 1, COLD 0


def test_own_flow_starts_carry_the_models_flow_for_the_previous_pair(tmp_path):
    write_translation_dataset(tmp_path, frames=3)
    pairs = find_pairs(tmp_path, "train", both_directions=True)
    dataset = FlowPairs(pairs, crop=(96, 112), augment=True, seed=0, warm_start=1.0, own_flow=1.0)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(pairs))])
    own = batch["start"] == OWN
    assert own.tolist() == [p.previous_flow is not None for p in pairs] and own.sum() == 4
    # the previous frame comes cropped and flipped like the pair: at constant motion d it shows at p
    # what image1 shows at p + d
    before = backward_warp(batch["image1"][own], batch["flow"][own])
    assert batch["history"].shape == (8, 1, 3, 96, 112) and (batch["history_length"] == own.long()).all()
    assert (before - batch["history"][own, -1])[:, :, 8:-8, 8:-8].abs().max() < 1e-5
    model = raft_small().train()
    init = own_starts(model, batch, iters=2)
    assert model.training and not init[~own].any()
    expected = forward_splat(model.eval()(batch["history"][own, -1], batch["image1"][own], iters=2))
    torch.testing.assert_close(init[own], expected, atol=1e-4, rtol=1e-4)  # batched vs one by one


def test_own_flow_chains_run_video_mode_over_the_history(tmp_path):
    write_translation_dataset(tmp_path, frames=5)
    pairs = find_pairs(tmp_path, "train", both_directions=True)
    dataset = FlowPairs(pairs, crop=None, augment=False, seed=0, warm_start=1.0, own_flow=1.0, own_chain=3)
    lengths = [int(dataset[i]["history_length"]) for i, pair in enumerate(pairs) for dataset.epoch in range(8)]
    assert set(lengths) == {0, 1, 2, 3}  # random lengths up to own_chain, capped by the history
    i = next(i for i, pair in enumerate(pairs) if len(pair.history) == 3)  # frames 0, 1, 2 before image1 = 3
    item = next(item for dataset.epoch in range(20) if (item := dataset[i])["history_length"] == 2)
    batch = torch.utils.data.default_collate([item])
    model = raft_small().eval()
    f1, f2, image1 = item["history"][1:2], item["history"][2:3], item["image1"][None]
    assert torch.equal(f1[0], read_image(pairs[i].history[1])) and torch.equal(f2[0], read_image(pairs[i].history[2]))
    with torch.no_grad():
        carried = forward_splat(model(f1, f2, iters=2))
        expected = forward_splat(model(f2, image1, iters=2, flow_init=carried))
    torch.testing.assert_close(own_starts(model, batch, iters=2), expected, atol=1e-4, rtol=1e-4)


def test_sequence_loss_weights_later_iterations_more():
    target = torch.zeros(1, 2, 4, 4)
    first, last = torch.ones(1, 2, 4, 4), torch.full((1, 2, 4, 4), 2.0)
    assert sequence_loss([first, last], target, gamma=0.8).item() == pytest.approx(0.8 * 1 + 2)
    target[0, 0, 0, 0] = 1000.0  # beyond MAX_FLOW: ignored
    assert sequence_loss([last], target).item() == pytest.approx(2.0)


def test_train_command_lowers_the_loss_and_writes_loadable_weights(tmp_path, capsys):
    write_translation_dataset(tmp_path / "data", frames=2, shifts=((2, 1),))
    code = main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--steps", "10",
                 "--batch-size", "2", "--iters", "2", "--eval-iters", "2", "--lr", "2e-4", "--log-every", "5",
                 "--no-augment"])
    assert code == 0
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 10
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3])  # deterministic: seeded, no augmentation
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["test"]["pairs"] == 1 and report["test"]["zero_flow_epe"] == pytest.approx(np.hypot(2, 1))
    model = load_raft(tmp_path / "run" / "raft_small.pth")
    assert not model.training
    assert "held-out EPE" in capsys.readouterr().out


def test_training_feeds_warm_starts_to_the_model(tmp_path):
    write_translation_dataset(tmp_path / "data", frames=3, shifts=((2, 1),))

    def first_loss(warm_start: str, own_flow: str = "0") -> float:
        out = tmp_path / f"run_{warm_start}_{own_flow}"
        # one batch holds all 4 pairs; 2 have a previous pair (warm-started when asked), 2 start from zero
        assert main(["train", "--data", str(tmp_path / "data"), "--out", str(out), "--steps", "1", "--batch-size",
                     "4", "--iters", "2", "--eval-iters", "2", "--no-augment", "--warm-start", warm_start,
                     "--init-noise", "0", "--own-flow", own_flow]) == 0
        assert json.loads((out / "report.json").read_text())["warm_start"] == float(warm_start)
        return json.loads((out / "log.jsonl").read_text().splitlines()[0])["loss"]

    # a new model outputs its initial flow (zeroed flow head): exact warm starts cost nothing, cold ones
    # cost |(2, 1)| in L1 at both iterations
    assert first_loss("0") == pytest.approx((1 + 0.8) * 1.5)
    assert first_loss("1") == pytest.approx((1 + 0.8) * 1.5 / 2)
    assert first_loss("1", own_flow="1") == pytest.approx((1 + 0.8) * 1.5)  # its own flow so far: zero
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "bad"), "--steps", "1",
                 "--own-chain", "0"]) == 2
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "bad"), "--steps", "1",
                 "--warm-start", "2"]) == 2


def test_missing_flow_folders_are_reported(tmp_path):
    (tmp_path / "train_B").mkdir()
    with pytest.raises(FlowError, match="train_flow"):
        find_pairs(tmp_path, "train", both_directions=True)
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--steps", "1"]) == 2
