"""Body keypoint consistency (vid2vid.eval.pose_consistency) on keypoints with known offsets, the pose view's point
mapping (transforms.apply_points, poses.frame_people) and tools/eval_quality.py --task pose end to end on a tiny pose
dataset of real-looking frames: scikit-image's astronaut (public domain) moving right inside a wider frame, prepared
with `vid2vid prepare video --labels pose` (MediaPipe Holistic)."""

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from vid2vid.config import Size
from vid2vid.data.openpose import PARTS, Person
from vid2vid.data.pose_input import central_columns
from vid2vid.data.pose_keypoints import BodyFrame
from vid2vid.data.poses import frame_people, frame_pixels
from vid2vid.data.transforms import ClipTransform, apply_image, apply_points, centre_transform
from vid2vid.eval.pose_consistency import (
    BODY_GROUPS,
    GROUPS,
    PoseTally,
    pose_consistency,
    score_frame,
    torso_size,
)
from vid2vid.landmarks.consistency import inter_ocular
from vid2vid.video_io import VideoWriter, write_image

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("eval_quality", ROOT / "tools" / "eval_quality.py")
eval_quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eval_quality)
needs_mediapipe = pytest.mark.skipif(sys.version_info >= (3, 13), reason="mediapipe 0.10.14 has no wheels for 3.13+")

NECK_TO_HIP = 100.0  # the test body's torso size


def body(seed: int = 0) -> np.ndarray:
    """A BODY_25 pose [25,3] with every point present; neck (1) at (200, 100), mid-hip (8) 100 px below it."""
    rng = np.random.default_rng(seed)
    pose = np.concatenate([rng.uniform(50, 350, (25, 2)), np.ones((25, 1))], axis=1)
    pose[1, :2], pose[8, :2] = (200, 100), (200, 100 + NECK_TO_HIP)
    return pose


def face(scale: float = 1.0) -> np.ndarray:
    """An OpenPose face [70,3]: 68 distinct points present, outer eye corners 36, 45 at 40 * scale px apart."""
    points = np.stack([np.linspace(150, 250, 70), 80 + 5 * np.sin(np.arange(70))], axis=1)
    points[36], points[45] = (180, 60), (180 + 40 * scale, 60)
    return np.concatenate([points, np.ones((70, 1))], axis=1)


def moved(pose: np.ndarray, offset, points=None) -> np.ndarray:
    """pose with (dx, dy) added to the points given (all by default), their confidence kept."""
    out = pose.copy()
    out[slice(None) if points is None else list(points), :2] += offset
    return out


def test_groups_cover_body_25_once():
    assert sorted(i for g in BODY_GROUPS.values() for i in g) == list(range(PARTS["pose"]))
    assert GROUPS == ("head", "torso", "arms", "legs", "feet", "overall")


@pytest.mark.parametrize("shift, error, pck", [(0.1, 0.1, 1.0), (0.3, 0.3, 0.0), (0.2, 0.2, 1.0)])
def test_every_point_shifted(shift, error, pck):
    """Every point moved by shift x torso (along a diagonal): error = shift, PCK 1 within 0.2 x torso, else 0."""
    target = body()
    d = shift * NECK_TO_HIP / np.sqrt(2)
    score = score_frame(Person(pose=moved(target, (d, d))), Person(pose=target))
    assert score.found and score.reference == "neck-hip"
    assert score.error == pytest.approx(error, rel=1e-9)
    tally = PoseTally()
    tally.add(score)
    result = tally.summary()
    assert result["pck"] == dict.fromkeys(GROUPS, pck) and result["error"] == pytest.approx(error)
    assert result["pck_points"]["overall"] == 25 and result["found"] == 1.0


def test_one_part_moved_drops_only_its_group():
    target = body(1)
    pred = moved(target, (0, 0.5 * NECK_TO_HIP), BODY_GROUPS["arms"])
    tally = PoseTally()
    tally.add(score_frame(Person(pose=pred), Person(pose=target)))
    pck = tally.summary()["pck"]
    assert pck["arms"] == 0.0 and all(pck[g] == 1.0 for g in ("head", "torso", "legs", "feet"))
    assert pck["overall"] == pytest.approx(21 / 25)
    assert tally.summary()["error"] == pytest.approx(0.5 * 4 / 25)


