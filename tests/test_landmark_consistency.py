"""Landmark consistency (vid2vid.landmarks.consistency), the face crop's point mapping (vid2vid.data.face_input) and
tools/eval_quality.py --task face, on procedural faces (vid2vid.data.synthetic_faces) whose landmarks are exact.
MediaPipe finds these faces within ~0.06 NME; dlib misses or misplaces many of them, so the detector tests use
MediaPipe."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from vid2vid.config import Size
from vid2vid.data.face_input import Box, FaceView, crop_frame, crop_points, face_crop_box
from vid2vid.data.keypoint_files import read_keypoints
from vid2vid.data.synthetic_faces import background, draw_frame, face_motion, place, template_face, write_faces
from vid2vid.landmarks import open_backend
from vid2vid.landmarks.consistency import inter_ocular, landmark_consistency, nme
from vid2vid.video_io import image_files, read_image, write_image

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("eval_quality", ROOT / "tools" / "eval_quality.py")
eval_quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eval_quality)

SIZE = Size(128, 128)
needs_mediapipe = pytest.mark.skipif(sys.version_info >= (3, 13), reason="mediapipe 0.10.14 has no wheels for 3.13+")


def face_points(t: int = 0, size: Size = SIZE, frames: int = 6) -> np.ndarray:
    """A synthetic face's exact landmarks [68,2] at frame t."""
    cx, cy, scale, roll, mouth = face_motion(t, frames, size, np.array([1.0, 1.0, 0.05, 2.0]))
    return place(template_face(mouth), cx, cy, scale, roll)


def face_frames(n: int = 4, size: Size = SIZE) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """n frames of one talking face and their landmarks."""
    back = background(np.random.default_rng(0), size)
    points = [face_points(t, size, n) for t in range(n)]
    return [draw_frame(p, back, (220, 170, 140)) for p in points], points


def test_nme_of_a_known_shift():
    """A target moved by (3, 4) px: every point is 5 px away, so NME = 5 / the outer-eye-corner distance."""
    target = face_points()
    iod = float(np.linalg.norm(target[36] - target[45]))
    assert inter_ocular(target) == pytest.approx(iod)
    assert nme(target + [3, 4], target) == pytest.approx(5 / iod, rel=1e-9)
    assert nme(target, target) == 0.0
    assert nme(2 * target + [3, 4], 2 * target) == pytest.approx(5 / (2 * iod), rel=1e-9)  # normalised by the size


def test_crop_points_follow_the_cropped_pixels():
    """A bright spot at a known sub-pixel place lands where crop_points says, after crop_frame's crop and resize
    (down and up), and FaceView adds the centre crop's offset."""
    h, w, spot = 180, 240, np.array([131.3, 77.6])
    ys, xs = np.mgrid[:h, :w]
    blob = np.exp(-((xs - spot[0]) ** 2 + (ys - spot[1]) ** 2) / (2 * 4.0**2))
    frame = np.repeat((255 * blob).round().astype(np.uint8)[..., None], 3, axis=2)
    for box, size in ((Box(70, 20, 190, 140), Size(64, 64)), (Box(70, 20, 190, 140), Size(300, 300)),
                      (Box(-30, -10, 170, 190), Size(128, 128))):
        crop = crop_frame(frame, box, size)[..., 0].astype(np.float64)
        cys, cxs = np.mgrid[: size.h, : size.w]
        weights = np.clip(crop - 20, 0, None)
        centroid = np.array([(cxs * weights).sum(), (cys * weights).sum()]) / weights.sum()
        assert np.abs(crop_points(spot[None], box, size)[0] - centroid).max() < 0.15, (box, size)
    view = FaceView(Box(70, 20, 190, 140), Size(80, 80), Size(64, 48))
    assert view.frame(frame).shape == (64, 48, 3)
    expected = crop_points(spot[None], view.box, view.load)[0] - [16, 8]
    assert np.allclose(view.points(spot[None])[0], expected)
    assert np.array_equal(view.frame(frame), crop_frame(frame, view.box, view.load)[8:72, 16:64])


@pytest.fixture(scope="module")
def mediapipe():
    if sys.version_info >= (3, 13):
        pytest.skip("mediapipe 0.10.14 has no wheels for Python 3.13+")
    backend = open_backend("mediapipe")
    yield backend
    backend.close()


