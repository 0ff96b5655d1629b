"""The face input (vid2vid.data.face_input) against the original vid2vid's FaceDataset (fixtures made by
tools/make_face_fixtures.py), and where it does better: close-ups padded, not sliced; flips swap left and right."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vid2vid.config import Size
from vid2vid.data.face_input import (
    N_DIST_MAPS,
    Box,
    FaceOptions,
    FaceSequence,
    crop_frame,
    draw_face,
    face_crop_box,
    fitted_curve,
    mirror_channels,
    with_upper_face,
)
from vid2vid.data.synthetic_faces import background, draw_frame, place, template_face

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "originals"
CASES = ["frontal", "edge", "rotated", "rotated_no_canny", "frontal_no_dist"]


def load(case: str) -> dict:
    with np.load(FIXTURES / f"face_{case}.npz") as z:
        fixture = {k: z[k] for k in z.files}
    fixture["meta"] = json.loads(str(fixture["meta"]))
    return fixture


@pytest.mark.parametrize("case", CASES)
def test_the_face_input_matches_the_original_within_one_step(case):
    """Drawn at the frame's resolution, cropped with the first frame's square, resized as PIL does: every value of
    the 15 (or 1) channels within 1/255 of the original's (the only difference: where the Canny edges meet a face
    edge outside the face, the original's uint8 sum wraps to 254, ours stays 255), part labels equal."""
    f = load(case)
    opt = f["meta"]["options"]
    options = FaceOptions(opt["no_dist_map"], opt["no_canny_edge"])
    size = Size(opt["loadSize"], opt["loadSize"])
    frames, points = f["frames"], f["points"].astype(np.float32)  # float32, as read_keypoints gives them
    box = face_crop_box(points[0], frames.shape[2], frames.shape[1])
    for t in range(len(frames)):
        face = draw_face(points[t], frames[t], box, size, options)
        expected = f["input"][t].astype(np.float32) / 255  # the original's values are exactly k/255
        assert face.cond.shape == expected.shape == (options.channels, *size)
        assert np.abs(face.cond - expected).max() <= 1 / 255 + 1e-6
        np.testing.assert_array_equal(face.cond[1:], expected[1:])  # distance maps: exact
        np.testing.assert_array_equal(face.parts, f["parts"][t])


def test_the_fixtures_cover_the_cases():
    """A frontal face, one whose square is shifted at the frame's edge, rotated faces with fractional points, and
    the no_canny_edge / no_dist_map options; each case's second frame moved (the first frame's square kept)."""
    assert load("edge")["meta"]["options"]["dataset_mode"] == "face"
    edge = load("edge")
    assert face_crop_box(edge["points"][0], 128, 96).x0 == 0
    assert (load("rotated")["points"] % 1 != 0).any()
    assert load("rotated_no_canny")["meta"]["options"]["no_canny_edge"]
    assert load("frontal_no_dist")["input"].shape[1] == 1 and load("frontal")["input"].shape[1] == 1 + N_DIST_MAPS
    assert not np.array_equal(*load("frontal")["points"])


def test_a_float_count_is_truncated_as_old_numpy_did():
    """The curve through (0, 0) and (5.7, 0) has int(5.7) = 5 points, from x = 0 to 5.7."""
    xs, ys = fitted_curve(np.array([0.0, 5.7]), np.array([0.0, 0.0]))
    np.testing.assert_array_equal(xs, [0, 1, 2, 4, 5])  # linspace(0, 5.7, 5) truncated
    np.testing.assert_array_equal(ys, 0)
    assert fitted_curve(np.array([0.0, 0.2, 1.2]), np.array([0.0, 1.0, 0.0])) is None  # |a| = 5 > 1: skipped
    xs, ys = fitted_curve(np.array([0.0, 0.0]), np.array([0.0, 3.0]))  # steeper than wide: y is the free axis
    np.testing.assert_array_equal(ys, [0, 1, 3])


