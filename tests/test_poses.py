"""Pose datasets end to end (data.condition: pose): config rules and channel counts, the clip dataset (the drawing is
pose_input's, random drops only in training and seeded, no flip), check-data (--draw too), bad files, and training
a per-frame and a video model through the CLI on a tiny stick figure made here."""

import shutil
import sys

import numpy as np
import pytest
import torch
import yaml

from vid2vid import cli
from vid2vid.config import central_width, load_config
from vid2vid.data.openpose import Person, read_openpose, write_openpose
from vid2vid.data.pose_input import PoseOptions, central_columns, draw_openpose, pose_input, to_signed
from vid2vid.data.sampler import ClipKey
from vid2vid.data.sequences import build_dataset
from vid2vid.data.transforms import apply_ids
from vid2vid.errors import ConfigError
from vid2vid.models.build import discriminator_input_channels, generator_input_channels
from vid2vid.video_io import probe, read_image, write_image

H, W = 64, 128  # the frames; the central columns of a 128-wide crop: 64
POSE = ["data.condition=pose", "data.label_nc=25", "data.use_instance=false", "data.fg_labels=[]",
        f"data.load_size={H}x{W}", f"data.crop_size={H}x{W}"]
SMALL = ["model.ngf=8", "model.n_downsample=2", "model.n_blocks=1", "discriminator.ndf=8", "discriminator.num_D=1",
         "discriminator.n_layers=2", "loss.vgg=0", "train.max_steps=2", "train.log_every=1", "train.sample_every=2",
         "train.checkpoint_every=2"]

# A stick figure in BODY_25 (x, y offsets from the neck's column, y from the top): nose, neck, right arm, left arm,
# hips, right leg, left leg, eyes, ears, left foot, right foot
BODY = np.array([(0, 8), (0, 14), (-6, 14), (-10, 22), (-12, 30), (6, 14), (10, 22), (12, 30), (0, 34), (-4, 34),
                 (-5, 46), (-5, 58), (4, 34), (5, 46), (5, 58), (-2, 6), (2, 6), (-4, 7), (4, 7), (8, 60), (9, 60),
                 (4, 60), (-8, 60), (-9, 60), (-4, 60)], np.float64)


def stick_figure(x: float, t: int) -> Person:
    """The figure with its neck at column x, arms swinging with t; both hands and the face drawn too."""
    body = BODY.copy()
    body[:, 0] += x
    body[[3, 4], 1] -= 2 * (t % 3)  # the right arm rises
    body[[6, 7], 1] -= 2 * ((t + 1) % 3)
    hands = []
    for wrist in (body[7], body[4]):  # left, right
        points = [wrist] + [wrist + (f - 2 + 0.3 * k, 1.5 * k) for f in range(5) for k in range(1, 5)]
        hands.append(np.c_[np.array(points), np.ones(21)])
    angles = np.linspace(0, 2 * np.pi, 70, endpoint=False)
    face = np.c_[body[0, 0] + 3 * np.cos(angles), body[0, 1] + 2 * np.sin(angles), np.ones(70)]
    return Person(pose=np.c_[body, np.ones(25)], face=face, hand_left=hands[0], hand_right=hands[1])


def make_poses(root, sequences=(("train", 2), ("test", 1)), frames=6, densepose=True, mask=True):
    """The pose layout of a stick figure walking right: <phase>_img, <phase>_openpose, <phase>_densepose (a part id
    per body region) and <phase>_mask."""
    for phase, n in sequences:
        for s in range(n):
            for t in range(frames):
                name, x = f"seq_{s:04d}", 40 + 4 * t + 10 * s
                person = stick_figure(x, t)
                write_openpose(root / f"{phase}_openpose" / name / f"{t:05d}.json", [person])
                parts = np.zeros((H, W), np.uint8)
                parts[6:13, x - 5: x + 6] = 23  # head
                parts[13:35, x - 7: x + 8] = 1  # torso
                parts[35:60, x - 7: x + 8] = 7  # legs
                yy, xx = np.mgrid[:H, :W]
                iuv = np.stack([(xx * 2) % 256, (yy * 4) % 256, parts], -1).astype(np.uint8) * (parts > 0)[..., None]
                picture = draw_openpose([person], H, W)
                frame = np.full((H, W, 3), 70, np.uint8) + picture // 2 + (parts > 0)[..., None] * 40
                for kind in ("img", *["densepose"] * densepose, *["mask"] * mask):
                    (root / f"{phase}_{kind}" / name).mkdir(parents=True, exist_ok=True)
                write_image(root / f"{phase}_img" / name / f"{t:05d}.png", frame.astype(np.uint8))
                if densepose:
                    write_image(root / f"{phase}_densepose" / name / f"{t:05d}_IUV.png", iuv)
                    write_image(root / f"{phase}_densepose" / name / f"{t:05d}_INDS.png", parts)  # not read
                if mask:
                    write_image(root / f"{phase}_mask" / name / f"{t:05d}.png", (parts > 0).astype(np.uint8) * 255)
    return root