def test_missing_points():
    """Points absent from the conditioning count nowhere (even when detected far away); points the detection lacks
    are left out of the error and are wrong for PCK."""
    target, pred = body(2), body(2)
    target[[3, 4], 2] = 0  # the right elbow and wrist: not in the conditioning
    pred[[3, 4], :2] += 500  # ... detected far off: ignored
    pred[[10, 11]] = 0  # the right knee and ankle: not detected
    pred[[13, 14], 0] += 0.1 * NECK_TO_HIP  # the left knee and ankle: 0.1 off
    score = score_frame(Person(pose=pred), Person(pose=target))
    assert score.error == pytest.approx(0.1 * 2 / 21)  # 21 shared points, 2 of them 0.1 off
    tally = PoseTally()
    tally.add(score)
    result = tally.summary()
    assert result["pck_points"]["overall"] == 23 and result["pck_points"]["arms"] == 2
    assert result["pck"]["arms"] == 1.0 and result["pck"]["legs"] == 0.5
    assert result["pck"]["overall"] == pytest.approx(21 / 23)


def test_torso_size_and_its_fallbacks():
    pose = body()
    pose[[2, 5, 9, 12], :2] = [(170, 102), (230, 98), (180, 200), (220, 204)]  # shoulders, hips
    assert torso_size(pose) == (pytest.approx(NECK_TO_HIP), "neck-hip")
    no_mid_hip = pose.copy()
    no_mid_hip[8] = 0
    right, left = np.hypot(10, 98), np.hypot(10, 106)
    assert torso_size(no_mid_hip) == (pytest.approx((right + left) / 2), "shoulder-hip")
    no_mid_hip[12] = 0  # one side only
    assert torso_size(no_mid_hip) == (pytest.approx(right), "shoulder-hip")
    no_hips = no_mid_hip.copy()
    no_hips[9] = 0  # head and shoulders
    assert torso_size(no_hips) == (pytest.approx(np.hypot(60, 4)), "shoulders")
    coincident = no_hips.copy()
    coincident[5, :2] = coincident[2, :2]
    assert torso_size(coincident) == (None, None)
    no_neck = pose.copy()
    no_neck[1] = 0
    assert torso_size(no_neck)[1] == "shoulder-hip"
    # the fallback's size sets the threshold: 0.15 x the shoulder width off -> error 0.15, PCK 1
    size = np.hypot(60, 4)
    score = score_frame(Person(pose=moved(no_hips, (0.15 * size, 0))), Person(pose=no_hips))
    assert score.reference == "shoulders" and score.error == pytest.approx(0.15)
    # no torso size: found, but the body is not scored
    tally = PoseTally()
    tally.add(score_frame(Person(pose=coincident), Person(pose=coincident)))
    result = tally.summary()
    assert result["found"] == 1.0 and result["error"] is None and result["pck"]["overall"] is None
    assert result["torso"]["none"] == 1 and result["scored"] == 0


def test_face_nme_where_both_have_a_face():
    target = Person(pose=body(), face=face(2.0))  # outer eye corners 80 px apart
    score = score_frame(Person(pose=body(), face=moved(face(2.0), (3, 4))), target)
    assert score.face_nme == pytest.approx(5 / 80) and inter_ocular(target.face[:68, :2]) == 80
    partial = face()
    partial[30, 2] = 0  # one of the 68 points missing: no face
    assert score_frame(Person(pose=body(), face=partial), target).face_nme is None
    assert score_frame(Person(pose=body(), face=face()), Person(pose=body(), face=partial)).target_face is False
    tally = PoseTally()
    for pred in (Person(pose=body(), face=moved(face(2.0), (3, 4))), Person(pose=body()), None):
        tally.add(score_frame(pred, target))
    result = tally.summary()
    assert result["face_nme"] == pytest.approx(5 / 80) and result["face_found"] == pytest.approx(1 / 3)


class Replay:
    """A stand-in backend: returns its people lists in turn."""

    def __init__(self, found):
        self.found = list(found)

    def detect(self, frame):
        return BodyFrame(self.found.pop(0))


