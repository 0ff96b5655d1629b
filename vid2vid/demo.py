"""`vid2vid demo` (what `make demo` runs): the product end to end on the built-in synthetic street dataset.

    vid2vid demo [--minutes 20] [--out runs/demo]

Stages, each with its share of the budget (20 minutes: 6 + 11 + 2, plus about a minute to render and measure):

  1. data       generate and check the synthetic street dataset (configs/demo*.yaml's data.root)
  2. per-frame  train pix2pixHD (configs/demo_image.yaml) for 30% of the minutes
  3. vid2vid    train the video model (configs/demo.yaml) for 55% of the minutes, its image branch started from
                the per-frame model (model.init_from, vid2vid.train.warm_start)
  4. segmenter  train the quality metric's segmentation network on the real training frames (500 steps,
                about 2 minutes on 2 idle cores; a fixed step count, so its ceiling does not depend on the
                machine's load; cached in the dataset folder)
  5. measure    render the held-out sequences with both models through the product's renderer (the video
                model's first frames made by the per-frame model) and make the two baselines from the per-frame
                frames (blurred to the video model's detail; flow-guided recursive filter), then PSNR,
                segmentation mIoU, detail, E_warp raw and at matched detail, and tOF against the real frames
                (tools/compare_models.py); the side-by-side mp4, a PNG strip and the flicker plot

Training stops on time (train.max_minutes), so the table says how long and how many steps each model
trained. Every stage resumes or reuses what exists: a second run with the same minutes finishes in
seconds. Runs go to <out>/<minutes>min, so another budget never mixes with this one.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from argparse import Namespace
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from vid2vid.errors import UserError

# Imports inside functions are on purpose: the demo drives training and rendering in subprocesses, and its own
# process imports torch, the segmenter and tools/compare_models.py (heavy) only for the steps that need them.

REPO = Path(__file__).resolve().parent.parent
SHARES = {"per-frame": 0.30, "vid2vid": 0.55, "segmenter": 0.10}  # of --minutes (the segmenter's: an estimate)
MEASURE_VERSION = "detail1"  # part of the fingerprint: a results.json of older measurements is measured again
MEASURE_MINUTES = 1.0  # the estimate for stage 5 at the default size (2 sequences x 30 frames)


@dataclass
class Demo:
    minutes: float
    out: Path  # <out>/<minutes>min
    image_config: Path
    video_config: Path
    overrides: list[str]  # --set KEY=VALUE for both configs (tests shrink the demo with them)
    device: str  # auto | cpu | cuda
    segmenter_steps: int = 500  # the quality segmenter's training (vid2vid.eval.quality.SegmenterSettings.steps)

    def budget(self, stage: str) -> float:
        return SHARES[stage] * self.minutes


def run_demo(demo: Demo) -> dict:
    """All five stages; returns the results (also in <out>/results.json) and prints the table."""
    from vid2vid.config import load_config

    started, clock = time.perf_counter(), Estimate(demo)
    demo.out.mkdir(parents=True, exist_ok=True)
    announce_device(demo.device)
    image_cfg = load_config(demo.image_config, demo.overrides)
    clock.stage(1, "data", "generate and check the synthetic street dataset")
    _vid2vid("check-data", "--config", str(demo.image_config), *_set(demo.overrides))
    trained = {}
    image_export = demo.out / "per_frame" / "export"
    for n, (name, config, out, extra) in enumerate((
            ("per-frame", demo.image_config, demo.out / "per_frame", []),
            ("vid2vid", demo.video_config, demo.out / "vid2vid", [f"model.init_from={image_export}"])), start=2):
        clock.stage(n, name, f"train {name} for {demo.budget(name):.3g} min -> {out}")
        trained[name] = train_for(config, demo.overrides + extra + [f"train.out_dir={out}"], demo.budget(name), out)
    clock.stage(4, "segmenter", f"train the segmentation network for the quality metric ({demo.segmenter_steps} "
                f"steps, about {demo.budget('segmenter'):.3g} min on 2 idle cores; cached in {image_cfg.data.root})")
    segmenter = train_segmenter(image_cfg, demo.segmenter_steps)
    clock.stage(5, "measure", "render the held-out sequences with both models and measure them")
    result = measure(demo, segmenter, trained)
    result["this_run_minutes"] = (time.perf_counter() - started) / 60
    result.setdefault("wall_minutes", result["this_run_minutes"])  # a reused measurement keeps its demo's time
    (demo.out / "results.json").write_text(json.dumps(result, indent=1))
    print(format_report(result))
    return result


class Estimate:
    """Stage banners with the remaining time of the whole demo (the stages' budgets still ahead)."""

    def __init__(self, demo: Demo):
        self.demo, self.start = demo, time.perf_counter()

    def stage(self, n: int, name: str, what: str) -> None:
        ahead = sum(self.demo.budget(s) for s in list(SHARES)[max(0, n - 2):]) + MEASURE_MINUTES
        spent = (time.perf_counter() - self.start) / 60
        print(f"\n[demo {n}/5] {what}  (demo: {spent:.1f} min spent, at most ~{ahead:.0f} min left)", flush=True)


def announce_device(device: str) -> None:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        print(f"demo: using the GPU {torch.cuda.get_device_name(0)} for training and rendering")
    else:
        print(f"demo: running on the CPU ({torch.get_num_threads()} threads); a machine with a GPU uses it")


def _vid2vid(*args: str) -> None:
    """`python -m vid2vid ARGS` in a child process (its own progress bars); its failure stops the demo."""
    cmd = [sys.executable, "-m", "vid2vid", *args]
    code = subprocess.run(cmd, cwd=REPO).returncode
    if code != 0:
        raise UserError(f"demo: `{' '.join(cmd[2:])}` exited with {code} (its message is above); fix that and run "
                        "the demo again: it resumes")


def _set(overrides: list[str]) -> list[str]:
    return ["--set", *overrides] if overrides else []


def train_for(config: Path, overrides: list[str], minutes: float, out: Path) -> dict:
    """Train (or resume) until `minutes` of training time are spent; {'minutes', 'steps', 'export'}."""
    _vid2vid("train", "--config", str(config), "--resume", "latest",
             *_set([*overrides, f"train.max_minutes={minutes}", "train.max_steps=1000000000"]))
    from vid2vid.checkpoint import read_trainer_state

    last = sorted((out / "checkpoints").glob("step_*"))[-1]
    state = read_trainer_state(last)
    return {"minutes": state["elapsed_s"] / 60, "steps": state["step"], "export": str(out / "export")}


def train_segmenter(cfg, steps: int):
    """The quality metric's segmenter (vid2vid.eval.quality), trained for a fixed number of steps (not minutes: the
    ceiling must not depend on the machine's load) and cached in the dataset folder."""
    from vid2vid.eval.segmenter import SegmenterSettings
    from vid2vid.eval.segmenter import train_segmenter as train

    segmenter = train(cfg.data, SegmenterSettings(steps=steps), log=print)
    meta = segmenter.meta
    print(f"demo: segmenter {'loaded from' if meta.get('from_cache') else 'trained into'} {meta.get('cache')}")
    return segmenter


def _fingerprint(*folders: Path) -> str:
    """Changes when any exported weight file changes (then stage 5 measures again)."""
    h = hashlib.sha256()
    for folder in folders:
        for f in sorted(folder.glob("*")):
            h.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def measure(demo: Demo, segmenter, trained: dict) -> dict:
    """Stage 5: render through tools/compare_models.py's comparison, add segmentation scores, write the pictures."""
    sys.path.insert(0, str(REPO / "tools"))
    import compare_models

    from vid2vid.eval.postprocess import DEFAULT_WEIGHT
    from vid2vid.eval.quality import evaluate_quality

    image, video = Path(trained["per-frame"]["export"]), Path(trained["vid2vid"]["export"])
    key = f"{_fingerprint(image, video)}-{MEASURE_VERSION}"
    cached = demo.out / "results.json"
    if cached.is_file() and json.loads(cached.read_text()).get("fingerprint") == key:
        print(f"demo: both models unchanged since the last measurement; reusing {cached}")
        return json.loads(cached.read_text())
    args = Namespace(image=str(image), video=str(video), data=None, phase="test", out=str(demo.out / "videos"),
                     max_frames=0, json=None, device=demo.device, plot=True, skip=None, blend=DEFAULT_WEIGHT)
    result = compare_models.compare(args)
    made = {label: [Path(r["mp4"]).with_suffix("") for r in rows]  # the lossless PNG folders beside each mp4
            for label, rows in result["rows"].items() if label != "real frames"}
    quality = evaluate_quality(result["data"], result["phase"], made, segmenter=segmenter, device="cpu")
    result["quality"] = {label: {k: row[k] for k in ("miou", "pixel_accuracy", "psnr", "l1")}
                         for label, row in quality["rows"].items()}
    result["segmenter"] = {k: quality["segmenter"].get(k) for k in ("steps_done", "train_seconds", "cache",
                                                                     "prior_only_miou")}
    result.update(fingerprint=key, trained=trained, minutes=demo.minutes,
                  pictures=write_pictures(demo, result))
    return result


STRIP_FRAMES = (0, 10, 20, 29)  # the PNG strip's rows (clamped to the sequence's length)
PANELS = ("per-frame", "per-frame filtered", "vid2vid", "real frames")  # after the label colours


def write_pictures(demo: Demo, result: dict) -> dict:
    """The first sequence side by side (labels | per-frame | per-frame filtered | vid2vid | real) as an mp4 and a
    PNG strip of frames STRIP_FRAMES."""
    from vid2vid.config import load_config
    from vid2vid.data.sequences import whole_sequences
    from vid2vid.imaging import label_palette
    from vid2vid.video_io import VideoWriter, iter_frames

    cfg = load_config(demo.video_config, demo.overrides)
    name, clip = whole_sequences(replace(cfg.data, root=result["data"]), result["phase"])[0]
    colours = label_palette(cfg.data.label_nc)[clip["labels"].numpy()]  # [T,H,W,3]
    first = {label: Path(rows[0]["mp4"]).with_suffix("") for label, rows in result["rows"].items()}  # PNG folders
    streams = [iter(colours)] + [iter_frames(first[k]) for k in PANELS]
    side_by_side, strip_rows = demo.out / "side_by_side.mp4", []
    picks = {min(t, len(colours) - 1) for t in STRIP_FRAMES}
    with VideoWriter(side_by_side, fps=cfg.render.fps) as writer:
        for t, frames in enumerate(zip(*streams, strict=False)):
            row = np.concatenate([np.asarray(f)[..., :3] for f in frames], axis=1)  # [H,5W,3]
            writer.write(row)
            if t in picks:
                strip_rows.append(row)
    strip = demo.out / "strip.png"
    cv2.imwrite(str(strip), cv2.cvtColor(np.concatenate(strip_rows, axis=0), cv2.COLOR_RGB2BGR))
    plot = Path(result["rows"]["vid2vid"][0]["mp4"]).parent / "flicker.png"
    return {"side_by_side": str(side_by_side), "strip": str(strip), "flicker_plot": str(plot),
            "sequence": name, "strip_frames": sorted(picks)}


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None


NAMES = {"real frames": "real frames", "per-frame": "per-frame pix2pixHD", "per-frame + blur": "per-frame + blur",
         "per-frame filtered": "per-frame filtered", "vid2vid": "vid2vid"}


def _vs_vid2vid(rows: list[dict]) -> tuple[float, float] | tuple[None, None]:
    """E_warp(vid2vid) / E_warp(row), raw and at matched detail, from the means over sequences."""
    if "vs_vid2vid" not in rows[0]:
        return None, None
    m = [r["vs_vid2vid"] for r in rows]
    return (_mean(m, "e_warp_a") / _mean(m, "e_warp_b"), _mean(m, "matched_e_warp_a") / _mean(m, "matched_e_warp_b"))


def _cell(v, fmt) -> str:
    return "-" if v is None else format(v, fmt)


def table_rows(result: dict) -> list[str]:
    """The table's header and one line per row (means over the held-out sequences)."""
    lines = ["model | trained | PSNR dB | seg. mIoU % (pixel acc. %) | detail (aligned) | E_warp x1e3 | "
             "vid2vid/this E_warp: raw, matched | tOF px | render frames/s", "---|---|---|---|---|---|---|---|---"]
    for label, rows in result["rows"].items():
        t = result["trained"].get(label)
        run = f"{t['minutes']:.1f} min, {t['steps']} steps" if t else "-"
        quality = result["quality"].get(label, {})
        miou, acc = quality.get("miou"), quality.get("pixel_accuracy")  # one confusion matrix over all frames
        e_warp = _mean(rows, "e_warp")
        raw, matched = _vs_vid2vid(rows)
        lines.append(f"{NAMES.get(label, label)} | {run} | {_cell(_mean(rows, 'psnr'), '.2f')} | "
                     f"{_cell(miou and 100 * miou, '.1f')} ({_cell(acc and 100 * acc, '.1f')}) | "
                     f"{_cell(_mean(rows, 'detail'), '.2f')} ({_cell(_mean(rows, 'detail_aligned'), '.2f')}) | "
                     f"{_cell(e_warp and 1e3 * e_warp, '.3f')} | {_cell(raw, '.2f')}, {_cell(matched, '.2f')} | "
                     f"{_cell(_mean(rows, 'tof'), '.3f')} | {_cell(_mean(rows, 'fps'), '.1f')}")
    return lines


def verdict(result: dict) -> list[str]:
    """The comparison against issue 25's bar: detail, E_warp at matched detail against the per-frame model and
    both baselines, PSNR and mIoU."""
    rows, quality = result["rows"], result["quality"]
    raw, matched = _vs_vid2vid(rows["per-frame"])
    blur, filtered = _vs_vid2vid(rows["per-frame + blur"])[1], _vs_vid2vid(rows["per-frame filtered"])[1]
    detail = _mean(rows["vid2vid"], "detail")
    d_psnr = _mean(rows["vid2vid"], "psnr") - _mean(rows["per-frame"], "psnr")
    d_miou = 100 * (quality["vid2vid"]["miou"] - quality["per-frame"]["miou"])
    ok = detail >= 0.9 and matched <= 0.6 and blur < 1 and filtered < 1 and d_psnr >= -1 and d_miou >= -3
    return [f"vid2vid vs per-frame: E_warp x{raw:.2f} raw, x{matched:.2f} at matched detail (bar: <= 0.6); "
            f"at matched detail vs per-frame + blur x{blur:.2f}, vs per-frame filtered x{filtered:.2f} (bar: < 1 "
            f"both); detail {detail:.2f} of the real frames' (bar: >= 0.9); PSNR {d_psnr:+.2f} dB (bar: >= -1), "
            f"mIoU {d_miou:+.1f} points (bar: >= -3): {'met' if ok else 'NOT met'}"]


def format_report(result: dict) -> str:
    """The table (means over the held-out sequences), the checks against the issue's bar, and the paths."""
    per = result["rows"]["per-frame"]
    segmenter = result.get("segmenter", {})
    lines = table_rows(result) + [""] + verdict(result) + [
        f"{len(per)} held-out sequences of {result['data']}, frames t >= {result.get('skip', 0)} (the video model's "
        f"seed frames left out); demo wall time {result.get('wall_minutes', 0):.1f} min (this run: "
        f"{result.get('this_run_minutes', 0):.1f} min)",
        "detail: high-frequency energy (mean |Y - Gaussian(Y, 1.5)|) / the real frames'; aligned: in-place gain on "
        "the real frames' high-pass; matched: the sharper of vid2vid and the row blurred to the other's detail",
        f"mIoU: the segmenter of tools/eval_quality.py trained {segmenter.get('steps_done')} steps on "
        f"the real training frames ({segmenter.get('cache')}); 'real frames' is its ceiling", ""]
    for label, rows in result["rows"].items():
        lines.append(f"{NAMES.get(label, label)}: {', '.join(r['mp4'] for r in rows)}")
    pictures = result["pictures"]
    lines += [f"side by side (labels | per-frame | per-frame filtered | vid2vid | real): {pictures['side_by_side']}",
              f"PNG strip (frames {pictures['strip_frames']}): {pictures['strip']}",
              f"per-frame flicker of both models: {pictures['flicker_plot']}"]
    return "\n".join(lines)
