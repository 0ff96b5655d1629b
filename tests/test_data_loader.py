"""The clip dataset: format, seeding, clip-consistent augmentation (flow included), video files as
the RGB side, and datasets prepared from a real video."""

import shutil

import cv2
import numpy as np
import pytest
import torch

from flow.warp import backward_warp, valid_mask
from vid2vid.config import Size, from_dict
from vid2vid.data.prepare import cluster_labels, cluster_table, fit_colour_clusters, prepare_video
from vid2vid.data.sampler import ClipKey
from vid2vid.data.sequences import build_dataset
from vid2vid.errors import DataError, UserError
from vid2vid.video_io import VideoWriter


def _cfg(root, **data):
    base = {"root": str(root), "source": "folder", "load_size": "128x256", "crop_size": "128x256", "n_frames": 4,
            "flip": False}
    return from_dict({"data": {**base, **data}}).data


def _png(path, flags=cv2.IMREAD_UNCHANGED):
    return cv2.imread(str(path), flags)


def test_clip_format(synthetic_root):
    ds = build_dataset(_cfg(synthetic_root), seed=1)
    assert len(ds) == 2
    clip = ds[1]
    assert clip["labels"].shape == (4, 128, 256) and clip["labels"].dtype == torch.int64
    assert clip["inst"].shape == (4, 128, 256) and clip["inst"].dtype == torch.int64
    assert clip["frames"].shape == (4, 3, 128, 256) and clip["frames"].dtype == torch.float32
    assert clip["frames"].min() >= -1 and clip["frames"].max() <= 1 and clip["frames"].std() > 0.1
    assert clip["flow_fw"].shape == clip["flow_bw"].shape == (3, 2, 128, 256)
    seq, start = clip["sequence"], clip["start"]
    assert seq == "seq_0001" and clip["step"] == 1
    folder = synthetic_root / "train_A" / seq
    assert np.array_equal(clip["labels"][2].numpy(), _png(folder / f"{start + 2:05d}.png"))
    rgb = _png(synthetic_root / "train_B" / seq / f"{start:05d}.png", cv2.IMREAD_COLOR)[..., ::-1]
    assert np.allclose((clip["frames"][0].permute(1, 2, 0).numpy() + 1) * 127.5, rgb, atol=1e-3)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["frames"].shape == (2, 4, 3, 128, 256) and batch["flow_bw"].shape == (2, 3, 2, 128, 256)


def test_sampling_is_seeded_by_seed_epoch_index(synthetic_root):
    cfg = _cfg(synthetic_root, max_t_step=3, max_zoom=1.5, crop_size="96x192", flip=True)
    a, b = build_dataset(cfg, seed=7), build_dataset(cfg, seed=7)
    assert all(a.sample(i) == b.sample(i) for i in range(2))
    assert torch.equal(a[0]["frames"], b[0]["frames"])
    draws = set()
    for epoch in range(12):
        a.set_epoch(epoch)
        draws |= {a.sample(i) for i in range(2)}
    assert len(draws) > 12  # start, stride, crop and flip vary with the epoch
    steps = {s for _, s, _ in draws}
    assert steps == {1, 2, 3}
    flips = {tf.flip for _, _, tf in draws}
    assert flips == {True, False}


def test_clip_length_schedule(synthetic_root):
    ds = build_dataset(_cfg(synthetic_root))
    assert ds.set_n_frames(8) == 8 and ds[0]["frames"].shape[0] == 8 and ds[0]["flow_fw"].shape[0] == 7
    assert ds.set_n_frames(64) == 10  # capped at the shortest sequence
    with pytest.raises(DataError, match="data.n_frames"):
        build_dataset(_cfg(synthetic_root, n_frames=11))