def test_real_frames_score_low_and_shifted_or_blank_frames_high(mediapipe):
    frames, points = face_frames()
    real = landmark_consistency(frames, points, mediapipe)
    assert real["found"] == 1.0 and real["frames"] == 4 and real["nme"] < 0.1, real
    shifted = landmark_consistency([np.roll(f, 20, axis=1) for f in frames], points, mediapipe)  # 20 px right
    assert shifted["found"] == 1.0 and shifted["nme"] > 0.3, shifted
    blank = landmark_consistency([np.full_like(f, 128) for f in frames], points, mediapipe)
    assert blank == {"nme": None, "found": 0.0, "frames": 4}
    half = landmark_consistency(frames[:2] + [np.full_like(f, 128) for f in frames[2:]], points, mediapipe)
    assert half["found"] == 0.5 and half["nme"] < 0.1
    none = landmark_consistency(frames, [points[0], None, None, None], mediapipe)  # no target: not counted
    assert none["frames"] == 1 and none["found"] == 1.0


def test_the_face_nearest_the_target_is_scored(mediapipe):
    """Two faces side by side: each target is scored against its own face, not the other."""
    size = Size(128, 256)
    back = background(np.random.default_rng(1), size)
    left = place(template_face(0.1), 64, 60, 22, 0.0)
    right = place(template_face(0.1), 192, 60, 22, 0.05)
    frame = draw_frame(right, draw_frame(left, back, (220, 170, 140)), (200, 150, 120))
    assert len(mediapipe.detect(frame)) == 2
    for target in (left, right):
        assert landmark_consistency([frame], [target], mediapipe)["nme"] < 0.1


def test_one_target_per_frame(mediapipe):
    frames, points = face_frames(2)
    with pytest.raises(ValueError):
        landmark_consistency(frames, points[:1], mediapipe)


@needs_mediapipe
def test_eval_quality_face_end_to_end(tmp_path):
    """A tiny synthetic face dataset (found as a face dataset by itself): the real frames' crop rendered as a video
    scores like the real frames' row (the floor) with high PSNR; a blank video finds no face."""
    root, size, crop = tmp_path / "faces", Size(160, 160), Size(128, 128)
    write_faces(root, 0, 1, 5, size, seed=3)
    files = sorted((root / "test_keypoints" / "seq_0000").glob("*.txt"))
    frames = [read_image(p) for p in image_files(root / "test_img" / "seq_0000")]
    view = FaceView(face_crop_box(read_keypoints(files[0]), size.w, size.h), crop, crop)
    (tmp_path / "copy").mkdir()
    (tmp_path / "blank").mkdir()
    for t, frame in enumerate(frames):
        write_image(tmp_path / "copy" / f"{t:05d}.png", view.frame(frame))
        write_image(tmp_path / "blank" / f"{t:05d}.png", np.full((crop.h, crop.w, 3), 128, np.uint8))
    out = tmp_path / "face.json"
    code = eval_quality.main(["--data", str(root), "--landmarks", "mediapipe", "--video", f"copy={tmp_path}/copy",
                              "--video", f"blank={tmp_path}/blank", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["task"] == "face" and result["crop_size"] == "128x128" and result["frames"] == [5]
    real, copy, blank = (result["rows"][k] for k in ("real frames", "copy", "blank"))
    assert real["found"] == 1.0 and real["nme"] < 0.1 and real["psnr"] is None
    assert copy["nme"] == pytest.approx(real["nme"], abs=1e-6) and copy["psnr"] > 60
    assert blank["found"] == 0.0 and blank["nme"] is None and blank["psnr"] < copy["psnr"]
    assert blank["detail"] == pytest.approx(0.0, abs=1e-6)
    assert set(result["definitions"]) >= {"nme", "found", "psnr", "l1", "detail"}


@needs_mediapipe
def test_eval_quality_face_errors(tmp_path, capsys):
    root = tmp_path / "faces"
    write_faces(root, 0, 1, 3, Size(96, 96), seed=0)
    code = eval_quality.main(["--data", str(root), "--task", "face", "--video", "x=a.mp4,b.mp4"])
    assert code == 2 and "test_keypoints" in capsys.readouterr().err
    (tmp_path / "v").mkdir()
    for t in range(3):
        write_image(tmp_path / "v" / f"{t:05d}.png", np.zeros((96, 96, 3), np.uint8))
    code = eval_quality.main(["--data", str(root), "--face-size", "64x64", "--video", f"x={tmp_path}/v"])
    assert code == 2 and "--face-size" in capsys.readouterr().err