def test_found_and_skipped_frames():
    """Frames whose conditioning has no person (none, or one without a body point) are skipped; the others count
    for found whether the detector finds a person or not. With two conditioning people the detection is scored
    against the one it matches."""
    a, b = Person(pose=body(0)), Person(pose=moved(body(0), (400, 0)))
    frames = [np.zeros((4, 4, 3), np.uint8)] * 5
    targets = [[a], [], [Person(face=face())], [a], [a, b]]
    backend = Replay([[Person(pose=moved(body(0), (2, 0)))], [], [Person(pose=moved(body(0), (400, 0)))]])
    result = pose_consistency(frames, targets, backend).summary()
    assert result["frames"] == 3 and result["skipped"] == 2 and result["found"] == pytest.approx(2 / 3)
    assert result["error"] == pytest.approx(0.01)  # 2 px / 100 and 0 against b: (0.02 + 0) / 2
    assert result["pck"]["overall"] == 1.0 and result["torso"]["neck-hip"] == 2
    with pytest.raises(ValueError):
        pose_consistency(frames, targets[:2], Replay([[]]))
    merged = PoseTally()
    merged.merge(pose_consistency(frames[:1], targets[:1], Replay([[Person(pose=body(0))]])))
    merged.merge(pose_consistency(frames[:1], targets[:1], Replay([[]])))
    assert merged.summary()["found"] == 0.5 and merged.summary()["pck_points"]["overall"] == 25


def test_points_follow_the_framed_pixels():
    """A bright spot at a known sub-pixel place lands where apply_points / frame_people say, after the test phase's
    resize (down and up), centre crop and central columns (frame_pixels)."""
    h, w, spot = 180, 400, np.array([211.3, 77.6])
    ys, xs = np.mgrid[:h, :w]
    blob = np.exp(-((xs - spot[0]) ** 2 + (ys - spot[1]) ** 2) / (2 * 4.0**2))
    frame = np.repeat((255 * blob).round().astype(np.uint8)[..., None], 3, axis=2)
    person = Person(pose=np.zeros((25, 3)))
    person.pose[0] = (*spot, 0.9)
    person.pose[1] = (5, 5, 0.8)  # left of the central columns: dropped
    for load, crop, central in ((Size(128, 256), Size(128, 256), True), (Size(360, 800), Size(320, 640), True),
                                (Size(90, 200), Size(80, 160), False)):
        tf = centre_transform(load_size=load, crop_size=crop)
        view = frame_pixels(frame, tf, central)[..., 0].astype(np.float64)
        cols = central_columns(crop.w) if central else slice(0, crop.w)
        assert view.shape == (crop.h, cols.stop - cols.start)
        vys, vxs = np.mgrid[: view.shape[0], : view.shape[1]]
        weights = np.clip(view - 20, 0, None)
        centroid = np.array([(vxs * weights).sum(), (vys * weights).sum()]) / weights.sum()
        mapped = frame_people([person], h, w, tf, central)[0]
        assert np.abs(mapped.pose[0, :2] - centroid).max() < 0.15, (load, crop, central)
        assert mapped.pose[0, 2] == 0.9 and not mapped.pose[1].any() and not mapped.pose[2:].any()
    flipped = ClipTransform(Size(180, 400), 0, 0, Size(180, 400), True)
    image = apply_image(frame, flipped)[..., 0]
    x = apply_points(spot[None], (h, w), flipped)[0, 0]
    row = image[int(round(spot[1]))].astype(np.float64)  # the mirrored spot's row: its centre along x
    assert abs(x - (row * np.arange(w)).sum() / row.sum()) < 0.2 and abs(x - (w - 1 - spot[0])) < 1e-9


FRAMES, SHIFT = 4, 4  # frames of the clip, px the astronaut moves right per frame


def astronaut(t: int) -> np.ndarray:
    """The astronaut at 256x256 in the middle of a 256x512 grey frame, moved SHIFT * t px right: the central columns
    of a 256x512 crop (2 * (512 // 4 // 32 * 32) = 256) hold her."""
    image = cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    m = np.float32([[1, 0, 128 + SHIFT * t], [0, 1, 0]])
    return cv2.warpAffine(image, m, (512, 256), borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))


