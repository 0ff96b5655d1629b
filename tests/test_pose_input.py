"""The pose input (vid2vid.data.pose_input) against the original vid2vid's own drawing (data/keypoint2img.py) and
pose dataset (data/pose_dataset.py): every fixture of tests/fixtures/pose equal to the last bit."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vid2vid.data.openpose import Person, read_openpose
from vid2vid.data.pose_input import (
    PoseOptions,
    central_columns,
    densepose_input,
    draw_openpose,
    drop_densepose_parts,
    pose_input,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pose"
META = json.loads((FIXTURES / "meta.json").read_text())
DRAWN = [name for name in META["cases"] if ":" not in name]


@pytest.mark.parametrize("case", DRAWN)
def test_the_rendering_equals_the_originals(case):
    h, w = META["cases"][case]["size_hw"]
    ours = draw_openpose(read_openpose(FIXTURES / f"{case}.json"), h, w, PoseOptions(**META["cases"][case]["options"]))
    expected = np.asarray(Image.open(FIXTURES / f"{case}.png").convert("RGB"))
    assert ours.dtype == np.uint8 and ours.shape == expected.shape
    assert np.array_equal(ours, expected), f"{np.count_nonzero((ours != expected).any(-1))} pixels differ"


def test_the_fixtures_exercise_what_they_claim():
    """Overlapping people wrap around (a pixel darker than either person's), the basic variant has no face or hands,
    remove_face_labels changes nothing at test time."""
    two = read_openpose(FIXTURES / "two_overlapping.json")
    alone = [draw_openpose([p], 192, 256).astype(int) for p in two]
    both = np.asarray(Image.open(FIXTURES / "two_overlapping.png")).astype(int)
    wrapped = (alone[0] + alone[1] > 255) & (alone[0] > 0) & (alone[1] > 0)
    assert wrapped.any() and np.array_equal(both[wrapped], (alone[0] + alone[1])[wrapped] - 256)
    single = np.asarray(Image.open(FIXTURES / "single.png"))
    assert np.array_equal(single, np.asarray(Image.open(FIXTURES / "single_remove_face_labels.png")))
    basic = np.asarray(Image.open(FIXTURES / "single_basic_point_only.png"))
    assert not (basic == 255).all(-1).any() and (single == 255).all(-1).any()  # white: the face


def test_empty_parts_read_as_missing():
    people = read_openpose(FIXTURES / "empty_parts.json")
    assert not people[0].face.any() and not people[0].hand_left.any() and people[0].pose[:, 2].all()


@pytest.mark.parametrize("key", ["both", "openpose_only", "densepose_only", "both_remove_face_labels"])
def test_the_pose_input_equals_the_original_datasets(key):
    """The original's PoseDataset in the test phase (no resize): DensePose (part channel rescaled) then the OpenPose
    rendering, in [-1,1], the central 64 of 160 columns."""
    with np.load(FIXTURES / "dataset_expected.npz") as z:
        expected = z[key]
    options = PoseOptions(**META["cases"][f"dataset:{key}"]["options"])
    iuv = np.asarray(Image.open(FIXTURES / "dataset_iuv.png").convert("RGB"))
    ours = pose_input(read_openpose(FIXTURES / "dataset.json"), iuv, 96, 160, options)
    assert ours.dtype == np.float32 and ours.shape == expected.shape == (options.channels, 96, 64)
    assert np.array_equal(ours, expected)


def test_densepose_part_channel_is_part_over_24():
    iuv = np.zeros((2, 3, 3), np.uint8)
    iuv[..., 2] = [[0, 12, 24], [1, 2, 3]]
    assert np.allclose(densepose_input(iuv)[2], iuv[..., 2] / 24 * 2 - 1, atol=1e-6)


def test_central_columns_as_the_original_crops():
    assert central_columns(256) == slice(64, 192) and central_columns(160) == slice(48, 112)
    assert central_columns(1024) == slice(256, 768) and central_columns(300) == slice(86, 214)
    with pytest.raises(ValueError, match="128"):
        pose_input([], None, 64, 100, PoseOptions(openpose_only=True))


def test_training_drops_with_a_generator_and_is_reproducible():
    """rng given: limbs, hands and the face drop with random_drop_prob (1: nothing is drawn); DensePose parts too,
    and remove_face_labels removes the head's parts."""
    person = read_openpose(FIXTURES / "single.json")
    assert not draw_openpose(person, 192, 256, PoseOptions(random_drop_prob=1.0), np.random.default_rng(0)).any()
    options = PoseOptions(random_drop_prob=0.3, remove_face_labels=True)
    a, b = (draw_openpose(person, 192, 256, options, np.random.default_rng(5)) for _ in range(2))
    assert np.array_equal(a, b) and not np.array_equal(a, draw_openpose(person, 192, 256))
    iuv = np.zeros((4, 25, 3), np.uint8)
    iuv[..., 2] = np.arange(25)
    iuv[..., 0] = 7
    kept = drop_densepose_parts(iuv, PoseOptions(remove_face_labels=True), np.random.default_rng(0))
    assert (kept[:, 23:] == 0).all() and (kept[:, 1:23] == iuv[:, 1:23]).all()


def test_missing_people_draw_nothing():
    assert not draw_openpose([Person()], 32, 48).any() and not draw_openpose([], 32, 48).any()
