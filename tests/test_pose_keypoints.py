"""Body keypoints in OpenPose's format from MediaPipe Holistic (vid2vid.data.pose_keypoints): the mapping on landmark
arrays made here, then left and right on real pictures (where MediaPipe is installed):

- scikit-image's astronaut (NASA, public domain): a person facing the camera, so her right shoulder, eye, ear and
  pupil must lie on the image's left;
- tests/fixtures/body/selfie_right_hand.jpg (CC BY 2.0, see its README): a selfie whose raised hand is the woman's
  right hand; MediaPipe Hands alone calls it "Left", Holistic (and we) call it right."""

import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from vid2vid.data.openpose import Person, read_openpose, write_openpose
from vid2vid.data.pose_keypoints import (
    BODY_FROM_MEDIAPIPE,
    DETECTED_CONFIDENCE,
    IRIS_CENTRES,
    SMALL_TOES,
    body_25,
    body_mask,
    face_70,
    hand_21,
    to_person,
)
from vid2vid.landmarks.mediapipe68 import MESH_TO_68
from vid2vid.video_io import read_image

SIZE = (480, 640)  # H, W
SELFIE = Path(__file__).parent / "fixtures" / "body" / "selfie_right_hand.jpg"
needs_mediapipe = pytest.mark.skipif(sys.version_info >= (3, 13), reason="mediapipe 0.10.14 has no wheels for 3.13+")


