"""vid2vid render for pose models (issue 29): Everybody Dance Now's pose normalisation on keypoints with known answers,
a prepared pose sequence and a video of a person (MediaPipe Holistic while streaming) rendered by tiny random-weight
pose exports, the drawn input equal to the pose dataset's (one builder), --side-by-side, and the refusals (no person,
real first frames, options of other inputs)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_poses import SMALL, H, W, make_poses, stick_figure
from vid2vid import cli
from vid2vid.checkpoint import export_generator
from vid2vid.config import load_config
from vid2vid.data import pose_normalize as pn
from vid2vid.data.openpose import read_openpose, write_openpose
from vid2vid.data.poses import read_mask
from vid2vid.data.sequences import build_dataset
from vid2vid.errors import UserError
from vid2vid.models.build import build_generator
from vid2vid.render import VideoRenderer, render_video
from vid2vid.video_io import VideoWriter, probe, read_image, write_image

ROOT = Path(__file__).resolve().parents[1]
needs_mediapipe = pytest.mark.skipif(sys.version_info >= (3, 13), reason="mediapipe 0.10.14 has no wheels for 3.13+")
CENTRAL = 64  # the central columns of a 128-wide crop


# ----------------------------------------------------------------------------------------------
# Pose normalisation (pure)
# ----------------------------------------------------------------------------------------------


def body(neck_y: float, ankle_y: float, x: float = 50.0) -> np.ndarray:
    """A BODY_25 body [25,3] with only its neck, both ankles and both heels found (the heels 2 px lower)."""
    b = np.zeros((25, 3))
    b[1] = (x, neck_y, 1)
    b[11] = (x - 5, ankle_y, 1)
    b[14] = (x + 5, ankle_y - 1, 1)  # the lowest ankle is the measure
    b[[21, 24]] = [(x + 5, ankle_y + 2, 1), (x - 5, ankle_y + 2, 1)]
    return b


def test_measures_ankle_height_and_stance():
    assert pn.measure(body(20, 100)) == (45.0, 100.0, 80.0)
    no_ankles = body(20, 100)
    no_ankles[[11, 14], 2] = 0
    assert pn.measure(no_ankles) == (45.0, 102.0, 82.0)  # the heels stand in
    no_neck = body(20, 100)
    no_neck[1] = 0
    assert np.isnan(pn.measure(no_neck)[2]) and np.isnan(pn.measure(np.zeros((25, 3)))).all()
    # far = the highest ankle, near = the lowest; the height there: the tallest of the frames near that position
    s = pn.stance(np.array([100, 150, 200, 101, np.nan]), np.array([40, 60, 80, 38, 90]))
    assert s == pn.Stance(100, 200, 40, 80)
    assert pn.stance(np.array([np.nan]), np.array([3.0])) is None
    assert s.scaled(2) == pn.Stance(200, 400, 80, 160)


def test_normalisation_known_answers():
    """A source twice as tall as the target maps onto the target's height; its ankle range onto the target's; the
    same person is the identity map."""
    target = pn.Stance(far=100, near=200, far_height=40, near_height=80)  # nearer: taller
    source = pn.Stance(far=250, near=450, far_height=80, near_height=160)  # twice as tall everywhere
    for a, expected_ankle, expected_height in ((250, 100, 40), (450, 200, 80), (350, 150, 60)):
        frame = body(a - (80 + (a - 250) * 0.4), a)  # the source's height at that depth: 80 .. 160
        m = pn.affine(pn.ankle_point(frame), source, target)
        mapped = [pn.normalize_points(frame[[i], :2], pn.ankle_point(frame), source, target)[0] for i in (1, 11)]
        neck, ankle = mapped
        assert ankle[1] == pytest.approx(expected_ankle) and ankle[1] - neck[1] == pytest.approx(expected_height)
        assert ankle[0] == pytest.approx(frame[11, 0])  # the scale is about the ankle point: x stays
        assert m[0, 0] == m[1, 1] == pytest.approx(0.5)
    # different ratios at the far and the near position: interpolated linearly in the ankle's depth
    target2 = pn.Stance(far=100, near=200, far_height=40, near_height=120)
    s, a2 = pn.frame_map(np.array([0.0, 350.0]), source, target2)
    assert s == pytest.approx((40 / 80 + 120 / 160) / 2) and a2 == pytest.approx(150)
    # the same person: the identity
    m = pn.affine(np.array([37.0, 180.0]), target, target)
    np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    # a source that never moves in depth: its one position maps onto the target's far one
    still = pn.Stance(far=300, near=300, far_height=100, near_height=100)
    assert pn.frame_map(np.array([0.0, 300.0]), still, target) == pytest.approx((0.4, 100))


def test_mapped_people_keep_missing_points_and_drop_those_leaving_the_frame():
    person = stick_figure(40, 0)
    person.pose[5] = 0  # not found: stays zeros
    m = np.array([[2.0, 0, 0], [0, 2.0, -10]])
    (out,) = pn.mapped_people([person], m, (H, W))
    assert (out.pose[5] == 0).all()
    found = person.pose[:, 2] > 0
    xy = person.pose[:, :2] * 2 + [0, -10]
    inside = found & (xy[:, 0] < W) & (xy[:, 1] >= 0) & (xy[:, 1] < H)
    np.testing.assert_allclose(out.pose[inside, :2], xy[inside])
    assert (out.pose[~inside] == 0).all() and (~inside & found).any()  # the feet leave the 64-high frame
    mask = np.zeros((H, W), np.uint8)
    mask[10:20, 30:40] = 255
    moved = pn.warped(mask, np.array([[1.0, 0, 5], [0, 1.0, 3]]))
    assert moved[13:23, 35:45].all() and moved.sum() == mask.sum()


# ----------------------------------------------------------------------------------------------
# Rendering (tiny random-weight pose exports)
# ----------------------------------------------------------------------------------------------


def _export(config: str, out: Path, *overrides: str) -> Path:
    cfg = load_config(ROOT / "configs" / config, [f"data.load_size={H}x{W}", f"data.crop_size={H}x{W}", *SMALL,
                                                  *overrides])
    torch.manual_seed(0)
    return export_generator(build_generator(cfg).state_dict(), cfg, out)


@pytest.fixture(scope="module")
def poses(tmp_path_factory):
    """The stick-figure pose layout of tests/test_poses.py (OpenPose + mask, no DensePose), 64x128."""
    return make_poses(tmp_path_factory.mktemp("poses") / "poses", densepose=False)


@pytest.fixture(scope="module")
def video_export(tmp_path_factory):
    """configs/demo_pose.yaml (vid2vid, OpenPose + mask, zeros first frames), shrunk, random weights."""
    return _export("demo_pose.yaml", tmp_path_factory.mktemp("pose_video") / "export")


@pytest.fixture(scope="module")
def image_export(tmp_path_factory):
    """configs/demo_pose_image.yaml (pix2pixHD, OpenPose + mask), shrunk, random weights."""
    return _export("demo_pose_image.yaml", tmp_path_factory.mktemp("pose_image") / "export")


def test_the_drawn_input_is_the_datasets(poses, video_export, tmp_path):
    """Rendering a prepared sequence: each frame's input is the pose dataset's test-phase input of the same files
    (the one builder, frame_input), and the output is the model's size, frame for frame."""
    renderer = VideoRenderer(video_export, device="cpu")
    cfg = load_config(video_export / "config.yaml", [f"data.root={poses}", "data.n_frames=6"])
    item = build_dataset(cfg.data, phase="test")[0]
    seq = "seq_0000"
    frames = []
    for t in range(6):
        people = read_openpose(poses / "test_openpose" / seq / f"{t:05d}.json")
        frame = read_image(poses / "test_img" / seq / f"{t:05d}.png")
        mask = read_mask(poses / "test_mask" / seq / f"{t:05d}.png")
        frames.append(renderer.step(people=people, frame=frame, mask=mask))
        np.testing.assert_array_equal(renderer.pose_input.cond, item["cond"][t].numpy())
        np.testing.assert_allclose(renderer.pose_input.real, item["frames"][t].numpy(), atol=1e-6)
    assert frames[0].shape == (H, CENTRAL, 3) and frames[0].dtype == np.uint8
    assert (frames[0] == frames[0][0, 0]).all()  # the first frames are zeros (mid-grey), never the source's own
    out = tmp_path / "pose.mp4"
    summary = render_video(video_export, poses / "test_openpose" / seq, out, device="cpu")
    info = probe(out)
    assert (info.n_frames, info.height, info.width) == (6, H, CENTRAL)
    assert "0 of 6 frames had no person" in str(summary)
    with pytest.raises(UserError, match=r"step\(people="):
        renderer.step(np.zeros((H, W), np.int64))
    with pytest.raises(UserError, match="body mask"):
        renderer.step(people=people, frame=frame)
    with pytest.raises(UserError, match="same size"):
        renderer.step(people=people, frame=frame[:32], mask=mask[:32])