@pytest.fixture(scope="module")
def poses(tmp_path_factory):
    return make_poses(tmp_path_factory.mktemp("poses") / "poses")


def pose_config(root, *overrides):
    return load_config(None, [*POSE, f"data.root={root}", "model.use_fg=false", *overrides])


def test_pose_config_rules_and_channels(poses):
    cfg = pose_config(poses)
    assert cfg.data.flip is False and cfg.model.first_frame == "zeros"  # the original's pose defaults
    assert generator_input_channels(cfg) == 6 and discriminator_input_channels(cfg) == 9
    assert generator_input_channels(pose_config(poses, "data.pose.openpose_only=true")) == 3
    assert generator_input_channels(pose_config(poses, "data.pose.openpose_only=true", "data.pose.mask=true")) == 4
    assert generator_input_channels(pose_config(poses, "data.pose.mask=true")) == 7
    for bad, key in (("data.label_nc=35", "data.label_nc"), ("data.use_instance=true", "data.use_instance"),
                     ("data.flip=true", "data.flip"), ("model.first_frame=real", "model.first_frame"),
                     ("data.pose.random_drop_prob=1.5", "data.pose.random_drop_prob"),
                     ("data.crop_size=64x96", "data.crop_size"),  # central columns of a 96-wide crop: none
                     ("data.source=synthetic", "no synthetic pose dataset"),
                     ("model.n_scales_spatial=2", "multiple of 256"),  # 128 -> 64 columns, 64 -> none
                     ("data.pose.opnpose_only=true", "did you mean data.pose.openpose_only")):
        with pytest.raises(ConfigError, match=key):
            pose_config(poses, bad)
    # the networks' size is the central columns': 64 px wide here, divisible by 2^3 but not by 2^7
    assert pose_config(poses, "model.n_downsample=3")
    with pytest.raises(ConfigError, match=r"central columns.*64x64.*128"):
        pose_config(poses, "model.name=pix2pix", "model.unet_downs=7")
    assert pose_config(poses, "data.pose.central_columns=false", "data.crop_size=64x96", "data.load_size=64x96")
    for w in range(1, 2100):  # the config's width is the dataset's crop
        assert len(range(w)[central_columns(w)]) == central_width(w)
    two = pose_config(poses, "model.n_scales_spatial=2", "data.crop_size=64x256", "data.load_size=64x256")
    assert str(two.data.crop_size) == "64x256"  # central columns 128, at half size 64


@pytest.mark.parametrize("name, channels", [("pose", 6), ("pose_image", 6), ("demo_pose", 4), ("demo_pose_image", 4)])
def test_the_pose_configs_load(name, channels):
    cfg = load_config(f"configs/{name}.yaml")
    assert cfg.data.condition == "pose" and not cfg.data.flip
    assert generator_input_channels(cfg) == channels
    if cfg.model.name == "vid2vid":
        assert cfg.model.first_frame == "zeros"


@pytest.mark.parametrize("openpose_only, mask, channels", [(True, False, 3), (False, False, 6), (False, True, 7),
                                                           (True, True, 4)])
