"""One CLI runner: `vid2vid`, the tools and `python -m flow` turn a user error or an OSError into one line
`<prog>: error: ...` on stderr and exit 2, Ctrl-C into `<prog>: interrupted` and exit 130; bugs keep their
traceback. Also tools/eval_image_model.py end to end on the synthetic dataset."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vid2vid import cli
from vid2vid.errors import ConfigError, DataError, run_cli

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_line_error(capsys, prog: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error: "), err
    return err


@pytest.mark.parametrize("error", [ConfigError("a\nb: c"), DataError("x"), PermissionError(13, "Denied", "/p")])
def test_run_cli_user_and_os_errors_exit_2_with_one_line(capsys, error):
    def body():
        raise error

    assert run_cli("prog", body) == 2
    err = one_line_error(capsys, "prog")
    assert "/p: Denied" in err if isinstance(error, OSError) else str(error).split("\n")[0] in err


def test_run_cli_ctrl_c_exits_130_and_bugs_propagate(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert run_cli("prog", interrupted) == 130 and capsys.readouterr().err == "prog: interrupted\n"
    with pytest.raises(ZeroDivisionError):
        run_cli("prog", lambda: 1 / 0)
    assert run_cli("prog", lambda: None) == 0


def test_vid2vid_user_error_and_unreadable_path(tmp_path, capsys):
    assert cli.main(["check-data", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in one_line_error(capsys, "vid2vid")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1\n")  # YAML's own message has several lines: still one line on stderr
    assert cli.main(["config", "--config", str(bad)]) == 2
    assert "bad.yaml: not valid YAML" in one_line_error(capsys, "vid2vid")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert cli.main(["prepare", "synthetic", str(blocker / "out"), "--sequences", "1", "--test-sequences", "0",
                     "--frames", "2", "--size", "32x32"]) == 2
    assert str(blocker) in one_line_error(capsys, "vid2vid")


def test_eval_flicker_user_error_and_unreadable_path(tmp_path, capsys):
    eval_flicker = load_tool("eval_flicker")
    assert eval_flicker.main([str(tmp_path / "missing.mp4")]) == 2
    assert "missing.mp4" in one_line_error(capsys, "eval_flicker")
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(2):
        cv2.imwrite(str(frames / f"{t:05d}.png"), np.full((16, 16, 3), 100 + t, np.uint8))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert eval_flicker.main([str(frames), "--cache", str(blocker / "cache")]) == 2  # an OSError (not a folder)
    assert str(blocker) in one_line_error(capsys, "eval_flicker")


def test_eval_image_model_user_error(tmp_path, capsys):
    tool = load_tool("eval_image_model")
    assert tool.main([str(tmp_path / "no_export")]) == 2
    assert "no_export" in one_line_error(capsys, "eval_image_model")


def test_eval_image_model_on_the_synthetic_dataset(tmp_path, synthetic_root, capsys):
    import torch

    from vid2vid.checkpoint import export_generator
    from vid2vid.config import load_config
    from vid2vid.models.build import build_generator

    cfg = load_config(ROOT / "configs" / "tiny.yaml", [f"data.root={synthetic_root}", "data.source=folder",
                                                      "data.load_size=64x128", "data.crop_size=64x128"])
    torch.manual_seed(0)
    export_generator(build_generator(cfg).state_dict(), cfg, tmp_path / "export")
    tool = load_tool("eval_image_model")
    assert tool.main([str(tmp_path / "export")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames"] == 10 and result["size"] == "64x128"  # 1 test sequence of 10 frames
    assert 0 < result["l1_class_mean_baseline"] < result["l1_model"] < 1  # random weights lose to the baseline
    assert tool.main([str(tmp_path / "export"), "--phase", "val"]) == 2
    assert "val_A" in one_line_error(capsys, "eval_image_model")


@pytest.mark.parametrize("content", [None, b"not an image"])
def test_python_m_flow_same_form(tmp_path, content):
    if content is not None:
        (tmp_path / "a.png").write_bytes(content)
    done = subprocess.run([sys.executable, "-m", "flow", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--out",
                           str(tmp_path / "f.flo"), "--model", "dis"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and done.stderr.startswith("flow: error: ") and done.stderr.count("\n") == 1
    assert "a.png" in done.stderr
