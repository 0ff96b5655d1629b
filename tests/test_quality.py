"""vid2vid.eval.quality and tools/eval_quality.py: score definitions on hand-made arrays, the cached segmenter on a
small synthetic dataset, the CLI's ceiling row from real frames written to an mp4, FID with weights of our own making,
and bad inputs (exit 2 naming the file)."""

import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vid2vid.data.sequences import read_ids, scan
from vid2vid.errors import UserError
from vid2vid.eval.quality import (
    REAL,
    confusion_matrix,
    evaluate_quality,
    frechet_distance,
    scores_from_confusion,
    segmentation_scores,
)
from vid2vid.eval.segmenter import SegmenterSettings, cache_key, learning_rate, train_segmenter
from vid2vid.video_io import VideoWriter, iter_frames, write_image

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("eval_quality", ROOT / "tools" / "eval_quality.py")
eval_quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eval_quality)

SETTINGS = SegmenterSettings(steps=100, width=8, max_side=64)
CLI_SETTINGS = ["--seg-steps", "100", "--seg-width", "8", "--seg-max-side", "64"]  # the same settings


# ----------------------------------------------------------------------------------------------
# Scores
# ----------------------------------------------------------------------------------------------


def test_perfect_prediction_scores_one_over_present_classes():
    truth = np.array([[0, 0, 3], [3, 7, 7]])
    scores = segmentation_scores(truth, truth, n_classes=10)
    assert scores.miou == 1.0 and scores.pixel_accuracy == 1.0
    assert scores.per_class_iou == {0: 1.0, 3: 1.0, 7: 1.0}  # classes absent from both are not counted


def test_known_confusion_gives_hand_computed_miou():
    truth = np.array([[0, 0, 0, 0], [1, 1, 1, 1]])
    pred = np.array([[0, 0, 0, 1], [1, 1, 1, 2]])
    scores = segmentation_scores(pred, truth, n_classes=5)
    # class 0: 3 hits, 1 missed -> 3/4; class 1: 3 hits, 1 false positive, 1 missed -> 3/5;
    # class 2: only predicted -> 0/1; classes 3, 4: absent from both -> excluded
    assert scores.per_class_iou == pytest.approx({0: 0.75, 1: 0.6, 2: 0.0})
    assert scores.miou == pytest.approx((0.75 + 0.6 + 0.0) / 3)
    assert scores.pixel_accuracy == pytest.approx(6 / 8)


def test_ignored_ids_and_accumulation_over_frames():
    truth = np.array([[0, 255], [1, 1]])
    pred = np.array([[0, 1], [1, 0]])
    scores = segmentation_scores(pred, truth, n_classes=256, ignore_ids=(255,))
    assert scores.pixel_accuracy == pytest.approx(2 / 3)  # the 255 pixel is skipped, not counted as wrong
    assert scores.per_class_iou == pytest.approx({0: 0.5, 1: 0.5})
    # the set's confusion is the sum over frames: mIoU of the set, not the mean of per-frame mIoUs
    frames = [(np.array([[0, 0]]), np.array([[0, 0]])), (np.array([[1, 1]]), np.array([[0, 1]]))]
    total = sum(confusion_matrix(p, t, 3) for p, t in frames)
    assert scores_from_confusion(total).per_class_iou == pytest.approx({0: 2 / 3, 1: 1 / 2})
    assert math.isnan(scores_from_confusion(np.zeros((3, 3))).miou)


def test_frechet_distance_of_shifted_features_is_the_squared_shift():
    features = np.random.default_rng(0).standard_normal((50, 6))
    assert frechet_distance(features, features) == pytest.approx(0, abs=1e-8)
    shift = np.array([1.0, -2.0, 0, 0, 0.5, 0])
    assert frechet_distance(features, features + shift) == pytest.approx(float(shift @ shift), rel=1e-6)


# ----------------------------------------------------------------------------------------------
# The segmenter (trained once per test session on conftest's synthetic dataset, cached in tmp)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seg_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("segmenter_cache")


@pytest.fixture(scope="module")
def segmenter(synthetic_root, seg_cache):
    return train_segmenter(synthetic_root, SETTINGS, cache_dir=seg_cache)


