"""vid2vid's edge2face_512 G0 imported as a face model (data.condition face), its original-code fixture at ngf 8,
and the safe reader of edge2face's features.npy (a pickle: only arrays are admitted, nothing in it may run)."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from einops import rearrange

from vid2vid import cli
from vid2vid.checkpoint import load_generator
from vid2vid.errors import ConfigError, UserError
from vid2vid.interop.import_originals import import_config, original_options
from vid2vid.interop.original_faces import read_features
from vid2vid.models.build import build_generator, generator_input_channels

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "originals" / "vid2vid_G0_edge2face.pt"


def test_the_edge2face_preset_is_a_face_config():
    cfg = import_config("vid2vid", original_options("vid2vid", preset="edge2face_512"))
    assert (cfg.data.condition, cfg.data.label_nc, cfg.data.use_instance, cfg.model.use_fg) == ("face", 7, False, False)
    assert generator_input_channels(cfg) == 15 and str(cfg.data.load_size) == str(cfg.data.crop_size)
    assert (cfg.model.ngf, cfg.model.n_downsample, cfg.model.n_blocks, cfg.model.n_frames_G) == (128, 3, 9, 3)
    assert cfg.model.norm == "batch" and cfg.model.norm_at_inference == "batch_stats"
    with torch.device("meta"):
        assert sum(p.numel() for p in build_generator(cfg).parameters()) == 364_996_230


def test_the_fixture_has_the_edge2face_options():
    fixture = torch.load(FIXTURE, weights_only=True)
    opts = fixture["options"]
    assert (opts["dataset_mode"], opts["label_nc"], opts["input_nc"], opts["ngf"]) == ("face", 0, 15, 8)
    assert (opts["n_downsample_G"], opts["n_blocks"], opts["n_frames_G"], opts["fg"]) == (3, 9, 3, False)
    assert fixture["inputs"]["input"].shape[1] == 3 * 15 and {"outputs", "outputs_trainmode"} <= set(fixture)


def test_import_edge2face_g0_reproduces_the_original(tmp_path, capsys):
    """The fixture's G0 through `vid2vid import --preset edge2face_512` (at its ngf and size): a face export whose
    generator gives the original's train-mode outputs (what its test.py does)."""
    fixture = torch.load(FIXTURE, weights_only=True)
    torch.save(fixture["state_dict"], tmp_path / "latest_net_G0.pth")
    assert cli.main(["import", "vid2vid", str(tmp_path / "latest_net_G0.pth"), str(tmp_path / "export"),
                     "--preset", "edge2face_512", "--option", "ngf=8", "loadSize=64"]) == 0
    assert "every key used" in capsys.readouterr().out
    g, cfg = load_generator(tmp_path / "export")
    assert (cfg.data.condition, cfg.data.label_nc, cfg.model.use_fg, str(cfg.data.load_size)) == \
        ("face", 7, False, "64x64")
    inputs = fixture["inputs"]
    with torch.no_grad():
        out = g(rearrange(inputs["input"], "b (n c) h w -> b n c h w", n=3),
                rearrange(inputs["img_prev"], "b (n c) h w -> b n c h w", n=2))
    for name, ours in (("img_final", out.final), ("flow", out.flow), ("weight", out.weight)):
        assert (ours - fixture["outputs_trainmode"][name]).abs().max() <= 1e-4, name


def test_face_options_that_do_not_fit_are_refused():
    with pytest.raises(ConfigError, match="input_nc 3"):
        import_config("vid2vid", original_options("vid2vid", preset="edge2face_512", options=["input_nc=3"]))


# ---------------------------------------------------------------------------------------------- features.npy


def save_object(path: Path, obj) -> Path:
    """What the original's np.save(features) writes: a 0-d object array, pickled (our own test file)."""
    arr = np.empty((), dtype=object)
    arr[()] = obj
    np.save(path, arr, allow_pickle=True)
    return path


