"""vid2vid render's other inputs: colour-coded label folders (--palette FILE or data.palette) and video files
converted to labels exactly as `vid2vid prepare video` converts them (--labels edges / kmeans:K, --centres)."""

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from vid2vid import cli
from vid2vid.checkpoint import export_generator
from vid2vid.config import Size, from_dict, load_config
from vid2vid.data.prepare import CENTRES_FILE, prepare_video
from vid2vid.errors import ConfigError
from vid2vid.models.build import build_generator
from vid2vid.render.inputs import iter_labels, open_input
from vid2vid.video_io import VideoWriter, image_files, read_image, write_image

ROOT = Path(__file__).resolve().parents[1]
LABEL_NC = 35  # configs/tiny_video.yaml
PALETTE = [[(37 * i) % 256, (91 * i + 5) % 256, (53 * i + 17) % 256] for i in range(LABEL_NC)]


def _export(out: Path, palette: list | None = None) -> Path:
    """configs/tiny_video.yaml with random weights (seed 0: every export here has the same weights)."""
    cfg = load_config(ROOT / "configs" / "tiny_video.yaml", [f"data.palette={json.dumps(palette)}"] if palette else [])
    torch.manual_seed(0)
    return export_generator(build_generator(cfg).state_dict(), cfg, out)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """1 train + 1 test sequence of 8 frames, 64x64."""
    from vid2vid.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("inputs") / "street", sequences=1, test_sequences=1,
                              frames=8, size=Size(64, 64), seed=0)


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return _export(tmp_path_factory.mktemp("export") / "export")


@pytest.fixture(scope="module")
def palette_export(tmp_path_factory) -> Path:
    """The same model with data.palette = PALETTE in its config."""
    return _export(tmp_path_factory.mktemp("palette_export") / "export", PALETTE)


@pytest.fixture(scope="module")
def video(data, tmp_path_factory) -> Path:
    """A 16-frame H.264 video of the synthetic dataset's real frames (train then test)."""
    path = tmp_path_factory.mktemp("video") / "street.mp4"
    with VideoWriter(path, fps=10) as writer:
        for seq in ("train_B/seq_0000", "test_B/seq_0000"):
            for file in image_files(data / seq):
                writer.write(read_image(file))
    return path


def _ids(folder: Path) -> np.ndarray:
    return np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in image_files(folder)]).astype(np.int64)


def _pngs(folder: Path) -> np.ndarray:
    return np.stack([read_image(p) for p in image_files(folder)])  # [T,H,W,3] uint8


def _label_folders(data: Path, tmp: Path) -> tuple[Path, Path]:
    """The test sequence's labels as a folder of id PNGs and as a folder of PALETTE-coloured RGB PNGs."""
    ids_dir, colour_dir = tmp / "ids", tmp / "colour"
    ids_dir.mkdir()
    colour_dir.mkdir()
    for i, ids in enumerate(_ids(data / "test_A" / "seq_0000")):
        cv2.imwrite(str(ids_dir / f"{i:03d}.png"), ids.astype(np.uint8))
        write_image(colour_dir / f"{i:03d}.png", np.asarray(PALETTE, np.uint8)[ids])
    return ids_dir, colour_dir


def _render(input_: Path, out: Path, export: Path, *options: str) -> np.ndarray:
    assert cli.main(["render", str(input_), str(out), "-m", str(export), "--frames-dir", *options]) == 0
    return _pngs(out)


# ----------------------------------------------------------------------------------------------
# Colour-coded label maps
# ----------------------------------------------------------------------------------------------


def test_palette_folder_renders_equal_to_ids(data, export, palette_export, tmp_path):
    assert len({tuple(c) for c in PALETTE}) == LABEL_NC
    ids_dir, colour_dir = _label_folders(data, tmp_path)
    (tmp_path / "palette.yaml").write_text(yaml.safe_dump(PALETTE))
    (tmp_path / "palette.json").write_text(json.dumps(PALETTE))
    zeros = ("--first-frame", "zeros")
    expected = _render(ids_dir, tmp_path / "from_ids", export, *zeros)
    assert expected.shape == (8, 64, 64, 3)
    for name in ("palette.yaml", "palette.json"):
        got = _render(colour_dir, tmp_path / f"from_{name}", export, *zeros, "--palette", str(tmp_path / name))
        assert np.array_equal(got, expected), name
    assert np.array_equal(_render(colour_dir, tmp_path / "from_config", palette_export, *zeros), expected)
    assert np.array_equal(_render(ids_dir, tmp_path / "ids_with_palette", palette_export, *zeros), expected)