def held_out(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Real frames uint8 [T,H,W,3] and label ids [T,H,W] of the first test sequence."""
    seq = scan(root, "test")[0]
    frames = np.stack([f for f in iter_frames(seq.frames[0].parent)])
    return frames, np.stack([read_ids(p, "label") for p in seq.labels])


def test_segmenter_beats_chance_on_held_out_frames(synthetic_root, segmenter):
    frames, labels = held_out(synthetic_root)
    pred = segmenter.predict(frames)
    assert pred.shape == labels.shape
    scores = segmentation_scores(pred, labels, 256)
    majority = np.bincount(labels.ravel()).max() / labels.size
    assert scores.pixel_accuracy > majority + 0.2, (scores, majority)
    assert scores.miou > 2 / len(segmenter.classes), scores
    assert segmenter.meta["from_cache"] is False and segmenter.meta["train_seconds"] > 0
    train_ids = set()
    for seq in scan(synthetic_root, "train"):
        train_ids |= {int(i) for p in seq.labels for i in np.unique(read_ids(p, "label"))}
    assert segmenter.classes == sorted(train_ids)


def test_second_call_loads_the_cache_without_training(synthetic_root, segmenter, seg_cache):
    meta = Path(segmenter.meta["cache"]) / "meta.json"
    written = meta.stat().st_mtime_ns
    again = train_segmenter(synthetic_root, SETTINGS, cache_dir=seg_cache)
    assert meta.stat().st_mtime_ns == written  # nothing trained or stored again
    assert again.meta["from_cache"] is True
    assert again.meta["trained_at"] == segmenter.meta["trained_at"]
    assert again.meta["cache"] == segmenter.meta["cache"]
    frames, _ = held_out(synthetic_root)
    assert np.array_equal(again.predict(frames[:2]), segmenter.predict(frames[:2]))


def test_cache_key_follows_settings_and_training_files(synthetic_root, tmp_path):
    key = cache_key(synthetic_root, "train", SETTINGS)
    assert cache_key(synthetic_root, "train", SegmenterSettings(steps=101, width=8, max_side=64)) != key
    copy = shutil.copytree(synthetic_root, tmp_path / "copy", copy_function=shutil.copy2)  # keeps mtimes
    assert cache_key(copy, "train", SETTINGS) == key  # identity is relative to the root: moving is fine
    label = scan(copy, "train")[0].labels[0]
    write_image(label, np.zeros_like(read_ids(label, "label")))
    assert cache_key(copy, "train", SETTINGS)["dataset"] != key["dataset"]
    assert cache_key(copy, "test", SETTINGS)["dataset"] != key["dataset"]


def test_a_time_budget_stops_training_and_keys_the_cache(synthetic_root, tmp_path):
    timed = SegmenterSettings(steps=10**6, minutes=0.02, width=4, max_side=32)
    segmenter = train_segmenter(synthetic_root, timed, cache_dir=tmp_path)
    assert 1 <= segmenter.meta["steps_done"] < 10**6
    assert 1.2 <= segmenter.meta["train_seconds"] < 1.2 + 10  # stops at the first step past the budget
    assert cache_key(synthetic_root, "train", timed) != cache_key(synthetic_root, "train",
                                                                  SegmenterSettings(steps=10**6, width=4, max_side=32))
    assert learning_rate(1.0, 0.0) == pytest.approx(0.1) and learning_rate(1.0, 0.05) == pytest.approx(1.0)
    assert learning_rate(1.0, 1.0) == pytest.approx(0.0, abs=1e-12)


def test_evaluate_quality_with_a_trained_segmenter(synthetic_root, segmenter, tmp_path):
    frames, labels = held_out(synthetic_root)
    folder = tmp_path / "frames"  # a frame folder at twice the size: resized to the labels' size
    folder.mkdir()
    for t, frame in enumerate(frames[:3]):
        write_image(folder / f"{t:05d}.png", np.repeat(np.repeat(frame, 2, 0), 2, 1))
    result = evaluate_quality(synthetic_root, "test", {"big": [folder]}, segmenter=segmenter, max_frames=3)
    assert result["frames"] == [3] and result["segmenter"]["cache"] == segmenter.meta["cache"]
    big, real = result["rows"]["big"], result["rows"][REAL]
    assert big["psnr"] > 25 and big["miou"] == pytest.approx(real["miou"], abs=0.05)
    pred = segmenter.predict(frames[:3])  # the row pools the confusion matrix of every frame
    assert real["miou"] == pytest.approx(segmentation_scores(pred, labels[:3], 256).miou)
    with pytest.raises(UserError, match="real frames"):
        evaluate_quality(synthetic_root, "test", {REAL: [folder]}, segmenter=segmenter)


def test_detail_columns_tell_blur_from_the_real_frames(synthetic_root, segmenter, tmp_path):
    """Each row carries vid2vid.eval.detail's figures against the real frames, over the frames after detail_skip: a
    lossless copy scores 1 and 1, a blurred copy less on both; a detail_skip leaving no frame is an error."""
    import cv2

    frames, _ = held_out(synthetic_root)
    videos = {"same": frames[:4], "blurred": np.stack([cv2.GaussianBlur(f, (0, 0), 1.2) for f in frames[:4]])}
    for name, video in videos.items():
        (tmp_path / name).mkdir()
        for t, frame in enumerate(video):
            write_image(tmp_path / name / f"{t:05d}.png", frame)
    paths = {name: [tmp_path / name] for name in videos}
    result = evaluate_quality(synthetic_root, "test", paths, segmenter=segmenter, max_frames=4, detail_skip=1)
    rows = result["rows"]
    for name in (REAL, "same"):
        assert rows[name]["detail"] == pytest.approx(1) and rows[name]["detail_aligned"] == pytest.approx(1)
    assert rows["blurred"]["detail"] < 0.8 and rows["blurred"]["detail_aligned"] < 0.8
    assert rows["same"]["sequences"][0]["frames"] == 3 and "detail_aligned" in result["definitions"]
    with pytest.raises(UserError, match="detail_skip 4: held-out sequence"):
        evaluate_quality(synthetic_root, "test", paths, segmenter=segmenter, max_frames=4, detail_skip=4)


# ----------------------------------------------------------------------------------------------
# The CLI
# ----------------------------------------------------------------------------------------------


def write_mp4(path: Path, frames: np.ndarray) -> Path:
    with VideoWriter(path, fps=10) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def run(argv, capsys):
    code = eval_quality.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_real_frames_in_an_mp4_reach_the_ceiling(synthetic_root, segmenter, seg_cache, tmp_path, capsys):
    frames, _ = held_out(synthetic_root)
    name = scan(synthetic_root, "test")[0].name
    write_mp4(tmp_path / f"{name}.mp4", frames)
    code, out, err = run(["--data", synthetic_root, "--cache", seg_cache, *CLI_SETTINGS,
                          "--video", f"copy={tmp_path}/{{seq}}.mp4", "--json", tmp_path / "q.json"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "q.json").read_text())
    real, copy = result["rows"][REAL], result["rows"]["copy"]
    assert result["segmenter"]["from_cache"] is True  # trained by the fixtures above, not again
    assert real["psnr"] is None and copy["psnr"] > 30 and copy["l1"] < 0.03  # H.264 (yuv420p, crf 18)
    assert copy["miou"] == pytest.approx(real["miou"], abs=0.03)
    assert copy["pixel_accuracy"] == pytest.approx(real["pixel_accuracy"], abs=0.01)
    assert real["sequences"][0]["sequence"] == name and copy["sequences"][0]["path"] == str(tmp_path / f"{name}.mp4")
    assert 0 <= result["segmenter"]["prior_only_miou"] < real["miou"]
    assert REAL in out and "copy" in out and "mIoU" in out and "aligned detail" in out
    assert copy["detail"] == pytest.approx(1, abs=0.15) and real["detail"] == pytest.approx(1)


@pytest.fixture
def one_video(synthetic_root, tmp_path):
    """(dataset root, held-out frames, sequence name); the tests write their videos into tmp_path."""
    frames, _ = held_out(synthetic_root)
    return synthetic_root, frames, scan(synthetic_root, "test")[0].name


def test_cli_missing_video_exits_2_naming_it(one_video, tmp_path, capsys):
    root, _, _ = one_video
    missing = tmp_path / "nowhere.mp4"
    code, _, err = run(["--data", root, "--cache", tmp_path, "--video", f"m={missing}"], capsys)
    assert code == 2 and str(missing) in err and "Traceback" not in err


def test_cli_wrong_frame_count_exits_2_naming_it(one_video, tmp_path, capsys, segmenter, seg_cache):
    root, frames, _ = one_video
    short = write_mp4(tmp_path / "short.mp4", frames[:-2])
    code, _, err = run(["--data", root, "--cache", seg_cache, *CLI_SETTINGS, "--video", f"m={short}"], capsys)
    assert code == 2 and str(short) in err and f"{len(frames) - 2} frames" in err
    # with --max-frames the first N frames are measured: the same video is then long enough
    code, out, err = run(["--data", root, "--cache", seg_cache, *CLI_SETTINGS, "--video", f"m={short}",
                          "--max-frames", "4"], capsys)
    assert code == 0, err


def test_cli_wrong_number_of_videos_exits_2(one_video, tmp_path, capsys):
    root, frames, _ = one_video
    video = write_mp4(tmp_path / "v.mp4", frames)
    code, _, err = run(["--data", root, "--cache", tmp_path, "--video", f"m={video},{video}"], capsys)
    assert code == 2 and "2 paths for 1 held-out sequences" in err


def test_cli_bad_fid_weights_exit_2_saying_what_to_fetch(one_video, tmp_path, capsys):
    root, _, _ = one_video
    missing, wrong = tmp_path / "missing.pth", tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, wrong)
    for path in (missing, wrong):
        code, _, err = run(["--data", root, "--cache", tmp_path, "--fid-weights", path], capsys)
        assert code == 2 and str(path) in err and "inception_v3_google" in err and "Traceback" not in err
    assert not any(tmp_path.glob("*/meta.json"))  # refused before any training


def test_fid_with_weights_of_our_own_making(one_video, tmp_path, segmenter, seg_cache, capsys):
    from safetensors.torch import save_file
    from torchvision.models import inception_v3

    root, frames, name = one_video
    torch.manual_seed(0)
    weights = tmp_path / "inception.safetensors"
    save_file(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), str(weights))
    write_mp4(tmp_path / f"{name}.mp4", frames)
    code, out, err = run(["--data", root, "--cache", seg_cache, *CLI_SETTINGS, "--max-frames", "2",
                          "--video", f"copy={tmp_path}/{{seq}}.mp4", "--fid-weights", weights,
                          "--json", tmp_path / "q.json"], capsys)
    assert code == 0, err
    rows = json.loads((tmp_path / "q.json").read_text())["rows"]
    assert rows[REAL]["fid"] == pytest.approx(0, abs=1e-6)
    assert math.isfinite(rows["copy"]["fid"]) and rows["copy"]["fid"] >= 0
    assert "FID" in out