def test_the_test_phase_is_pose_input_of_the_files(poses, openpose_only, mask, channels):
    """At the frames' own size the clip's input is pose_input of the same files (the one drawing), then the mask;
    the labels are the DensePose part ids (else the mask, else where the rendering is drawn); frames the central
    columns of the real frames; all in [-1,1]."""
    cfg = pose_config(poses, f"data.pose.openpose_only={openpose_only}", f"data.pose.mask={mask}", "data.n_frames=3")
    item = build_dataset(cfg.data, phase="test")[0]
    assert item["cond"].shape == (3, channels, H, 64) and item["frames"].shape == (3, 3, H, 64)
    assert item["cond"].dtype == torch.float32 and -1 <= item["cond"].min() and item["cond"].max() <= 1
    assert item["cond"].min() == -1 and item["cond"].max() > 0.5  # the background, the drawing
    cols = central_columns(W)
    options = PoseOptions(openpose_only=openpose_only, random_drop_prob=0.05)  # the config's default: test ignores
    for t in range(3):
        people = read_openpose(poses / "test_openpose" / "seq_0000" / f"{t:05d}.json")
        iuv = read_image(poses / "test_densepose" / "seq_0000" / f"{t:05d}_IUV.png")
        expected = pose_input(people, iuv, H, W, options)
        np.testing.assert_array_equal(item["cond"][t, :expected.shape[0]].numpy(), expected)
        body = read_image(poses / "test_mask" / "seq_0000" / f"{t:05d}.png", 0)
        if mask:
            np.testing.assert_array_equal(item["cond"][t, -1].numpy(), to_signed(body[..., None])[0, :, cols])
        labels = iuv[..., 2] if not openpose_only else (body > 127) if mask else draw_openpose(people, H, W).any(-1)
        np.testing.assert_array_equal(item["labels"][t].numpy(), labels[:, cols])
        rgb = read_image(poses / "test_img" / "seq_0000" / f"{t:05d}.png")
        np.testing.assert_allclose(item["frames"][t].permute(1, 2, 0).numpy(), rgb[:, cols] / 127.5 - 1, atol=1e-6)


def test_random_drops_in_training_only_and_seeded(poses):
    """Training draws its drops from (seed, epoch, index): the same key gives the same clip, another epoch other
    drops, and the clip equals pose_input with that rng; the test phase has none, whatever random_drop_prob says."""
    cfg = pose_config(poses, "data.pose.random_drop_prob=0.5", "data.n_frames=3", "data.max_t_step=1")
    train = build_dataset(cfg.data, phase="train", seed=4)
    a, b, c = train[ClipKey(0, 1, 3)], train[ClipKey(0, 1, 3)], train[ClipKey(1, 1, 3)]
    np.testing.assert_array_equal(a["cond"].numpy(), b["cond"].numpy())
    assert not np.array_equal(a["cond"].numpy(), c["cond"].numpy())
    rng = np.random.default_rng([4, 0, 1, 1])  # the clip's drop stream: (seed, epoch, index, 1)
    seq = poses / "train_openpose" / a["sequence"]
    options = PoseOptions(random_drop_prob=0.5)
    for k in range(3):
        t = a["start"] + k
        iuv = read_image(poses / "train_densepose" / a["sequence"] / f"{t:05d}_IUV.png")
        expected = pose_input(read_openpose(seq / f"{t:05d}.json"), iuv, H, W, options, rng)
        np.testing.assert_array_equal(a["cond"][k].numpy(), expected)
    plain = pose_config(poses, "data.pose.random_drop_prob=0", "data.n_frames=3")
    assert not np.array_equal(a["cond"].numpy(), build_dataset(plain.data, phase="train", seed=4)[ClipKey(0, 1, 3)]
                              ["cond"].numpy())
    test = [build_dataset(c.data, phase="test")[0]["cond"].numpy() for c in (cfg, plain)]
    np.testing.assert_array_equal(*test)


def test_a_training_clip_is_resized_and_cropped_as_one(poses):
    """Zoom and crop are the clip's one transform for the input (nearest neighbour) and the frames, then the central
    columns; nothing is mirrored."""
    cfg = pose_config(poses, "data.pose.random_drop_prob=0", "data.pose.openpose_only=true", "data.max_zoom=1.5",
                      "data.n_frames=2", "model.name=pix2pixhd")
    dataset = build_dataset(cfg.data, phase="train", seed=1)
    for index in range(4):
        item = dataset[ClipKey(0, index, 2)]
        _, _, tf = dataset.sample(ClipKey(0, index, 2))
        assert not tf.flip and item["cond"].shape == (2, 3, H, 64)
        seq = poses / "train_openpose" / item["sequence"]
        people = read_openpose(seq / f"{item['start']:05d}.json")
        drawn = apply_ids(draw_openpose(people, H, W), tf)[:, central_columns(W)]
        np.testing.assert_array_equal(item["cond"][0].numpy(), to_signed(drawn))


