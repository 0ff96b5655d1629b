"""tools/bench.py: figures, tables and the rewrite of BENCHMARKS.md's generated block (no benchmark runs here)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench", ROOT / "tools" / "bench.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

HANDWRITTEN = """# Benchmarks

Produced by `python tools/bench.py AREA`. Figures are ratios against a reference measured in the
same run, with the machine they came from.

## Data pipeline

| what | measured |
|---|---|
| loader | 26.8 clips/s |

## Rendering

Hand-written history, `python tools/bench.py render --threads 2`.
"""

MACHINE = {"cpu": "Test CPU", "cores": 2, "torch": "2.x", "cpu_capability": "AVX2", "device": "cpu (no GPU)",
           "python": "3.11", "load_average": 0.5}


def test_figure_ratio_and_difference():
    assert bench.figure(2.0, "s", 4.0, "plain")["ratio"] == 0.5
    row = bench.figure(-0.3, "dB", 0.2, "per-frame", compare="difference")
    assert row["difference"] == pytest.approx(-0.5) and "ratio" not in row
    assert "reference" not in bench.figure(3.0, "GFLOP")


def test_area_table_rows_nested_and_text():
    result = {"threads": 2,
              "step": bench.figure(1.5, "s", 3.0, "bare networks"),
              "drift": bench.figure(-0.25, "dB", 0.5, "per-frame", compare="difference"),
              "demo, 128x256": {"FLOPs": bench.figure(38.6, "GFLOP"), "parts": "encoder 40%"},
              "rows": [{"impl": "ours", "seconds": 1.0}],
              "windows": "| a | b |\n|---|---|\n| 1 | 2 |",
              "reference": "what the references are", "command": "python tools/bench.py x"}
    table = bench.area_table(result)
    lines = table.splitlines()
    assert lines[0] == "| figure | value | reference (same run) | vs reference |"
    assert "| step | 1.5 s | 3 s (bare networks) | 0.5x |" in lines
    assert "| drift | -0.25 dB | 0.5 dB (per-frame) | -0.75 dB |" in lines
    assert "| demo, 128x256 / FLOPs | 38.6 GFLOP | - | - |" in lines
    assert "| demo, 128x256 / parts | encoder 40% | - | - |" in lines
    assert "| rows[0] / seconds | 1 | - | - |" in lines
    assert "```\n| a | b |\n|---|---|\n| 1 | 2 |\n```" in table  # multi-line text: a code block, not a row
    assert "Reference: what the references are" in table and "Command: `python tools/bench.py x`" in table
    assert bench.area_table({"error": "RuntimeError: boom | x"}) == "Failed: `RuntimeError: boom / x`"


def test_block_inserted_after_intro_then_replaced_per_area(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(HANDWRITTEN)
    sections = {a: bench.section(a, {"x": bench.figure(1.0, "s", 2.0, "ref")}, 3.0, "2025-01-01 10:00")
                for a in ("flops", "data")}
    bench.update_markdown(path, MACHINE, sections, "first run.")
    text = path.read_text()
    assert text.count(bench.BEGIN) == 1 and text.count(bench.END) == 1
    intro_end = HANDWRITTEN.index("## Data pipeline")
    assert text.startswith(HANDWRITTEN[:intro_end] + bench.BEGIN)  # right after the intro
    assert text.endswith("\n\n" + HANDWRITTEN[intro_end:])  # the hand-written sections untouched
    block = text[text.index(bench.BEGIN): text.index(bench.END)]
    assert "Test CPU, 2 cores, CPU capability AVX2; device cpu (no GPU); torch 2.x" in block
    assert block.index("### data") < block.index("### flops")  # areas in bench.py's order

    # a run of one area replaces that section only; the other area's section and the hand-written text stay
    new = {"flops": bench.section("flops", {"y": bench.figure(5.0, "GFLOP/s")}, 4.0, "2025-01-02 11:00")}
    bench.update_markdown(path, {**MACHINE, "cpu": "Other CPU"}, new, "second run.")
    again = path.read_text()
    assert again.count(bench.BEGIN) == 1 and again.endswith("\n\n" + HANDWRITTEN[intro_end:])
    block = again[again.index(bench.BEGIN): again.index(bench.END)]
    assert "| y | 5 GFLOP/s |" in block and "| x |" in block.split("### flops")[0]
    assert "2025-01-02 11:00" in block and "Other CPU" in block and "second run." in block
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_block_in_a_file_without_headings(tmp_path):
    path = tmp_path / "B.md"
    path.write_text("# Benchmarks\n")
    bench.update_markdown(path, MACHINE, {"data": bench.section("data", {"error": "boom"}, 1.0, "now")}, "")
    text = path.read_text()
    assert text.startswith("# Benchmarks\n\n" + bench.BEGIN) and "Failed: `boom`" in text


def test_help_lists_the_areas():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "bench.py"), "--help"], capture_output=True, text=True,
                         check=True).stdout
    for area in ("data", "flow", "flicker", "models", "train", "video", "render", "flops", "drift"):
        assert area in out
    assert bench.areas()[:2] == ["data", "flow"]


def test_drift_pingpong_scene_repeats_its_first_frames():
    """bench drift's long sequence: a scene played forwards and backwards, so the last window shows exactly the
    first window's frames when (frames - window) is a multiple of the period."""
    sys.path.insert(0, str(ROOT / "tools"))
    from bench_drift import Scene

    from vid2vid.config import Size

    scene = Scene("pingpong", 100, 46, Size(32, 64), seed=0)
    assert scene.period == 90
    assert [scene.index(t) for t in (0, 45, 46, 89, 90, 91)] == [0, 45, 44, 1, 0, 1]
    for i in range(10):
        for a, b in zip(scene(90 + i), scene(i)):
            assert (a == b).all()
    straight = Scene("straight", 20, 46, Size(32, 64), seed=0)
    assert [straight.index(t) for t in (0, 19)] == [0, 19] and straight.period is None