def test_item_by_key_is_the_item_at_that_epoch_and_length(synthetic_root):
    """The training loader's ClipKey(epoch, index, n_frames) draws what dataset[index] draws after set_epoch
    and set_n_frames, without touching the dataset's own state (DataLoader workers keep none)."""
    ds = build_dataset(_cfg(synthetic_root, max_t_step=2, max_zoom=1.5, crop_size="96x192", flip=True), seed=4)
    by_key = ds[ClipKey(epoch=5, index=1, n_frames=3)]
    assert (ds.epoch, ds.n_frames) == (0, 4)
    ds.set_epoch(5)
    ds.set_n_frames(3)
    by_index = ds[1]
    assert by_key["frames"].shape[0] == 3 and (by_key["start"], by_key["step"]) == (by_index["start"], by_index["step"])
    for key in ("labels", "inst", "frames", "flow_fw", "flow_bw"):
        assert torch.equal(by_key[key], by_index[key]), key
    with pytest.raises(ValueError, match="n_frames"):
        ds[ClipKey(0, 0, 11)]  # longer than the shortest sequence


def test_test_phase_is_deterministic(synthetic_root):
    ds = build_dataset(_cfg(synthetic_root, phase="test", flip=True, max_zoom=2.0, crop_size="96x192"))
    clip = ds[0]
    assert (clip["start"], clip["step"]) == (0, 1) and clip["frames"].shape == (4, 3, 96, 192)
    labels = _png(synthetic_root / "test_A/seq_0000/00000.png")
    assert np.array_equal(clip["labels"][0].numpy(), labels[16:112, 32:224])  # centre crop, no flip


def _find(ds, want_flip: bool, want_step: int = 1):
    for epoch in range(50):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            _, step, tf = ds.sample(i)
            if tf.flip == want_flip and step == want_step:
                return i
    raise AssertionError("no such draw")


def test_flip_is_applied_to_the_whole_clip_and_its_flow(synthetic_root):
    flipped = build_dataset(_cfg(synthetic_root, flip=True), seed=3)
    plain = build_dataset(_cfg(synthetic_root, flip=False), seed=3)
    i = _find(flipped, True)
    plain.set_epoch(flipped.epoch)  # the same draws apart from the coin
    a, b = flipped[i], plain[i]
    assert a["start"] == b["start"]
    for key in ("labels", "inst", "frames"):
        assert torch.equal(a[key], b[key].flip(-1))
    for key in ("flow_fw", "flow_bw"):
        assert torch.equal(a[key][:, 0], -b[key][:, 0].flip(-1))  # u negated and mirrored
        assert torch.equal(a[key][:, 1], b[key][:, 1].flip(-1))


def _warp_check(clip):
    """Per pair: (error of frame t+1 warped by flow_fw[t] vs frame t over valid pixels, raw difference)."""
    frames = (clip["frames"] + 1) / 2
    out = []
    for t in range(frames.shape[0] - 1):
        fw, bw = clip["flow_fw"][t : t + 1], clip["flow_bw"][t : t + 1]
        valid = valid_mask(fw, bw)[0, 0]
        warped = backward_warp(frames[t + 1 : t + 2], fw)[0]
        out.append(((warped - frames[t]).abs().mean(0)[valid].mean().item(),
                    (frames[t + 1] - frames[t]).abs().mean().item(), valid.float().mean().item()))
    return out


@pytest.mark.parametrize("step", [1, 3])
def test_augmented_flow_still_warps_exactly(synthetic_root, step):
    """Zoom, crop, flip and temporal stride (composed flows) keep the flow consistent with the frames."""
    ds = build_dataset(_cfg(synthetic_root, max_zoom=1.6, crop_size="96x192", flip=True, max_t_step=3), seed=5)
    clip = ds[_find(ds, True, step)]
    assert clip["step"] == step and clip["frames"].shape == (4, 3, 96, 192)
    for err, raw, valid in _warp_check(clip):
        assert err < 0.05 and err < raw / 2 and valid > 0.5, (err, raw, valid)