def _expect_exit_2(args: list[str], tmp: Path, capsys, *expected: str) -> str:
    before = sorted(p.name for p in tmp.iterdir())
    assert cli.main(["render", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vid2vid: error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, (text, err)
    assert sorted(p.name for p in tmp.iterdir()) == before  # no output, no temporary left
    return err


def test_unknown_colour_exits_2_naming_file_pixel_and_colour(data, export, tmp_path, capsys):
    _, colour_dir = _label_folders(data, tmp_path)
    palette = tmp_path / "palette.yaml"
    palette.write_text(yaml.safe_dump(PALETTE))
    image = read_image(colour_dir / "002.png")
    image[3, 5] = (1, 2, 3)
    assert [1, 2, 3] not in PALETTE
    write_image(colour_dir / "002.png", image)
    args = [str(colour_dir), str(tmp_path / "out.mp4"), "-m", str(export), "--first-frame", "zeros"]
    _expect_exit_2([*args, "--palette", str(palette)], tmp_path, capsys,
                   "002.png", "pixel (x=5, y=3)", "colour (1, 2, 3)", f"--palette {palette}", "add it to the palette")
    _expect_exit_2(args, tmp_path, capsys, "000.png: a colour image", "--palette FILE")  # no palette at all


BAD_PALETTES = {
    "missing": (None, "no such file"),
    "not_yaml": ("[[0, 0, 0], [1, 2", "not valid YAML or JSON"),
    "not_a_list": ("colours: 3\n", "expected a non-empty list"),
    "two_values": ("[[0, 0, 0], [1, 2]]", "entry 1 ([1, 2]) is not [R, G, B]"),
    "out_of_range": ("[[0, 0, 0], [1, 2, 300]]", "3 integers in 0..255"),
    "not_integers": ("[[0, 0, 0], [0.5, 2, 3]]", "entry 1"),
    "duplicate": ("[[0, 0, 0], [9, 9, 9], [9, 9, 9]]", "entries 1 and 2 have the same colour [9, 9, 9]"),
    "too_many": (json.dumps(PALETTE + [[1, 2, 3]]), "36 colours, but the model has label_nc 35"),
}


@pytest.mark.parametrize("case", BAD_PALETTES)
def test_bad_palette_file_exits_2(case, data, export, tmp_path, capsys):
    text, expected = BAD_PALETTES[case]
    _, colour_dir = _label_folders(data, tmp_path)
    palette = tmp_path / "palette.yaml"
    if text is not None:
        palette.write_text(text)
    args = [str(colour_dir), str(tmp_path / "out.mp4"), "-m", str(export), "--first-frame", "zeros",
            "--palette", str(palette)]
    _expect_exit_2(args, tmp_path, capsys, f"--palette {palette}", expected)


def test_config_palette_is_validated():
    assert from_dict({"data": {"palette": PALETTE}}).data.palette == PALETTE
    for palette, expected in [([[0, 0, 0], [0, 0, 0]], "same colour"), ([[0, 0, 256]], "0..255"),
                              ([], "non-empty"), (PALETTE + [[1, 2, 3]], "at most data.label_nc=35")]:
        with pytest.raises(ConfigError, match=expected):
            from_dict({"data": {"palette": palette}})
    with pytest.raises(ConfigError, match=r"data.palette\[0\]"):
        from_dict({"data": {"palette": [1, 2, 3]}})


# ----------------------------------------------------------------------------------------------
# Video files
# ----------------------------------------------------------------------------------------------


def _prepared_labels(root: Path) -> np.ndarray:
    """Every label map prepare video wrote, in video order (train sequences, then test)."""
    phases = [root / phase for phase in ("train_A", "test_A") if (root / phase).is_dir()]
    folders = [folder for phase in phases for folder in sorted(phase.iterdir())]
    return np.concatenate([_ids(f) for f in folders])


def _video_labels(video: Path, **options) -> np.ndarray:
    source = open_input(video, label_nc=LABEL_NC, **options)
    return np.stack([labels for labels, _ in iter_labels(source, LABEL_NC)])


def test_video_edges_equal_prepare_video(video, export, tmp_path):
    prepared = tmp_path / "prepared"
    prepare_video(video, prepared, labels="edges", seq_len=8, test_fraction=0.0)
    assert not (prepared / CENTRES_FILE).exists()
    labels = _video_labels(video, labels="edges")
    assert labels.shape == (16, 64, 64) and set(np.unique(labels)) == {0, 1}
    assert np.array_equal(labels, _prepared_labels(prepared))
    # the whole render: the video (its own frames as the real first frames) = its prepared sequence
    from_video = _render(video, tmp_path / "from_video", export, "--labels", "edges", "--max-frames", "8")
    from_dataset = _render(prepared / "train_A" / "seq_0000", tmp_path / "from_dataset", export)
    assert from_video.shape == (8, 64, 64, 3) and np.array_equal(from_video, from_dataset)


def test_video_kmeans_with_centres_equals_prepare_video(video, export, tmp_path, caplog):
    prepared = tmp_path / "prepared"
    summary = prepare_video(video, prepared, labels="kmeans:4", size=Size(32, 48), seq_len=8, test_fraction=0.5)
    centres = prepared / CENTRES_FILE
    assert f"--centres {centres}" in summary
    saved = json.loads(centres.read_text())
    assert saved["labels"] == "kmeans:4" and np.array(saved["centres"]).shape == (4, 3)
    expected = _prepared_labels(prepared)
    assert expected.shape == (16, 32, 48) and len(np.unique(expected)) == 4
    assert np.array_equal(_video_labels(video, centres=centres, size=Size(32, 48)), expected)
    assert np.array_equal(_video_labels(video, labels="kmeans:4", centres=centres, size=Size(32, 48)), expected)
    with caplog.at_level(logging.WARNING, logger="vid2vid"):
        fitted = _video_labels(video, labels="kmeans:4", size=Size(32, 48))  # fitted on the video, as prepare does
    assert np.array_equal(fitted, expected) and "fitting the 4 colour clusters on this video itself" in caplog.text
    frames = _render(video, tmp_path / "out", export, "--centres", str(centres), "--size", "32x48",
                     "--first-frame", "zeros", "--start", "3")
    assert frames.shape == (13, 32, 48, 3)


def test_video_input_errors_exit_2(video, data, export, tmp_path, capsys):
    centres = tmp_path / "centres.json"
    centres.write_text(json.dumps({"centres": [[10.0, 0.0, 0.0], [50.0, 1.0, 2.0], [90.0, 0.0, 0.0]]}))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    base = [str(video), str(tmp_path / "out.mp4"), "-m", str(export), "--first-frame", "zeros"]
    cases = [
        ([], "--labels edges or kmeans:K"),
        (["--labels", "kmeans:40"], "label_nc 35"),
        (["--labels", "kmeans:4", "--centres", str(centres)], "3 kmeans centres, but --labels kmeans:4"),
        (["--labels", "edges", "--centres", str(centres)], "go with --labels kmeans:K"),
        (["--centres", str(broken)], f"--centres {broken}: not a centres file"),
        (["--centres", str(tmp_path / "nope.json")], "no such file"),
        (["--labels", "edges", "--palette", str(centres)], "leave --palette out"),
        (["--labels", "sobel"], "--labels 'sobel'"),
    ]
    for extra, expected in cases:
        _expect_exit_2([*base, *extra], tmp_path, capsys, expected)
    folder = [str(data / "test_A" / "seq_0000"), str(tmp_path / "out.mp4"), "-m", str(export), "--labels", "edges"]
    _expect_exit_2(folder, tmp_path, capsys, "this is a folder of label maps")