def test_render_a_prepared_sequence_side_by_side_and_all(poses, video_export, image_export, tmp_path, capsys):
    seq = poses / "test_openpose" / "seq_0000"
    out = tmp_path / "sbs.mp4"
    assert cli.main(["render", str(seq), str(out), "-m", str(video_export), "--side-by-side", "--device", "cpu",
                     "--first-frame", f"image-model:{image_export}", "--max-frames", "4"]) == 0
    assert "4 frames in" in capsys.readouterr().out
    info = probe(out)
    assert (info.n_frames, info.height, info.width) == (4, H, 3 * CENTRAL)  # source | keypoints | output
    frames = tmp_path / "frames"
    assert cli.main(["render", str(seq), str(frames), "-m", str(image_export), "--side-by-side", "--frames-dir"]) == 0
    first = read_image(frames / "00000.png")
    renderer = VideoRenderer(image_export, device="cpu")
    generated = renderer.step(people=read_openpose(seq / "00000.json"), frame=read_image(poses / "test_img" /
                              "seq_0000" / "00000.png"), mask=read_mask(poses / "test_mask" / "seq_0000" / "00000.png"))
    real, drawn = renderer.pose_input.pictures()
    np.testing.assert_array_equal(first, np.concatenate([real, drawn, generated], axis=1))
    assert drawn.any() and real.shape == drawn.shape == (H, CENTRAL, 3)
    assert cli.main(["render", "--all", str(poses / "test_openpose"), str(tmp_path / "all"), "-m",
                     str(video_export)]) == 0
    assert probe(tmp_path / "all" / "seq_0000.mp4").n_frames == 6