def mediapipe_pose(seed: int = 0) -> np.ndarray:
    """33 MediaPipe pose landmarks [33,3]: distinct points inside a 640x480 frame, visibilities in [0.6, 1)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform((10, 10), (630, 470), (33, 2))
    return np.concatenate([xy, rng.uniform(0.6, 1.0, (33, 1))], axis=1)


def test_body_25_mapping():
    pose = mediapipe_pose()
    body = body_25(pose, SIZE)
    assert body.shape == (25, 3)
    named = {  # BODY_25 -> MediaPipe, spelled out (the person's own right and left in both)
        0: 0, 2: 12, 3: 14, 4: 16, 5: 11, 6: 13, 7: 15, 9: 24, 10: 26, 11: 28, 12: 23, 13: 25, 14: 27,
        15: 5, 16: 2, 17: 8, 18: 7, 19: 31, 21: 29, 22: 32, 24: 30,
    }
    assert BODY_FROM_MEDIAPIPE == named
    for k, m in named.items():
        np.testing.assert_array_equal(body[k], pose[m])  # x, y and the visibility as the confidence
    np.testing.assert_array_equal(body[1, :2], (pose[11, :2] + pose[12, :2]) / 2)  # neck = mid-shoulders exactly
    np.testing.assert_array_equal(body[8, :2], (pose[23, :2] + pose[24, :2]) / 2)  # mid-hip = mid-hips
    assert body[1, 2] == min(pose[11, 2], pose[12, 2]) and body[8, 2] == min(pose[23, 2], pose[24, 2])
    assert SMALL_TOES == (20, 23) and not body[list(SMALL_TOES)].any()  # no small toe in MediaPipe: zeros


def test_body_25_unseen_points_are_zeros():
    """Below the visibility threshold or outside the frame: zeros, as OpenPose writes points it did not find; the
    neck and mid-hip need both of their points."""
    pose = mediapipe_pose(1)
    pose[14, 2] = 0.3  # the right elbow hidden
    pose[16, :2] = (700, 100)  # the right wrist right of the frame
    pose[28, :2] = (100, -1)  # the right ankle above it
    pose[23, 2] = 0.1  # the left hip hidden
    body = body_25(pose, SIZE)
    for k in (3, 4, 11, 12, 8):  # right elbow, wrist, ankle; left hip; mid-hip
        assert not body[k].any(), k
    assert body[1, 2] > 0 and body[2, 2] > 0  # the rest stays
    assert not body_25(pose, SIZE, min_visibility=0.0)[4].any()  # the frame still counts
    np.testing.assert_array_equal(body_25(pose, SIZE, min_visibility=0.0)[3], pose[14])
    with pytest.raises(ValueError, match=r"\[33,3\]"):
        body_25(pose[:25], SIZE)


def test_hand_21_same_order():
    hand = np.random.default_rng(2).uniform(20, 400, (21, 2))
    hand[5] = (-3, 50)  # outside the frame
    out = hand_21(hand, SIZE)
    inside = np.arange(21) != 5
    np.testing.assert_array_equal(out[inside, :2], hand[inside])
    assert (out[inside, 2] == DETECTED_CONFIDENCE).all() and not out[5].any()
    assert not hand_21(None, SIZE).any() and hand_21(None, SIZE).shape == (21, 3)


@pytest.mark.parametrize("points", [478, 468])
def test_face_70_pupils(points):
    """dlib's 68 points, then the right (68) and left (69) pupil: the refined mesh's iris centres, else the eye
    centres."""
    mesh = np.random.default_rng(3).uniform(50, 400, (points, 2))
    face = face_70(mesh, SIZE)
    assert face.shape == (70, 3) and (face[:, 2] == DETECTED_CONFIDENCE).all()
    np.testing.assert_allclose(face[:68, :2], mesh[MESH_TO_68], rtol=1e-6)  # float32 like mesh_to_68
    if points == 478:
        np.testing.assert_array_equal(face[68:, :2], mesh[list(IRIS_CENTRES)])
    else:
        np.testing.assert_allclose(face[68, :2], face[36:42, :2].mean(0))
        np.testing.assert_allclose(face[69, :2], face[42:48, :2].mean(0))
    assert not face_70(None, SIZE).any()


def test_to_person_round_trip(tmp_path):
    """A Person of all parts, through write_openpose and read_openpose unchanged."""
    rng = np.random.default_rng(4)
    person = to_person(mediapipe_pose(5), rng.uniform(0, 400, (21, 2)), None, rng.uniform(0, 400, (478, 2)), SIZE)
    assert isinstance(person, Person) and not person.hand_right.any() and person.hand_left[:, 2].all()
    write_openpose(tmp_path / "f.json", [person])
    (back,) = read_openpose(tmp_path / "f.json")
    for part in ("pose", "face", "hand_left", "hand_right"):
        np.testing.assert_array_equal(getattr(back, part), getattr(person, part))


def test_body_mask_threshold():
    probability = np.array([[0.0, 0.49, 0.5], [0.51, 0.9, 1.0]], np.float32)
    mask = body_mask(probability, (2, 3))
    assert mask.dtype == np.uint8 and mask.shape == (2, 3)
    np.testing.assert_array_equal(mask, [[0, 0, 0], [255, 255, 255]])
    assert body_mask(None, (4, 5)).shape == (4, 5) and not body_mask(None, (4, 5)).any()


@pytest.fixture(scope="module")
def holistic():
    if sys.version_info >= (3, 13):
        pytest.skip("mediapipe 0.10.14 has no wheels for Python 3.13+")
    from vid2vid.data.pose_keypoints import HolisticBackend

    backend = HolisticBackend(video=False)
    yield backend
    backend.close()


def test_astronaut_right_is_her_right(holistic):
    """She faces the camera: her right shoulder, eye, ear and pupil are on the image's left, each left one on the
    right; the right pupil lies inside her right eye's outline (points 36-41); the mask covers her, not the wall."""
    image = skimage.data.astronaut()  # [512,512,3]
    found = holistic.detect(image)
    (person,) = found.people
    pose, face = person.pose, person.face
    for right, left in ((2, 5), (15, 16), (17, 18)):  # shoulders, eyes, ears
        assert pose[right, 2] > 0.5 and pose[left, 2] > 0.5
        assert pose[right, 0] < pose[0, 0] < pose[left, 0], (right, left)  # either side of the nose
    assert pose[2, 0] < 150 and pose[5, 0] > 250  # the shoulders at ~113 and ~306 px
    assert (face[:, 2] > 0).all()
    for pupil, eye in ((68, face[36:42]), (69, face[42:48])):
        assert eye[:, 0].min() < face[pupil, 0] < eye[:, 0].max() and eye[:, 1].min() - 3 < face[pupil, 1]
    assert face[68, 0] < face[69, 0]
    assert found.mask.shape == (512, 512) and set(np.unique(found.mask)) == {0, 255}
    assert found.mask[300, 200] == 255 and found.mask[30, 480] == 0  # her suit; the wall, top right
    assert not person.hand_left.any() and not person.hand_right.any()  # her hands are out of the picture


