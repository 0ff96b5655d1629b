"""vid2vid's edge2face single-frame generator (issue 28): its Global_with_z layout (our pix2pixhd with
model.feat_join every_level), its original-code fixture (tests/fixtures/originals/vid2vid_single_edge2face.pt: G, E,
features, outputs of the original's get_face_features and netG_i.forward), `vid2vid import vid2vid-single --preset
edge2face_512` with --encoder / --features, and rendering a face video's first frames with it."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from vid2vid import cli
from vid2vid.checkpoint import EXPORT_ENCODER, EXPORT_FEATURE_BANK, load_export
from vid2vid.config import from_dict
from vid2vid.errors import ConfigError
from vid2vid.interop.import_originals import import_config, original_options
from vid2vid.models.build import build_generator
from vid2vid.models.image import GlobalGeneratorWithFeatures

ROOT = Path(__file__).resolve().parent
FIXTURE = ROOT / "fixtures" / "originals" / "vid2vid_single_edge2face.pt"
G0_FIXTURE = ROOT / "fixtures" / "originals" / "vid2vid_G0_edge2face.pt"
STATS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(scope="module")
def fixture() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def test_the_released_layout_has_the_originals_parameter_count():
    """edge2face_512's single G: Global_with_z(15 + 16 -> 3, ngf 64, 3 downsamplings, 9 blocks) = 48,453,203
    parameters, the features joining the input, the blocks (512 + 16 wide), the first upsampling (+ 32) and the
    output conv (64 + 16)."""
    cfg = import_config("vid2vid-single", original_options("vid2vid-single", preset="edge2face_512"))
    assert (cfg.data.condition, cfg.data.label_nc, cfg.model.feat_num, cfg.model.feat_join) == \
        ("face", 7, 16, "every_level")
    with torch.device("meta"):
        g = build_generator(cfg)
    assert isinstance(g, GlobalGeneratorWithFeatures) and sum(p.numel() for p in g.parameters()) == 48_453_203
    sd = g.state_dict()
    assert sd["model_downsample.1.weight"].shape == (64, 31, 7, 7)
    assert sd["model_resnet.0.conv_block.1.weight"].shape == (528, 528, 3, 3)
    assert sd["model_upsample.0.weight"].shape == (544, 256, 3, 3)
    assert sd["model_upsample_conv.1.weight"].shape == (3, 80, 7, 7)


def test_our_keys_are_the_original_state_dicts_without_running_statistics(fixture):
    cfg = import_config("vid2vid-single", original_options(
        "vid2vid-single", preset="edge2face_512", options=["single_ngf=8", "n_blocks=2"]))
    ours = build_generator(cfg).state_dict()
    theirs = {k: list(v.shape) for k, v in fixture["state_dict"].items() if not k.endswith(STATS)}
    assert {k: list(v.shape) for k, v in ours.items()} == theirs


def test_the_parity_tool_reproduces_the_original(parity_tool, capsys, fixture):
    """Encoder pooling, the nearest training image, the feature map and the frame (through Export.generate, and the
    generator in train mode) equal the original's train-mode outputs; its eval mode (running statistics) is another
    picture, which a conversion that kept them would give."""
    assert parity_tool.main([str(FIXTURE), "--tolerance", "1e-4"]) == 0
    out = capsys.readouterr().out
    for what in ("encoder_pooled", "nearest training image", "feat_map", "fake_image (Export.generate, eval)",
                 "fake_image (train mode)"):
        assert what in out
    assert "FAIL" not in out and fixture["nearest_image"] == 3
    assert (fixture["outputs"]["fake_image"] - fixture["outputs_evalmode"]["fake_image"]).abs().max() > 0.1


# ---------------------------------------------------------------------------------------------- the CLI


def write_original_files(fixture: dict, folder: Path, **replace) -> Path:
    """The fixture's G and E as the original saves them (latest_net_G.pth, latest_net_E.pth) and its features as
    np.save of a dict (features.npy), in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(fixture["state_dict"], folder / "latest_net_G.pth")
    torch.save(fixture["state_dict_E"], folder / "latest_net_E.pth")
    features = replace.get("features", {k: v.numpy() for k, v in fixture["features"].items()})
    np.save(folder / "features.npy", features, allow_pickle=True)  # our own test file
    return folder


def import_args(folder: Path, out: Path, *extra: str) -> list[str]:
    return ["import", "vid2vid-single", str(folder / "latest_net_G.pth"), str(out), "--preset", "edge2face_512",
            "--option", "single_ngf=8", "single_nef=4", "n_blocks=2", "loadSize=64", *extra]


def test_import_writes_a_face_export_that_generates_the_originals_frame(tmp_path, capsys, fixture):
    folder = write_original_files(fixture, tmp_path / "edge2face_single")
    out = tmp_path / "single"
    assert cli.main(import_args(folder, out, "--features", str(folder / "features.npy"))) == 0
    summary = capsys.readouterr().out
    assert "304,179 parameters" in summary and "features of 5 training images" in summary
    assert str(folder / "latest_net_E.pth") in summary and "--first-frame image-model:" in summary
    assert (out / EXPORT_ENCODER).is_file() and (out / EXPORT_FEATURE_BANK).is_file()
    export = load_export(out)
    cfg = export.cfg
    assert (cfg.data.condition, cfg.model.feature_bank, cfg.model.n_clusters) == ("face", "images", 5)
    inputs, expected = fixture["inputs"], fixture["outputs"]["fake_image"]
    parts = inputs["part_labels"][:, 0].long()
    with torch.no_grad():
        ours = export.generate(parts, cond=inputs["face_input_maps"], real=inputs["real_frame"])
        assert (ours - expected).abs().max() <= 1e-4
        # without a real frame: training image --feature-cluster K (default 0); image 3 is the one the real frame picks
        assert (export.generate(parts, cond=inputs["face_input_maps"], cluster=3) - expected).abs().max() <= 1e-4
        first = export.generate(parts, cond=inputs["face_input_maps"])
        assert torch.equal(first, export.generate(parts, cond=inputs["face_input_maps"], cluster=0))
        assert (first - expected).abs().max() > 1e-2