def test_drift_uses_the_proof_exports_else_the_newest_demo(tmp_path, monkeypatch):
    """bench drift's default models: the proof table's exports when both exist, else the newest make demo's."""
    import os

    sys.path.insert(0, str(ROOT / "tools"))
    from bench_drift import IMAGE, VIDEO, default_exports

    monkeypatch.chdir(tmp_path)
    assert default_exports() == (IMAGE, VIDEO)  # nothing there: measure() names the missing proof export

    def export(path: str) -> None:
        (tmp_path / path).mkdir(parents=True)
        (tmp_path / path / "config.yaml").write_text("{}")

    for minutes, mtime in ((20, 2000), (6, 1000)):  # the 20-minute demo is the newer one
        export(f"runs/demo/{minutes}min/per_frame/export")
        export(f"runs/demo/{minutes}min/vid2vid/export")
        os.utime(tmp_path / f"runs/demo/{minutes}min", (mtime, mtime))
    assert default_exports() == ("runs/demo/20min/per_frame/export", "runs/demo/20min/vid2vid/export")
    export(IMAGE)
    assert default_exports() == ("runs/demo/20min/per_frame/export", "runs/demo/20min/vid2vid/export")  # one only
    export(VIDEO)
    assert default_exports() == (IMAGE, VIDEO)


def test_render_bench_times_and_compares_modes_on_an_export(tmp_path, capsys):
    """bench render --export/--sequence: every mode's s/frame and its frames' PSNR against the first mode's, on a
    dataset sequence (instances from <phase>_inst); an unknown mode is refused by name."""
    sys.path.insert(0, str(ROOT / "tools"))
    import torch
    from bench_render import main as render_main
    from bench_render import measure_trained

    from vid2vid.checkpoint import export_generator
    from vid2vid.config import Size, load_config
    from vid2vid.data.synthetic import generate_synthetic
    from vid2vid.models.build import build_generator

    data = generate_synthetic(tmp_path / "street", sequences=1, test_sequences=1, frames=8, size=Size(64, 64), seed=0)
    cfg = load_config(ROOT / "configs" / "tiny_video.yaml")
    export = export_generator(build_generator(cfg).state_dict(), cfg, tmp_path / "export")
    threads = torch.get_num_threads()
    try:
        result = measure_trained(export, data / "test_A" / "seq_0000", "zeros", frames=2,
                                 modes=["eager", "channels_last"], device="cpu", threads=1)
    finally:
        torch.set_num_threads(threads)
    assert result["eager, s/frame (median of 2)"]["value"] > 0
    assert result["channels_last, s/frame (median of 2)"]["against"] == "eager, same run"
    assert result["channels_last, PSNR of its frames vs eager's"]["value"] > 30
    with pytest.raises(SystemExit) as exit_info:
        render_main(["--modes", "eager,fp8"])
    assert exit_info.value.code == 2 and "unknown fp8" in capsys.readouterr().err


def test_render_bench_original_row_says_why_it_is_skipped(tmp_path, monkeypatch):
    """Without NVIDIA's code (no --original-code, no $VID2VID_ORIGINAL_CODE) or with a folder that is not a checkout
    of it, the original generator's row says so and nothing fails."""
    sys.path.insert(0, str(ROOT / "tools"))
    from bench_original import ENV, original_code, original_rows

    monkeypatch.delenv(ENV, raising=False)
    assert original_code(None) is None
    row = original_rows(tmp_path / "unused", None, frames=1, source=None)
    assert "skipped: pass --original-code" in row["original generator"]
    row = original_rows(tmp_path / "unused", tmp_path, frames=1, source=None)
    assert "FileNotFoundError" in row["original generator"] and "NVIDIA/vid2vid" in row["original generator"]
    monkeypatch.setenv(ENV, str(tmp_path))
    assert original_code(None) == tmp_path


@pytest.mark.skipif(not os.environ.get("VID2VID_ORIGINAL_CODE"), reason="needs a checkout of NVIDIA/vid2vid")
def test_render_bench_original_generator_renders_our_frames(tmp_path):
    """With the original's code: its CompositeGenerator, holding our export's weights, makes the frames our renderer
    made from the same inputs (to a uint8 level), and both are timed."""
    sys.path.insert(0, str(ROOT / "tools"))
    from bench_original import original_code, original_rows
    from bench_render import TINY, make_export, moving_labels

    from vid2vid.config import Size

    size = Size(64, 128)
    export = make_export(tmp_path / "export", TINY, size)
    rows = original_rows(export, original_code(None), frames=2, source=lambda t: moving_labels(t, size))
    assert rows["largest output difference, uint8 levels"]["value"] <= 1
    assert rows["ours, eager fp32 VideoRenderer.step, interleaved"]["ratio"] > 0