def test_rgb_side_as_video_files(synthetic_root, tmp_path):
    root = tmp_path / "video_ds"
    shutil.copytree(synthetic_root / "train_A", root / "train_A")
    (root / "train_B").mkdir()
    for seq in ("seq_0000", "seq_0001"):
        with VideoWriter(root / "train_B" / f"{seq}.mp4", fps=10, crf=12) as writer:
            for png in sorted((synthetic_root / "train_B" / seq).glob("*.png")):
                writer.write(_png(png, cv2.IMREAD_COLOR)[..., ::-1])
    video = build_dataset(_cfg(root, max_t_step=2), seed=2)
    images = build_dataset(_cfg(synthetic_root, max_t_step=2), seed=2)
    for epoch in range(3):
        video.set_epoch(epoch)
        images.set_epoch(epoch)
        for i in range(2):
            a, b = video[i], images[i]
            assert (a["start"], a["step"]) == (b["start"], b["step"])
            assert torch.equal(a["labels"], b["labels"])
            err = (a["frames"][:, None] - b["frames"][None]).abs().mean((2, 3, 4))  # [T,T] video vs PNG frames
            assert err.diagonal().max() < 0.04  # H.264 (yuv420p, crf 12) is close to the PNGs ...
            assert torch.equal(err.argmin(1), torch.arange(4))  # ... and each frame is the right one
            assert "flow_fw" not in a and "inst" not in a


def test_prepared_video_kmeans(vtest_avi, tmp_path):
    out = tmp_path / "vtest_k"
    summary = prepare_video(vtest_avi, out, labels="kmeans:4", size=Size(96, 128), seq_len=10, test_fraction=0.25,
                            max_frames=40)
    assert "3 train sequences (30 frames), 1 test sequences (10 frames), 96x128" in summary
    assert "data.label_nc=4" in summary
    labels = np.stack([_png(p) for p in sorted((out / "train_A/seq_0001").glob("*.png"))])
    rgb = np.stack([_png(p, cv2.IMREAD_COLOR) for p in sorted((out / "train_B/seq_0001").glob("*.png"))])
    assert labels.shape == (10, 96, 128) and set(np.unique(labels)) == {0, 1, 2, 3}
    lightness = cv2.cvtColor(rgb.reshape(-1, 128, 3), cv2.COLOR_BGR2Lab)[..., 0].reshape(labels.shape)
    assert lightness[labels == 0].mean() + 50 < lightness[labels == 3].mean()  # darkest id 0, lightest id K-1
    assert (labels[1:] == labels[:-1]).mean() > 0.9  # one set of centres: a static scene does not flicker
    cfg = _cfg(out, label_nc=4, fg_labels=[], use_instance=False, load_size="96x128", crop_size="96x128",
               n_frames=6, flip=True)
    clip = build_dataset(cfg)[2]
    assert clip["frames"].shape == (6, 3, 96, 128) and clip["labels"].max() <= 3
    assert clip["frames"].min() >= -1 and clip["frames"].max() <= 1
    assert build_dataset(cfg, phase="test")[0]["labels"].shape == (6, 96, 128)


def test_colour_clusters_are_ordered_by_lightness():
    colours = np.array([[250, 250, 250], [200, 30, 30], [10, 10, 10], [120, 120, 120]], np.uint8)
    image = np.repeat(np.repeat(colours[None], 16, axis=0), 16, axis=1)  # four 16x16 patches
    centres = fit_colour_clusters([image], 4)
    assert np.all(np.diff(centres[:, 0]) > 0)
    ids = cluster_labels(image, cluster_table(centres))
    assert [int(ids[8, 8 + 16 * j]) for j in range(4)] == [3, 1, 0, 2]  # white, red, black, grey


def test_prepared_video_edges_and_errors(vtest_avi, tmp_path):
    out = tmp_path / "vtest_e"
    prepare_video(vtest_avi, out, labels="edges", seq_len=6, test_fraction=0.0, max_frames=13)
    assert sorted(p.name for p in out.iterdir()) == ["train_A", "train_B"]
    assert [len(list(p.iterdir())) for p in sorted((out / "train_A").iterdir())] == [6, 7]  # remainder joins
    edges = _png(out / "train_A/seq_0000/00003.png")
    assert edges.shape == (360, 480) and set(np.unique(edges)) == {0, 1} and 0.01 < edges.mean() < 0.3
    with pytest.raises(UserError, match="already exists"):
        prepare_video(vtest_avi, out, labels="edges", max_frames=4)
    with pytest.raises(UserError, match="kmeans:K"):
        prepare_video(vtest_avi, tmp_path / "x", labels="kmeans", max_frames=4)
    with pytest.raises(UserError, match="test-fraction"):
        prepare_video(vtest_avi, tmp_path / "x", test_fraction=1.0, max_frames=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vtest_e"]  # nothing half-written