def test_render_makes_a_face_videos_first_frames_with_it(tmp_path, fixture):
    """`vid2vid render talk.mp4 out.mp4 -m G0 --labels face --first-frame image-model:SINGLE`: 4 frames; the first
    n_frames_G - 1 = 2 are the single generator's (from the video's face-cropped frames), not zeros' mid-grey."""
    import skimage

    from vid2vid.video_io import VideoWriter, iter_frames, probe

    folder = write_original_files(fixture, tmp_path / "edge2face_single")
    single = tmp_path / "single"
    assert cli.main(import_args(folder, single, "--features", str(folder / "features.npy"))) == 0
    torch.save(torch.load(G0_FIXTURE, weights_only=True)["state_dict"], tmp_path / "latest_net_G0.pth")
    g0 = tmp_path / "g0"
    assert cli.main(["import", "vid2vid", str(tmp_path / "latest_net_G0.pth"), str(g0), "--preset", "edge2face_512",
                     "--option", "ngf=8", "loadSize=64"]) == 0
    head = np.ascontiguousarray(skimage.data.astronaut()[:256, 100:356])
    talk = tmp_path / "talk.mp4"
    with VideoWriter(talk, fps=10) as writer:
        for t in range(4):
            writer.write(np.roll(head, 3 * t, axis=1))
    runs = {}
    for first in (f"image-model:{single}", "zeros"):
        out = tmp_path / f"out_{first[:5]}.mp4"
        assert cli.main(["render", str(talk), str(out), "-m", str(g0), "--labels", "face", "--landmarks", "dlib",
                         "--first-frame", first]) == 0
        assert probe(out).n_frames == 4
        runs[first[:5]] = np.stack(list(iter_frames(out))).astype(np.float32)
    seeds, grey = runs["image"][:2], runs["zeros"][:2]
    assert np.abs(seeds - grey).mean() > 5 and seeds.std() > 5


# ---------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("case", "message"), [
    ("no features", "pass --features edge2face_single/features.npy"),
    ("no encoder", "latest_net_E.pth: no such encoder checkpoint"),
    ("parts", "part labels [0, 1, 2, 3, 4, 5]"),
    ("columns", "part 0 has 5 rows of 10 values"),
    ("rows", "part 3 has 2 rows of 17 values"),
    ("encoder of another layout", "does not match the model built from its options"),
])
def test_incomplete_or_mismatched_inputs_are_refused_before_anything_is_written(tmp_path, capsys, fixture, case,
                                                                                message):
    features = {k: v.numpy() for k, v in fixture["features"].items()}
    if case == "parts":
        features = {k: v for k, v in features.items() if k < 6}
    elif case == "columns":
        features = {k: v[:, :10] for k, v in features.items()}
    elif case == "rows":
        features[3] = features[3][:2]
    folder = write_original_files(fixture, tmp_path / "edge2face_single", features=features)
    if case == "no encoder":
        (folder / "latest_net_E.pth").unlink()
    if case == "encoder of another layout":
        torch.save(fixture["state_dict"], folder / "G_as_E.pth")
    extra = {"no features": [], "encoder of another layout": ["--features", str(folder / "features.npy"),
                                                                "--encoder", str(folder / "G_as_E.pth")]}
    out = tmp_path / "single"
    status = cli.main(import_args(folder, out, *extra.get(case, ["--features", str(folder / "features.npy")])))
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err, err
    assert not out.exists()


def test_an_encoder_is_refused_for_other_models(tmp_path, capsys):
    torch.save({"model.1.weight": torch.zeros(1)}, tmp_path / "G.pth")
    assert cli.main(["import", "vid2vid-single", str(tmp_path / "G.pth"), str(tmp_path / "out"), "--option",
                     "label_nc=35", "--encoder", str(tmp_path / "G.pth")]) == 2
    assert "only edge2face's single-frame generator has an encoder" in capsys.readouterr().err


@pytest.mark.parametrize(("model", "message"), [
    ({"feat_join": "every_level"}, "model.feat_join: 'every_level' is not allowed: needs instance-wise features"),
    ({"feat_join": "every_level", "feat_num": 4, "n_local_enhancers": 1}, "set model.n_local_enhancers=0"),
    ({"feature_bank": "images"}, "model.feature_bank: 'images' is not allowed: needs instance-wise features"),
    ({"name": "spade", "feat_join": "every_level", "feat_num": 4}, "applies to model.name pix2pixhd, not spade"),
])
def test_the_config_rules_of_the_feature_options(model, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_dict({"data": {"label_nc": 3, "fg_labels": [], "load_size": "64x64", "crop_size": "64x64"},
                   "model": {"name": "pix2pixhd", "ngf": 4, "n_downsample": 2, "n_blocks": 1, **model}})


def test_a_bank_of_training_images_is_not_trained():
    from vid2vid.train.checks import check_trainable

    cfg = import_config("vid2vid-single", original_options("vid2vid-single", preset="edge2face_512"))
    with pytest.raises(ConfigError, match="set model.feature_bank=kmeans"):
        check_trainable(cfg)
