"""tools/check_original_parity.py on the in-repository original-code fixtures of other options
(tests/fixtures/originals: no instance maps, no foreground branch, 2 frames, depth 2, don't-care labels, SPADE
'more'), and its one-line exit 2 for fixtures it cannot read."""

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "originals"
TOOL = ROOT / "tools" / "check_original_parity.py"
NAMES = ["pix2pixhd_noinst", "spade_noinst_more_dontcare", "vid2vid_G0_nofg_noinst", "vid2vid_G0_edge2face"]


def load(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pt", weights_only=True)


@pytest.mark.parametrize("name", NAMES)
def test_parity_tool_passes_on_the_fixtures_of_other_options(parity_tool, capsys, name):
    assert parity_tool.main([str(FIXTURES / f"{name}.pt")]) == 0
    out = capsys.readouterr().out
    assert "PASS: largest difference" in out and "FAIL" not in out
    if name.startswith("vid2vid"):  # no --fg: no mask, no fg features; both norm modes still compared
        assert "mask" not in out and "img_fg_feat" not in out
        assert "img_final (eval, running statistics)" in out and "img_final (train mode)" in out


def test_the_fixtures_have_the_options_they_cover():
    """No instance maps (no edge channel), no fg, 2 frames, depth 2, labels other than 35, SPADE more + don't-care."""
    p2p = load("pix2pixhd_noinst")
    assert p2p["options"]["no_instance"] and "inst_map" not in p2p["inputs"]
    assert p2p["inputs"]["input_label"].shape[1] == p2p["options"]["label_nc"] == 20
    spade = load("spade_noinst_more_dontcare")
    opts = spade["options"]
    assert opts["no_instance"] and opts["contain_dontcare_label"] and opts["num_upsampling_layers"] == "more"
    assert spade["inputs"]["input_semantics"].shape[1] == opts["semantic_nc"] == 7
    assert (spade["inputs"]["label_map"] == 255).any()
    v2v = load("vid2vid_G0_nofg_noinst")
    opts = v2v["options"]
    assert not opts["use_instance"] and not opts["fg"] and (opts["n_frames_G"], opts["n_downsample_G"]) == (2, 2)
    assert not {"inst_ids", "mask"} & set(v2v["inputs"]) and "img_fg_feat" not in v2v["outputs"]
    assert v2v["inputs"]["input"].shape[1] == 2 * opts["label_nc"] == 12
    assert not any(key.startswith("indv_") for key in v2v["state_dict"])


def one_error_line(parity_tool, capsys, path: Path) -> str:
    """Run the tool on `path` -> its single stderr line; nothing on stdout, exit 2."""
    assert parity_tool.main([str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1, captured
    assert str(path) in lines[0]
    return lines[0]


def test_a_truncated_fixture_exits_2_with_one_line(tmp_path):
    data = (FIXTURES / "pix2pixhd_noinst.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    done = subprocess.run([sys.executable, str(TOOL), str(cut)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "cut.pt: not readable" in done.stderr
    assert "Traceback" not in done.stderr


def test_foreign_files_exit_2_with_one_line(parity_tool, capsys, tmp_path):
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"format": "something else", "x": [1, 2]}))
    line = one_error_line(parity_tool, capsys, tmp_path / "plain.pkl")
    assert "not readable" in line and "weights_only` set to `False`" not in line  # not torch's unsafe advice
    torch.save({"model": torch.zeros(2)}, tmp_path / "other.pt")
    assert "not an original-code fixture" in one_error_line(parity_tool, capsys, tmp_path / "other.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    assert "not an original-code fixture" in one_error_line(parity_tool, capsys, tmp_path / "list.pt")


def changed(tmp_path: Path, name: str, change) -> Path:
    fixture = load(name)
    change(fixture)
    path = tmp_path / f"changed_{name}.pt"
    torch.save(fixture, path)
    return path


def test_missing_entries_and_options_that_do_not_convert_exit_2_with_one_line(parity_tool, capsys, tmp_path):
    path = changed(tmp_path, "pix2pixhd_noinst", lambda f: f["inputs"].pop("label_map"))
    assert "no inputs['label_map']" in one_error_line(parity_tool, capsys, path)
    path = changed(tmp_path, "pix2pixhd_noinst", lambda f: f.pop("state_dict"))
    assert "no state_dict" in one_error_line(parity_tool, capsys, path)
    path = changed(tmp_path, "pix2pixhd_noinst", lambda f: f["inputs"].update(input_label="not a tensor"))
    assert "inputs['input_label'] is a str, not a Tensor" in one_error_line(parity_tool, capsys, path)
    path = changed(tmp_path, "pix2pixhd_noinst", lambda f: f["options"].update(netG="unet"))
    assert "netG 'unet'" in one_error_line(parity_tool, capsys, path)
    path = changed(tmp_path, "pix2pixhd_noinst", lambda f: f["options"].update(no_instance=False))
    assert "does not match the model" in one_error_line(parity_tool, capsys, path)  # 21 input channels, not 20
    path = changed(tmp_path, "vid2vid_G0_nofg_noinst", lambda f: f["outputs"].update(img_fg_feat=torch.zeros(1)))
    assert "our model built from the fixture's options gives none" in one_error_line(parity_tool, capsys, path)


def test_inconsistent_content_exits_2_and_traceback_shows_it(parity_tool, capsys, tmp_path):
    """Label ids beyond the options' label_nc: one line, or the traceback with --traceback."""
    path = changed(tmp_path, "pix2pixhd_noinst", lambda f: f["inputs"].update(label_map=torch.full((1, 1, 8, 8), 99.0)))
    assert "cannot check this fixture" in one_error_line(parity_tool, capsys, path)
    with pytest.raises((IndexError, RuntimeError, ValueError)):
        parity_tool.main([str(path), "--traceback"])
