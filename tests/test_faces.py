"""Face datasets end to end (data.condition: face): config rules and channel counts, the clip dataset, check-data
(--draw too, for labels as well), training an image and a video model through the CLI, rendering a keypoint
sequence, and VideoRenderer.step with landmarks."""

import shutil

import numpy as np
import pytest
import yaml

from vid2vid import cli
from vid2vid.checkpoint import image_model_frames
from vid2vid.config import Size, load_config
from vid2vid.data.encoding import semantic_input
from vid2vid.data.face_input import crop_frame, draw_face, face_crop_box, mirror_channels
from vid2vid.data.keypoint_files import read_keypoints
from vid2vid.data.sequences import build_dataset, whole_sequences
from vid2vid.data.synthetic import generate_synthetic
from vid2vid.data.transforms import ClipTransform
from vid2vid.errors import ConfigError, UserError
from vid2vid.models.build import discriminator_input_channels, generator_input_channels
from vid2vid.video_io import probe, read_image

FACE = ["data.condition=face", "data.label_nc=7", "data.use_instance=false", "data.fg_labels=[]",
        "data.load_size=32x32"]
SMALL = ["model.ngf=8", "model.n_downsample=2", "model.n_blocks=1", "discriminator.ndf=8", "discriminator.num_D=1",
         "discriminator.n_layers=2", "loss.vgg=0", "train.max_steps=2", "train.log_every=1", "train.sample_every=2",
         "train.checkpoint_every=2", "data.synthetic.size=96x96"]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """2 train + 1 test talking faces of 6 frames, 96x96, in the original face layout."""
    return generate_synthetic(tmp_path_factory.mktemp("faces") / "faces", sequences=2, test_sequences=1, frames=6,
                              size=Size(96, 96), seed=2, faces=True)


def face_config(root, *overrides):
    return load_config(None, [*FACE, f"data.root={root}", *overrides])


def test_face_config_rules_and_channels(faces):
    cfg = face_config(faces, "model.use_fg=false")
    assert cfg.data.crop_size == cfg.data.load_size == Size(32, 32)  # crop_size follows load_size unless set
    assert face_config(faces, "model.use_fg=false", "data.crop_size=16x16").data.crop_size == Size(16, 16)
    assert generator_input_channels(cfg) == 15 and discriminator_input_channels(cfg) == 18
    assert generator_input_channels(face_config(faces, "model.use_fg=false", "data.face.no_dist_map=true")) == 1
    assert generator_input_channels(face_config(faces, "model.name=pix2pixhd", "model.feat_num=3")) == 18
    for bad, key in (("data.label_nc=35", "data.label_nc"), ("data.use_instance=true", "data.use_instance"),
                     ("model.use_fg=true", "model.use_fg")):
        with pytest.raises(ConfigError, match=key):
            face_config(faces, "model.use_fg=false", bad)


@pytest.mark.parametrize("name, channels", [("face", 15), ("face_image", 15 + 16), ("demo_face", 15),
                                            ("demo_face_image", 15)])
def test_the_face_configs_load(name, channels):
    cfg = load_config(f"configs/{name}.yaml")
    assert cfg.data.condition == "face" and cfg.data.crop_size == cfg.data.load_size
    assert generator_input_channels(cfg) == channels


def test_the_face_clip_is_drawn_from_the_files(faces):
    """Test phase: every frame drawn with the first frame's square at load_size; labels = part labels; frames = the
    face-cropped real frames."""
    cfg = face_config(faces, "model.use_fg=false", "data.n_frames=3")
    item = build_dataset(cfg.data, phase="test")[0]
    seq = faces / "test_keypoints" / "seq_0000"
    points = [read_keypoints(seq / f"{t:05d}.txt") for t in range(3)]
    rgb = [read_image(faces / "test_img" / "seq_0000" / f"{t:05d}.png") for t in range(3)]
    box = face_crop_box(points[0], 96, 96)
    for t in range(3):
        face = draw_face(points[t], rgb[t], box, Size(32, 32))
        np.testing.assert_array_equal(item["cond"][t].numpy(), face.cond)
        np.testing.assert_array_equal(item["labels"][t].numpy(), face.parts)
        np.testing.assert_allclose(item["frames"][t].permute(1, 2, 0).numpy(),
                                   crop_frame(rgb[t], box, Size(32, 32)) / 127.5 - 1, atol=1e-6)
    assert item["cond"].shape == (3, 15, 32, 32) and 0 <= item["cond"].min() and item["cond"].max() <= 1


def test_a_flipped_clip_mirrors_the_input_and_swaps_left_and_right(faces):
    dataset = build_dataset(face_config(faces, "model.use_fg=false").data, phase="train")
    seq = dataset.sequences[0]
    plain, flipped = (dataset.load(seq, [0, 1], ClipTransform(Size(32, 32), 0, 0, Size(32, 32), flip))
                      for flip in (False, True))
    cond = plain["cond"].numpy()
    np.testing.assert_array_equal(flipped["cond"].numpy(), cond[:, mirror_channels(15), :, ::-1])
    np.testing.assert_array_equal(flipped["labels"].numpy(), plain["labels"].numpy()[..., ::-1])
    np.testing.assert_array_equal(flipped["frames"].numpy(), plain["frames"].numpy()[..., ::-1])