def test_first_frames_from_the_source_and_other_inputs_options_are_refused(poses, video_export, tmp_path, capsys):
    seq = poses / "test_openpose" / "seq_0000"
    cases = [(["--first-frame", "real"], "pose source's own frames must never seed it"),
             (["--first-frame", f"real:{poses / 'test_img' / 'seq_0000'}"], "must never seed it"),
             (["--labels", "edges"], "--labels edges: this is a pose model"),
             (["--landmarks", "dlib"], "--landmarks: not for a pose model"),
             (["--size", "64x128"], "is a prepared sequence"),
             (["--pose-normalize", str(tmp_path)], "no " + str(tmp_path / "train_openpose"))]
    for args, message in cases:
        out = tmp_path / "x.mp4"
        assert cli.main(["render", str(seq), str(out), "-m", str(video_export), *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists() and sorted(tmp_path.iterdir()) == []
    assert cli.main(["render", str(poses / "test_img" / "seq_0000"), str(tmp_path / "x.mp4"), "-m",
                     str(video_export)]) == 2
    assert "not a pose sequence folder" in capsys.readouterr().err
    with pytest.raises(UserError, match="never seed"):
        VideoRenderer(video_export, device="cpu", first_frame="real")


def test_pose_normalize_to_the_training_person(poses, video_export, tmp_path):
    """--pose-normalize DATA_ROOT on a prepared sequence: the stick figure of the test phase stands as the training
    one (the same height, the same ankle line), so the map is the identity and the render equals the plain one."""
    seq = poses / "test_openpose" / "seq_0000"
    plain, normalised = tmp_path / "plain", tmp_path / "normalised"
    render_video(video_export, seq, plain, frames_dir=True, device="cpu")
    summary = render_video(video_export, seq, normalised, frames_dir=True, device="cpu", pose_normalize=poses)
    assert "6 frames" in str(summary)
    for a, b in zip(sorted(plain.iterdir()), sorted(normalised.iterdir())):
        np.testing.assert_array_equal(read_image(a), read_image(b))


# ----------------------------------------------------------------------------------------------
# A video of a person (MediaPipe Holistic while streaming)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def selfie_video(tmp_path_factory):
    """5 frames (240x320) of tests/fixtures/body's selfie moving right, frame 2 a plain grey picture; and a video of
    4 grey frames (no person)."""
    selfie = read_image(ROOT / "tests" / "fixtures" / "body" / "selfie_right_hand.jpg")
    folder = tmp_path_factory.mktemp("videos")
    person, nobody = folder / "selfie.mp4", folder / "nobody.mp4"
    with VideoWriter(person, fps=10, crf=12) as writer, VideoWriter(nobody, fps=10) as blank:
        for t in range(5):
            writer.write(np.full_like(selfie, 128) if t == 2 else np.roll(selfie, 4 * t, axis=1))
            if t < 4:
                blank.write(np.full_like(selfie, 90 + t))
    return person, nobody


@needs_mediapipe
def test_render_a_video_of_a_person(selfie_video, video_export, poses, tmp_path, capsys):
    """--labels pose: the keypoints and the body mask detected per frame (frames resized to --size first), the
    frame without the person drawn empty and counted; a video without anyone exits 2 and leaves nothing; the
    selfie shows no ankles, so --pose-normalize says it needs the whole body."""
    person, nobody = selfie_video
    out = tmp_path / "out.mp4"
    assert cli.main(["render", str(person), str(out), "-m", str(video_export), "--labels", "pose", "--size",
                     "240x320", "--side-by-side"]) == 0
    assert "1 of 5 frames had no person" in capsys.readouterr().out
    info = probe(out)
    assert (info.n_frames, info.height, info.width) == (5, H, 3 * CENTRAL)
    empty = tmp_path / "empty.mp4"
    assert cli.main(["render", str(nobody), str(empty), "-m", str(video_export), "--size", "240x320"]) == 2
    err = capsys.readouterr().err
    assert "no person in any of its 4 frames" in err and str(nobody) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # nothing half-written
    assert cli.main(["render", str(person), str(empty), "-m", str(video_export), "--size", "240x320",
                     "--pose-normalize", str(poses)]) == 2
    assert "never shows its person's neck and an ankle" in capsys.readouterr().err
    assert not empty.exists()


def test_a_densepose_model_does_not_render_a_video(selfie_video, tmp_path, capsys):
    export = _export("demo_pose.yaml", tmp_path / "export", "data.pose.openpose_only=false")
    assert cli.main(["render", str(selfie_video[0]), str(tmp_path / "x.mp4"), "-m", str(export)]) == 2
    assert "DensePose's IUV" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()


def _target(root: Path, size: tuple[int, int], scale: float, frames: int = 3) -> Path:
    """A target dataset (train_openpose + train_img) of the stick figure scaled by `scale` about its ankle point, in
    frames of `size` whose pixels are `size[0] / H` times the stick figure's."""
    factor = size[0] / H
    for t in range(frames):
        person = stick_figure(40 + 4 * t, t)
        ankle = pn.ankle_point(person.pose)
        m = np.array([[scale, 0, ankle[0] * (1 - scale)], [0, scale, ankle[1] * (1 - scale)]]) * factor
        write_openpose(root / "train_openpose" / "seq_0000" / f"{t:05d}.json",
                       pn.mapped_people([person], m, size))
        (root / "train_img" / "seq_0000").mkdir(parents=True, exist_ok=True)
        write_image(root / "train_img" / "seq_0000" / f"{t:05d}.png", np.zeros((*size, 3), np.uint8))
    return root


def test_pose_normalize_maps_the_source_onto_a_smaller_target(poses, tmp_path):
    """The keypoints iter_poses hands to the renderer: onto a target half as tall, the source's neck-to-ankle height
    halves, its ankles stay on the target's ankle line, every part (hands, face) moves with the body and the body
    mask shrinks with it; a target measured in frames twice as large is the same person (each is measured in its own
    frame's pixels)."""
    from vid2vid.render.poses import iter_poses, open_pose_input

    cfg = load_config(ROOT / "configs" / "demo_pose.yaml", [f"data.load_size={H}x{W}", f"data.crop_size={H}x{W}"])
    seq = poses / "test_openpose" / "seq_0000"
    plain = list(iter_poses(open_pose_input(seq, cfg.data.pose, size=None)))
    for target, expected in ((_target(tmp_path / "half", (H, W), 0.5), 0.5),
                             (_target(tmp_path / "large", (2 * H, 2 * W), 1.0), 1.0)):
        source = open_pose_input(seq, cfg.data.pose, size=None, normalize=target)
        mapped = list(iter_poses(source, 1, 4))
        assert len(mapped) == 4 and source.missing == 0
        for before, after in zip(plain[1:5], mapped):
            (p,), (q,) = before["people"], after["people"]
            x, y, height = pn.measure(q.pose)
            assert height == pytest.approx(expected * pn.measure(p.pose)[2])
            assert y == pytest.approx(pn.measure(p.pose)[1])  # the same ankle line (58) in both
            np.testing.assert_allclose(q.hand_left[:, :2] - q.pose[[7], :2],
                                       expected * (p.hand_left[:, :2] - p.pose[[7], :2]), atol=1e-9)
            assert after["mask"].sum() == pytest.approx(expected ** 2 * before["mask"].sum(), rel=0.15)
            np.testing.assert_array_equal(after["frame"], before["frame"])


def test_a_densepose_model_renders_a_prepared_sequence_with_its_iuv(tmp_path):
    """data.pose.openpose_only false: the IUV of <phase>_densepose is read with the keypoints, the input drawn is the
    dataset's (6 channels), and a step without the IUV is refused."""
    root = make_poses(tmp_path / "dense", sequences=(("test", 1),), frames=3, mask=False)
    export = _export("demo_pose.yaml", tmp_path / "export", "data.pose.openpose_only=false", "data.pose.mask=false")
    out = tmp_path / "dense.mp4"
    render_video(export, root / "test_openpose" / "seq_0000", out, device="cpu")
    assert probe(out).n_frames == 3
    cfg = load_config(export / "config.yaml", [f"data.root={root}", "data.n_frames=3"])
    item = build_dataset(cfg.data, phase="test")[0]
    renderer = VideoRenderer(export, device="cpu")
    people = read_openpose(root / "test_openpose" / "seq_0000" / "00001.json")
    frame = read_image(root / "test_img" / "seq_0000" / "00001.png")
    with pytest.raises(UserError, match="DensePose's IUV"):
        renderer.step(people=people, frame=frame)
    renderer.step(people=people, frame=frame, iuv=read_image(root / "test_densepose" / "seq_0000" / "00001_IUV.png"))
    assert renderer.pose_input.cond.shape == (6, H, CENTRAL)
    np.testing.assert_array_equal(renderer.pose_input.cond, item["cond"][1].numpy())