def test_check_data_reads_the_pose_layout_and_draws_it(poses, tmp_path, capsys):
    config = tmp_path / "pose.yaml"
    config.write_text(yaml.safe_dump({"data": {"root": str(poses), "condition": "pose", "label_nc": 25,
                                               "use_instance": False, "load_size": f"{H}x{W}", "crop_size": f"{H}x{W}",
                                               "pose": {"openpose_only": True, "mask": True}, "phase": "test"},
                                      "model": {"use_fg": False}}))
    assert cli.main(["check-data", "--config", str(config), "--draw", str(tmp_path / "drawn")]) == 0
    out = capsys.readouterr().out
    assert "test: 1 sequences, 6 frames; sizes 64x128 (6 frames)" in out and "train: 2 sequences, 12 frames" in out
    assert ("the pose input: the OpenPose rendering (3) + the body mask (1); not read: test_densepose "
            "(data.pose.openpose_only is true)") in out
    files = sorted((tmp_path / "drawn" / "seq_0000").iterdir())
    assert [f.name for f in files[:2]] == ["00000.npy", "00000.png"] and len(files) == 12
    cfg = load_config(config)
    clip = build_dataset(cfg.data, phase="test")
    for t in (0, 5):
        item = clip.load(clip.sequences[0], [t], clip.sample(0)[2])
        np.testing.assert_array_equal(np.load(tmp_path / "drawn" / "seq_0000" / f"{t:05d}.npy"), item["cond"][0])
    picture = read_image(files[1])
    assert picture.shape == (H, 3 * 64, 3)  # the rendering | the mask | the labels


@pytest.mark.parametrize("case", ["count", "json", "densepose", "mask_missing", "iuv"])
def test_bad_pose_files_are_one_line_errors_naming_the_file(poses, tmp_path, capsys, case):
    broken = tmp_path / "broken"
    shutil.copytree(poses, broken)
    seq = broken / "train_openpose" / "seq_0001"
    mask = "false"
    if case == "count":
        (seq / "00005.json").unlink()
        named = "seq_0001: 5 OpenPose .json files but"
    elif case == "json":
        (seq / "00003.json").write_text('{"people": [{"pose_keypoints_2d": [1, 2')
        named = "seq_0001/00003.json: not JSON"
    elif case == "densepose":
        (broken / "train_densepose" / "seq_0000" / "00002_IUV.png").unlink()
        named = "train_densepose/seq_0000: 5 DensePose .png files"
    elif case == "mask_missing":
        shutil.rmtree(broken / "train_mask")
        mask, named = "true", "train_mask: folder not found"
    else:
        write_image(broken / "train_densepose" / "seq_0000" / "00001_IUV.png", np.full((H, W, 3), 200, np.uint8))
        named = "seq_0000/00001_IUV.png: part id 200"
    args = ["--set", *POSE, f"data.root={broken}", f"data.pose.mask={mask}", "data.pose.openpose_only=false"]
    assert cli.main(["check-data", "--config", "configs/demo_pose_image.yaml", *args]) == 2
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_train_pose_models_through_the_cli(tmp_path, capsys):
    """configs/demo_pose_image.yaml and demo_pose.yaml, shrunk, train a few steps on the stick figure (OpenPose +
    mask: 4 channels); the video model starts from zeros first frames (the original's --no_first_img) and renders a
    test sequence with the image model's first frames."""
    from vid2vid.checkpoint import load_export
    from vid2vid.temporal import start_history

    root, runs = make_poses(tmp_path / "poses", densepose=False), tmp_path / "runs"
    data = [f"data.root={root}", f"data.load_size={H}x{W}", f"data.crop_size={H}x{W}", "data.max_zoom=1"]
    assert cli.main(["train", "--config", "configs/demo_pose_image.yaml", "--set", *data, *SMALL,
                     f"train.out_dir={runs / 'image'}"]) == 0
    assert cli.main(["train", "--config", "configs/demo_pose.yaml", "--set", *data, *SMALL, "data.n_frames=4",
                     "data.max_frames=4", f"train.out_dir={runs / 'video'}", "loss.teacher=1",
                     f"model.init_from={runs / 'image' / 'export'}"]) == 0  # image branch and teacher: the image model
    export = load_export(runs / "video" / "export", "cpu")
    assert export.cfg.model.first_frame == "zeros" and export.cfg.data.condition == "pose"
    assert generator_input_channels(export.cfg) == 4
    sem = torch.rand(1, 2, 4, H, 64) * 2 - 1
    history = start_history(export.cfg.model.first_frame, sem, torch.ones(1, 2, 3, H, 64))  # real frames: unused
    assert history.frames.abs().max() == 0 and history.filled == 0
    assert (runs / "video" / "samples").is_dir() and any((runs / "image" / "samples").iterdir())
    capsys.readouterr()
    out = tmp_path / "x.mp4"
    assert cli.main(["render", str(root / "test_openpose" / "seq_0000"), str(out), "-m",
                     str(runs / "video" / "export"), "--first-frame", f"image-model:{runs / 'image' / 'export'}"]) == 0
    assert "0 of 6 frames had no person" in capsys.readouterr().out
    info = probe(out)
    assert (info.n_frames, info.height, info.width) == (6, H, 64)  # the central columns of the 64x128 frames
    from vid2vid.render import VideoRenderer

    renderer = VideoRenderer(runs / "image" / "export", device="cpu")
    frame = renderer.step(people=[stick_figure(50, 0)], frame=np.zeros((H, W, 3), np.uint8),
                          mask=np.zeros((H, W), np.uint8))
    assert frame.shape == (H, 64, 3)