def test_features_npy_of_arrays_is_read(tmp_path):
    feats = {label: np.random.default_rng(label).random((5, 17)).astype(np.float32) for label in range(7)}
    read = read_features(save_object(tmp_path / "features.npy", feats))
    assert sorted(read) == list(range(7)) and all(np.array_equal(read[k], feats[k]) for k in feats)


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_features_npy_that_would_run_code_is_refused_and_never_run(tmp_path, capsys):
    marker = tmp_path / "payload_ran"
    path = save_object(tmp_path / "features.npy", {0: np.zeros((2, 17), np.float32), 1: Payload(marker)})
    torch.save({"model.1.weight": torch.zeros(1)}, tmp_path / "G.pth")
    status = cli.main(["import", "vid2vid-single", str(tmp_path / "G.pth"), str(tmp_path / "export"),
                       "--preset", "edge2face_512", "--features", str(path)])
    err = capsys.readouterr().err
    assert status == 2 and str(path) in err and "run code" in err and ".open, which is not a numpy array" in err
    assert "Traceback" not in err and not marker.exists() and not (tmp_path / "export").exists()
    pickle.loads(pickle.dumps(Payload(marker))).__class__  # noqa: B018 - the control: plain unpickling runs it
    assert marker.exists()


@pytest.mark.parametrize(("obj", "message"), [
    ({0: [1.0, 2.0]}, "not a 2-D float array"),
    ({"face": np.zeros((2, 3))}, "not a 2-D float array"),
    ([np.zeros((2, 3))], "not a dict"),
])
def test_a_features_npy_holding_anything_but_arrays_is_refused(tmp_path, obj, message):
    path = save_object(tmp_path / "features.npy", obj)
    with pytest.raises(UserError, match=message) as e:
        read_features(path)
    assert str(path) in str(e.value)


def test_a_plain_array_or_a_damaged_file_is_refused(tmp_path):
    np.save(tmp_path / "plain.npy", np.zeros((2, 3)))
    with pytest.raises(UserError, match="plain float64 array"):
        read_features(tmp_path / "plain.npy")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(UserError, match="not a readable .npy"):
        read_features(tmp_path / "bad.npy")


def test_features_are_read_before_the_single_generator_is_refused(tmp_path, capsys):
    """A good features.npy passes the safe reader; the import then stops at the missing encoder (named, with the
    fix); --features with another model is refused. (The whole import: tests/test_originals_face_single.py.)"""
    path = save_object(tmp_path / "features.npy", {0: np.zeros((2, 17), np.float32)})
    torch.save({"model.1.weight": torch.zeros(1)}, tmp_path / "G.pth")
    base = [str(tmp_path / "G.pth"), str(tmp_path / "export"), "--preset", "edge2face_512", "--features", str(path)]
    assert cli.main(["import", "vid2vid-single", *base]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "latest_net_E.pth") in err and "--encoder" in err and not (tmp_path / "export").exists()
    assert cli.main(["import", "vid2vid", *base]) == 2
    assert "vid2vid-single --preset edge2face_512" in capsys.readouterr().err


def test_an_imported_edge2face_g0_renders_a_face_video(tmp_path, capsys):
    """`vid2vid render talk.mp4 out.mp4 -m IMPORTED --labels face`: dlib landmarks, the face input, the G0."""
    import skimage

    from vid2vid.video_io import VideoWriter, probe

    fixture = torch.load(FIXTURE, weights_only=True)
    torch.save(fixture["state_dict"], tmp_path / "latest_net_G0.pth")
    assert cli.main(["import", "vid2vid", str(tmp_path / "latest_net_G0.pth"), str(tmp_path / "export"),
                     "--preset", "edge2face_512", "--option", "ngf=8", "loadSize=64"]) == 0
    head = np.ascontiguousarray(skimage.data.astronaut()[:256, 100:356])
    talk, out = tmp_path / "talk.mp4", tmp_path / "out.mp4"
    with VideoWriter(talk, fps=10) as writer:
        for t in range(4):
            writer.write(np.roll(head, 3 * t, axis=1))
    assert cli.main(["render", str(talk), str(out), "-m", str(tmp_path / "export"), "--labels", "face",
                     "--landmarks", "dlib"]) == 0
    assert probe(out).n_frames == 4