def test_check_data_reads_the_face_layout_and_names_a_bad_file(faces, tmp_path, capsys):
    config = tmp_path / "face.yaml"
    config.write_text(yaml.safe_dump({"data": {"root": str(faces), "condition": "face", "label_nc": 7,
                                               "use_instance": False, "load_size": "32x32"},
                                      "model": {"use_fg": False}}))
    assert cli.main(["check-data", "--config", str(config)]) == 0
    assert "train: 2 sequences, 12 frames; sizes 96x96 (12 frames)" in capsys.readouterr().out
    broken = tmp_path / "broken"
    shutil.copytree(faces, broken)
    (broken / "train_keypoints" / "seq_0001" / "00003.txt").write_text("1,2\n3;4\n")
    assert cli.main(["check-data", "--config", str(config), "--set", f"data.root={broken}"]) == 2
    err = capsys.readouterr().err
    assert "seq_0001/00003.txt, line 2" in err and len(err.strip().splitlines()) == 1
    shutil.rmtree(broken / "train_img" / "seq_0000")
    assert cli.main(["check-data", "--config", str(config), "--set", f"data.root={broken}"]) == 2
    assert "train_img" in capsys.readouterr().err


def test_check_data_draws_what_the_generator_sees(faces, synthetic_root, tmp_path, capsys):
    """Faces: OUT/<seq>/<frame>.npy is the frame's 15-channel input as the test phase gives it (the sequence's
    first-frame square); labels: the one-hot + boundary input; a .png beside each."""
    config = tmp_path / "face.yaml"
    config.write_text(yaml.safe_dump({"data": {"root": str(faces), "condition": "face", "label_nc": 7,
                                               "use_instance": False, "load_size": "32x32", "phase": "test"},
                                      "model": {"use_fg": False}}))
    assert cli.main(["check-data", "--config", str(config), "--draw", str(tmp_path / "face_draw")]) == 0
    files = sorted((tmp_path / "face_draw" / "seq_0000").iterdir())
    assert [f.name for f in files[:2]] == ["00000.npy", "00000.png"] and len(files) == 12
    cfg = face_config(faces, "model.use_fg=false")
    _, clip = whole_sequences(cfg.data, "test")[0]
    for t in (0, 5):
        np.testing.assert_array_equal(np.load(tmp_path / "face_draw" / "seq_0000" / f"{t:05d}.npy"),
                                      clip["cond"][t].numpy())
    assert read_image(files[1]).shape == (128, 128, 3)  # 15 channels + part labels tiled 4x4
    labels = tmp_path / "labels.yaml"
    labels.write_text(yaml.safe_dump({"data": {"root": str(synthetic_root), "load_size": "64x128",
                                               "crop_size": "64x128"}}))
    assert cli.main(["check-data", "--config", str(labels), "--draw", str(tmp_path / "label_draw"), "--frames",
                     "2"]) == 0
    drawn = np.load(tmp_path / "label_draw" / "seq_0001" / "00001.npy")
    street = load_config(labels)
    item = build_dataset(street.data, augment=False, phase="train")
    clip = item.load(item.sequences[1], [1], item.sample(1)[2])
    expected = semantic_input(clip["labels"], clip["inst"], 35, True)[0]
    np.testing.assert_array_equal(drawn, expected.numpy())
    assert len(list((tmp_path / "label_draw" / "seq_0001").iterdir())) == 4
    assert cli.main(["check-data", "--config", str(labels), "--draw", str(tmp_path / "label_draw")]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_train_and_render_face_models_through_the_cli(tmp_path, capsys):
    """configs/demo_face_image.yaml and demo_face.yaml, shrunk: the dataset is generated on first use, both models
    train a few steps, and the video model renders a test keypoint sequence with the image model's first frames."""
    root, runs = tmp_path / "faces", tmp_path / "runs"
    data = [f"data.root={root}", "data.synthetic.sequences=2", "data.synthetic.test_sequences=1",
            "data.synthetic.frames=6", "data.load_size=32x32"]
    assert cli.main(["train", "--config", "configs/demo_face_image.yaml", "--set", *data, *SMALL,
                     f"train.out_dir={runs / 'image'}"]) == 0
    assert cli.main(["train", "--config", "configs/demo_face.yaml", "--set", *data, *SMALL, "data.n_frames=4",
                     "data.max_frames=4", f"train.out_dir={runs / 'video'}",
                     f"model.init_from={runs / 'image' / 'export'}"]) == 0
    seq = root / "test_keypoints" / "seq_0000"
    out = tmp_path / "face.mp4"
    assert cli.main(["render", str(seq), str(out), "-m", str(runs / "video" / "export"), "--first-frame",
                     f"image-model:{runs / 'image' / 'export'}", "--device", "cpu", "--side-by-side"]) == 0
    info = probe(out)
    assert (info.n_frames, info.height, info.width) == (6, 32, 64)
    assert cli.main(["render", str(seq), str(tmp_path / "image.mp4"), "-m", str(runs / "image" / "export")]) == 0
    assert cli.main(["render", str(root / "test_img" / "seq_0000"), str(tmp_path / "x.mp4"), "-m",
                     str(runs / "image" / "export")]) == 2
    assert "no keypoint .txt files" in capsys.readouterr().err
    assert cli.main(["render", "--all", str(root / "test_keypoints"), str(tmp_path / "all"), "-m",
                     str(runs / "video" / "export")]) == 0  # first frames: the input frames, face-cropped
    assert probe(tmp_path / "all" / "seq_0000.mp4").n_frames == 6
    with pytest.raises(UserError, match="data.condition face"):  # a face model cannot seed a label-map video model
        image_model_frames(str(runs / "image" / "export"), "cpu", "labels")
    render_a_video_file(runs / "image" / "export", tmp_path, capsys)
    frames_dir = tmp_path / "frames"
    assert cli.main(["render", str(seq), str(frames_dir), "-m", str(runs / "video" / "export"), "--frames-dir",
                     "--first-frame", f"image-model:{runs / 'image' / 'export'}"]) == 0
    step_with_landmarks(runs / "video" / "export", runs / "image" / "export", root, sorted(frames_dir.iterdir()))


def render_a_video_file(export, tmp_path, capsys):
    """A face model renders a video file: its landmarks detected while streaming (--labels face --landmarks), a
    video without a face exits 2 naming it, options for other inputs are refused."""
    import skimage

    from vid2vid.video_io import VideoWriter

    head = np.ascontiguousarray(skimage.data.astronaut()[:256, 100:356])
    talk, blank = tmp_path / "talk.mp4", tmp_path / "blank.mp4"
    with VideoWriter(talk, fps=10) as writer, VideoWriter(blank, fps=10) as nothing:
        for t in range(5):
            writer.write(np.roll(head, 3 * t, axis=1))
            nothing.write(np.full_like(head, 90 + t))
    out = tmp_path / "talk_out.mp4"
    assert cli.main(["render", str(talk), str(out), "-m", str(export), "--labels", "face", "--landmarks",
                     "dlib"]) == 0
    assert probe(out).n_frames == 5
    assert cli.main(["render", str(talk), str(tmp_path / "smooth.mp4"), "-m", str(export), "--labels", "face",
                     "--landmarks", "dlib", "--smooth", "one-euro:2,0.05"]) == 0
    capsys.readouterr()
    assert cli.main(["render", str(blank), str(tmp_path / "b.mp4"), "-m", str(export), "--labels", "face"]) == 2
    err = capsys.readouterr().err
    assert "no face found" in err and str(blank) in err and not (tmp_path / "b.mp4").exists()
    assert cli.main(["render", str(talk), str(tmp_path / "c.mp4"), "-m", str(export), "--labels", "edges"]) == 2
    assert "--labels edges: this is a face model" in capsys.readouterr().err
    seq = tmp_path / "faces" / "test_keypoints" / "seq_0000"
    assert cli.main(["render", str(seq), str(tmp_path / "d.mp4"), "-m", str(export), "--landmarks", "dlib"]) == 2
    assert "not one" in capsys.readouterr().err
    assert cli.main(["render", str(seq), str(tmp_path / "e.mp4"), "-m", str(export), "--smooth", "one-euro"]) == 2
    assert "--smooth one-euro:1,0.2: smooths the landmarks detected in a video file" in capsys.readouterr().err


def step_with_landmarks(video_export, image_export, root, rendered):
    """VideoRenderer.step(landmarks=, frame=), as a live tracker would feed it: the frames the file render made."""
    from vid2vid.render import VideoRenderer

    renderer = VideoRenderer(video_export, first_frame=f"image-model:{image_export}", device="cpu")
    for t in range(4):
        points = read_keypoints(root / "test_keypoints" / "seq_0000" / f"{t:05d}.txt")
        frame = read_image(root / "test_img" / "seq_0000" / f"{t:05d}.png")
        np.testing.assert_array_equal(renderer.step(landmarks=points, frame=frame), read_image(rendered[t]))
    with pytest.raises(UserError, match="needs the frame"):
        renderer.step(landmarks=points)
    with pytest.raises(UserError, match="68 finite"):
        renderer.step(landmarks=points[:10], frame=frame)
    with pytest.raises(UserError, match="68 finite"):  # label maps to a face model
        renderer.step(np.zeros((32, 32), np.int64))
    with pytest.raises(UserError, match="same size"):
        renderer.step(landmarks=points, frame=frame[:50])