@pytest.fixture(scope="module")
def pose_data(tmp_path_factory):
    """A pose dataset (one test sequence of FRAMES frames) by `vid2vid prepare video --labels pose`, and the real
    frames' views (load 256x512, crop 256x512, central columns -> 256x256) written as a folder of frames, and a
    folder of blank frames."""
    if sys.version_info >= (3, 13):
        pytest.skip("mediapipe 0.10.14 has no wheels for Python 3.13+")
    from vid2vid.data.prepare_pose import prepare_pose_video

    base = tmp_path_factory.mktemp("pose")
    clip = base / "astronaut.mp4"
    with VideoWriter(clip, fps=10, crf=12) as writer:
        for t in range(2 * FRAMES):
            writer.write(astronaut(t))
    root = base / "data"
    prepare_pose_video(clip, root, seq_len=FRAMES, test_fraction=0.5)  # train: the first FRAMES, test: the rest
    frames = sorted((root / "test_img" / "seq_0000").glob("*.png"))
    assert len(frames) == FRAMES
    tf = centre_transform(load_size=Size(256, 512), crop_size=Size(256, 512))
    from vid2vid.video_io import read_image

    for name in ("copy", "blank"):
        (base / name).mkdir()
    for t, path in enumerate(frames):
        view = frame_pixels(read_image(path), tf)
        assert view.shape == (256, 256, 3)
        write_image(base / "copy" / f"{t:05d}.png", view)
        write_image(base / "blank" / f"{t:05d}.png", np.full_like(view, 128))
    return base, root


@needs_mediapipe
def test_eval_quality_pose_end_to_end(pose_data, capsys):
    """Found as a pose dataset by itself: the real frames' views as a video score exactly as the real frames' row
    (the floor), blank frames find no person."""
    base, root = pose_data
    out = base / "pose.json"
    code = eval_quality.main(["--data", str(root), "--video", f"copy={base}/copy", "--video", f"blank={base}/blank",
                              "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "PCK@0.2" in table and "person found" in table
    result = json.loads(out.read_text())
    assert result["task"] == "pose" and result["view_size"] == "256x256" and result["frames"] == [FRAMES]
    assert result["load_size"] == "256x512" and result["central_columns"] is True
    real, copy, blank = (result["rows"][k] for k in ("real frames", "copy", "blank"))
    assert real["found"] == 1.0 and real["frames"] == FRAMES and real["skipped"] == 0 and real["psnr"] is None
    # the floor: on the whole 256x512 frame Holistic places hips and knees below her waist (visibility >= 0.5; the
    # picture ends there), which it does not find again in the 256x256 view: low torso and leg PCK on real frames
    assert sum(real["torso"].values()) == FRAMES and real["scored"] == FRAMES
    assert real["error"] < 0.3 and real["pck"]["head"] > 0.8 and real["pck_points"]["head"] > 0
    assert real["face_nme"] is not None and real["face_nme"] < 0.05 and real["face_found"] == 1.0
    for key in ("error", "pck", "face_nme", "found", "torso"):
        assert copy[key] == real[key], key
    assert copy["psnr"] > 60
    assert blank["found"] == 0.0 and blank["error"] is None and blank["pck"]["overall"] is None
    assert blank["psnr"] < copy["psnr"] and blank["detail"] == pytest.approx(0.0, abs=1e-6)
    assert set(result["definitions"]) >= {"error", "pck", "torso", "face_nme", "found", "psnr", "l1", "detail"}


@needs_mediapipe
def test_eval_quality_pose_geometry(pose_data, capsys):
    """--all-columns: the whole 256x512 crop is the view, so the 256x256 videos' aspect ratio does not match;
    a crop larger than the load size is refused."""
    base, root = pose_data
    code = eval_quality.main(["--data", str(root), "--task", "pose", "--all-columns", "--video", f"x={base}/copy"])
    assert code == 2 and "aspect" in capsys.readouterr().err
    code = eval_quality.main(["--data", str(root), "--pose-size", "128x256", "--pose-crop", "256x512",
                              "--video", f"x={base}/copy"])
    assert code == 2 and "--pose-crop" in capsys.readouterr().err


@needs_mediapipe
def test_eval_quality_pose_sizes_from_a_config(pose_data, tmp_path, capsys):
    """--config (configs/demo_pose.yaml on this dataset): data.load_size, crop_size and pose.central_columns set the
    view (128x256 -> its central 128x128); its masks are not read."""
    base, root = pose_data
    config = tmp_path / "pose.yaml"
    text = (ROOT / "configs" / "demo_pose.yaml").read_text()
    assert "  root: data/pose\n" in text and "load_size: 128x256" in text
    config.write_text(text.replace("  root: data/pose\n", f"  root: {root}\n"))
    out = tmp_path / "pose.json"
    assert eval_quality.main(["--config", str(config), "--video", f"copy={base}/copy", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["load_size"], result["crop_size"], result["view_size"]) == ("128x256", "128x256", "128x128")
    assert result["rows"]["real frames"]["found"] == 1.0 and result["rows"]["copy"]["psnr"] > 30