def test_the_upper_face_mirrors_the_jaw():
    points = place(template_face(), 64, 64, 20, 0)
    full = with_upper_face(points)
    assert full.shape == (83, 2)
    assert (full[68:, 1] < points[:17, 1].min()).all()  # above the jaw's ends: the forehead
    np.testing.assert_array_equal(full[68:, 0], points[15:0:-1, 0].astype(np.int32))


def close_up(pad: int = 40):
    """A face too big for its 96x96 frame (the square reaches past the frame) and the same face in the frame padded
    black by `pad` pixels on every side."""
    points = place(template_face(0.1), 40, 50, 30, 0.1)
    frame = draw_frame(points, background(np.random.default_rng(0), Size(96, 96)), (220, 170, 140))
    padded = np.zeros((96 + 2 * pad, 96 + 2 * pad, 3), np.uint8)
    padded[pad:-pad, pad:-pad] = frame
    return points, frame, points + pad, padded


def test_a_close_up_is_padded_so_that_input_and_frame_line_up():
    """The square (2.5 face widths) is wider than the frame: the input is what the same face gives in the frame
    padded black, where the square fits; the frame crop is the same padded crop, so they line up."""
    points, frame, padded_points, padded = close_up()
    box = face_crop_box(points, 96, 96)
    assert box.x0 < 0 and box.x1 - box.x0 > 96
    inside = Box(box.x0 + 40, box.y0 + 40, box.x1 + 40, box.y1 + 40)
    options = FaceOptions(no_canny_edge=True)  # (the padded frame's border would add Canny edges of its own)
    ours = draw_face(points, frame, box, Size(64, 64), options)
    reference = draw_face(padded_points, padded, inside, Size(64, 64), options)
    np.testing.assert_allclose(ours.cond, reference.cond, atol=1 / 255 + 1e-6)
    np.testing.assert_array_equal(ours.parts, reference.parts)
    np.testing.assert_array_equal(crop_frame(frame, box, Size(64, 64)), crop_frame(padded, inside, Size(64, 64)))
    # the face's pixels in the cropped frame are where its part labels say
    crop = crop_frame(frame, box, Size(64, 64)).astype(int)
    skin = np.abs(crop - [220, 170, 140]).sum(-1) < 30
    assert (ours.parts[skin] > 0).mean() > 0.95
    with_canny = draw_face(points, frame, box, Size(64, 64))  # Canny of the frame itself, placed in the canvas
    assert with_canny.cond.shape == (15, 64, 64)


def test_flipping_swaps_left_and_right_parts():
    """A symmetric face centred in its square: the mirrored input with left/right channels swapped is the input
    again (up to pixel rounding); mirrored without the swap, the eyebrows and eyes are on the wrong channels."""
    points = place(template_face(0.1), 64, 48, 16, 0)
    frame = draw_frame(points, np.full((96, 128, 3), 90, np.uint8), (220, 170, 140))
    box = face_crop_box(points, 128, 96)
    cond = draw_face(points, frame, box, Size(64, 64), FaceOptions(no_canny_edge=True)).cond
    mirrored = cond[:, :, ::-1]
    swapped = mirrored[mirror_channels(len(cond))]
    assert np.abs(swapped - cond).mean() < 0.5 * np.abs(mirrored - cond).mean()
    assert mirror_channels(1) == [0] and sorted(mirror_channels(15)) == list(range(15))


def test_face_sequence_keeps_the_first_frames_square():
    sequence = FaceSequence(Size(32, 32))
    first = place(template_face(), 64, 48, 16, 0)
    frame = np.zeros((96, 128, 3), np.uint8)
    sequence.draw(first, frame)
    box = sequence.box
    face, crop = sequence.draw(first + 10, frame)
    assert sequence.box == box and face.cond.shape == (15, 32, 32) and crop.shape == (32, 32, 3)
    sequence.reset()
    sequence.draw(first + 10, frame)
    assert sequence.box != box


def test_crop_frame_resizes_bicubically_as_pil():
    frame = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    box = Box(5, 2, 35, 32)
    expected = np.asarray(Image.fromarray(frame).crop((5, 2, 35, 32)).resize((16, 16), Image.BICUBIC))
    np.testing.assert_array_equal(crop_frame(frame, box, Size(16, 16)), expected)