def test_selfie_hand_is_her_right_hand(holistic):
    """The raised hand is her right hand (fixture README): written as hand_right, joined to her right wrist."""
    image = read_image(SELFIE)  # [240,320,3]
    (person,) = holistic.detect(image).people
    assert (person.hand_right[:, 2] > 0).all() and not person.hand_left.any()
    wrist, right_wrist, left_shoulder = person.hand_right[0, :2], person.pose[4], person.pose[5]
    assert right_wrist[2] > 0.5 and np.linalg.norm(wrist - right_wrist[:2]) < 30
    assert np.linalg.norm(wrist - person.pose[2, :2]) < np.linalg.norm(wrist - left_shoulder[:2])
    assert person.hand_right[4, 0] < person.hand_right[20, 0]  # its back to the camera: thumb left of the little finger


@needs_mediapipe
@pytest.mark.filterwarnings("ignore::UserWarning")  # protobuf's deprecation notice
def test_hands_alone_would_call_it_left():
    """Why the hands come from Holistic: MediaPipe Hands alone labels the same right hand "Left" (mirrored)."""
    from mediapipe.python.solutions import hands

    with hands.Hands(static_image_mode=True, max_num_hands=2) as model:
        result = model.process(read_image(SELFIE))
    (handedness,) = result.multi_handedness
    assert handedness.classification[0].label == "Left"


def test_no_person(holistic):
    found = holistic.detect(np.full((120, 160, 3), 90, np.uint8))
    assert found.people == [] and found.mask.shape == (120, 160) and not found.mask.any()



ASTRONAUT_CENTRE = (256.0, 200.0)  # about her head and shoulders (x, y)
BODY_MOTIONS = [(12, 0, 0, 1.0), (0, -10, 0, 1.0), (-12, 0, 0, 1.0), (0, 0, 8, 1.0), (0, 0, -8, 1.0),
                (0, 0, 0, 1.12), (0, 0, 0, 0.9), (6, 4, 5, 1.06)]  # (dx, dy, degrees, scale) about ASTRONAUT_CENTRE
HEAD, TRUNK = [0, 15, 16, 17, 18], [1, 2, 5]  # BODY_25: nose, eyes, ears; neck, shoulders


@needs_mediapipe
def test_astronaut_body_points_follow_known_affine_motions(holistic):
    """The astronaut moved by known rotations (up to 8 degrees), scales (0.9-1.12) and shifts: the points detected on
    the moved picture lie where the unmoved picture's points go under the same affine, as a fraction of her shoulder
    width (~194 px). Measured here (Holistic on a still picture): the head's points within 0.005-0.046, the neck and
    shoulders within 0.19 (her right shoulder, under the suit's folds and cut by the frame, moves most), so the bounds
    are 0.06 and 0.25; a swapped or misplaced index would be off by ~0.5 or more; each shoulder stays on its side."""
    import cv2

    image = skimage.data.astronaut()  # [512,512,3]
    (still,) = holistic.detect(image).people
    width = np.linalg.norm(still.pose[2, :2] - still.pose[5, :2])
    for dx, dy, degrees, scale in BODY_MOTIONS:
        m = cv2.getRotationMatrix2D(ASTRONAUT_CENTRE, degrees, scale)
        m[:, 2] += (dx, dy)
        moved = cv2.warpAffine(image, m, (512, 512), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        (person,) = holistic.detect(np.ascontiguousarray(moved)).people
        for points, bound in ((HEAD, 0.06), (TRUNK, 0.25)):
            assert (person.pose[points, 2] > 0).all(), (dx, dy, degrees, scale)
            expected = still.pose[points, :2] @ m[:, :2].T + m[:, 2]  # [K,2]
            error = np.linalg.norm(person.pose[points, :2] - expected, axis=1) / width
            assert error.max() < bound, (dx, dy, degrees, scale, error.round(3))
        assert person.pose[2, 0] < person.pose[0, 0] < person.pose[5, 0]