def test_frames_may_be_a_video_file(poses, tmp_path):
    """<phase>_img/<seq>.mp4 instead of a folder: the same input (drawn from the JSON files), the decoded frames."""
    from vid2vid.video_io import VideoWriter

    root = tmp_path / "video"
    shutil.copytree(poses, root)
    folder = root / "test_img" / "seq_0000"
    with VideoWriter(root / "test_img" / "seq_0000.mp4", fps=10) as writer:
        for path in sorted(folder.iterdir()):
            writer.write(read_image(path))
    shutil.rmtree(folder)
    cfgs = [pose_config(r, "data.n_frames=6") for r in (poses, root)]
    plain, video = (build_dataset(c.data, phase="test")[0] for c in cfgs)
    np.testing.assert_array_equal(plain["cond"].numpy(), video["cond"].numpy())
    assert video["frames"].shape == (6, 3, H, 64) and (plain["frames"] - video["frames"]).abs().mean() < 0.05


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="mediapipe 0.10.14 has no wheels for 3.13+")
def test_a_prepared_video_is_a_pose_dataset(tmp_path, capsys):
    """`vid2vid prepare video IN OUT --labels pose` (MediaPipe Holistic: OpenPose JSON + body masks) -> check-data and
    the dataset of configs/demo_pose_image.yaml: OpenPose rendering + mask, 4 channels, the person drawn."""
    import cv2
    import skimage.data

    from vid2vid.video_io import VideoWriter

    video, out = tmp_path / "astronaut.mp4", tmp_path / "pose"
    image = cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    with VideoWriter(video, fps=10, crf=12) as writer:
        for t in range(6):
            shift = np.float32([[1, 0, 3 * t], [0, 1, 0]])
            writer.write(cv2.warpAffine(image, shift, (256, 256), borderMode=cv2.BORDER_REPLICATE))
    assert cli.main(["prepare", "video", str(video), str(out), "--labels", "pose", "--size", "128x256", "--seq-len",
                     "3", "--test-fraction", "0.4"]) == 0
    args = ["--config", "configs/demo_pose_image.yaml", "--set", f"data.root={out}"]
    capsys.readouterr()
    assert cli.main(["check-data", *args]) == 0
    assert "the OpenPose rendering (3) + the body mask (1)" in capsys.readouterr().out
    cfg = load_config("configs/demo_pose_image.yaml", [f"data.root={out}", "data.n_frames=2"])
    item = build_dataset(cfg.data, phase="test")[0]
    cond = item["cond"].numpy()
    assert cond.shape == (2, 4, 128, 128) and item["frames"].shape == (2, 3, 128, 128)
    assert (cond[:, :3] > -1).any(axis=1).mean() > 0.02  # the skeleton is drawn
    assert 0.1 < (cond[:, 3] > 0).mean() < 0.9 and set(np.unique(cond[:, 3])) == {-1.0, 1.0}  # the body mask
