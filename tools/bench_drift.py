"""Drift over a long render: does the video model's quality decay over 1,000 frames more than a per-frame model's?

    python tools/bench.py drift [--image runs/proof_image2/export] [--video runs/proof_video4/export]
                                [--frames 1000] [--window 100] [--scene pingpong|straight] [--scene-frames 91]
                                [--seed 0] [--threads 0] [--out runs/bench_drift]

The models: --image and --video, by default the proof table's runs/proof_image2 and runs/proof_video4 exports,
or when those are absent the newest `make demo`'s pair (runs/demo/<m>min/per_frame/export, vid2vid/export).

A long synthetic street sequence (vid2vid.data.synthetic: the layers of the held-out sequence 0 of a dataset of
--seed, at the video model's data.load_size, made in memory) is rendered through the product's renderer
(vid2vid.render.VideoRenderer) by the per-frame model and by the video model, whose first frames come from the
per-frame model (first_frame image-model:PATH, as tools/compare_models.py does). PSNR against the real frames
over the last --window frames minus the first --window frames is the drift of each; the bar: the video model's
minus the per-frame model's within 1 dB (the scene's own change cancels out). The first window holds the video
model's start-up: its seed frames are the per-frame model's and their benefit fades over ~20 frames; so where the
scene repeats, the last window is also compared with the same frames one period after the start.

--scene pingpong (the default): the first --scene-frames frames of the scene played forwards and backwards
(period 2 (K-1) frames; K = 91: 180, so frames 900-999 repeat frames 0-99 exactly and the per-frame model's drift
is 0 by construction). --scene straight: the generator's own 1,000-frame sequence; its forward camera zoom
compounds ((1 + zoom)^t), so after a few hundred frames the camera is inside the ground texture and the frames
are no longer a street (see BENCHMARKS.md).

Per window the table gives both PSNRs and, for the video model, what explains a drift: the mean blend weight w
of the hallucinated frame, the PSNR of its raw (hallucinated) frame and of the previous output warped by its
flow, and the sharpness (variance of the Laplacian of the grey frame) of real, per-frame and video frames.
Writes <out>/drift.json (every frame's numbers) and <out>/real_perframe_video.mp4 (stacked top to bottom).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from bench import figure

ROOT = Path(__file__).resolve().parents[1]
IMAGE, VIDEO = "runs/proof_image2/export", "runs/proof_video4/export"
BAR_DB = 1.0


class Scene:
    """Frame t of a long synthetic sequence: (labels [H,W] int64, instances [H,W] int64, rgb [H,W,3] uint8)."""

    def __init__(self, kind: str, frames: int, scene_frames: int, size, seed: int):
        from vid2vid.data.synthetic import build_scene

        self.kind, self.size = kind, size
        self.length = frames if kind == "straight" else scene_frames
        self.period = None if kind == "straight" else 2 * (scene_frames - 1)
        # generate_synthetic's held-out sequence 0 of a dataset of this seed draws from the same generator
        self.layers = build_scene(np.random.default_rng([seed, 1, 0]), size, self.length)

    def index(self, t: int) -> int:
        """The scene frame shown at time t (pingpong: forwards, then backwards, and so on)."""
        if self.period is None:
            return t
        phase = t % self.period
        return phase if phase < self.length else self.period - phase

    def __call__(self, t: int):
        from vid2vid.data.synthetic import render

        labels, inst, rgb, _ = render(self.layers, self.index(t), self.size)
        return labels.astype(np.int64), inst.astype(np.int64), rgb


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error in [0, 1] of two uint8 images (vid2vid.eval.metrics.psnr's definition, undone)."""
    from vid2vid.eval.metrics import psnr

    return 10 ** (-psnr(torch.from_numpy(a), torch.from_numpy(b), (0, 255)) / 10)


def window_psnr(mses: list[float]) -> float:
    """PSNR of a window: over all its pixels (10 log10 of 1 / the mean MSE), as compare_models takes it."""
    return float(10 * np.log10(1 / max(np.mean(mses), 1e-12)))


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey frame (BENCHMARKS.md's sharpness)."""
    return float(cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def render_both(per_frame, vid, scene: Scene, frames: int, out: Path) -> list[dict]:
    """Both renderers (per-frame, video) frame by frame over the scene -> per-frame records; writes the stacked
    video."""
    from vid2vid.imaging import to_uint8
    from vid2vid.video_io import VideoWriter

    captured = {}  # the video generator's outputs of the current frame (none for the seed frames)
    hook = vid.export.generator.register_forward_hook(lambda module, args, output: captured.update(out=output))
    records, start = [], time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    h, w = scene.size
    with VideoWriter(out / "real_perframe_video.mp4", fps=vid.cfg.render.fps) as writer:
        for t in range(frames):
            labels, inst, real = scene(t)
            captured.clear()
            made_pf, made_v = per_frame.step(labels, inst), vid.step(labels, inst)
            record = {"t": t, "scene_frame": scene.index(t), "mse_per_frame": mse(made_pf, real),
                      "mse_video": mse(made_v, real), "sharp_real": sharpness(real),
                      "sharp_per_frame": sharpness(made_pf), "sharp_video": sharpness(made_v)}
            if "out" in captured:
                o = captured["out"]
                record.update(weight=float(o.weight[..., :h, :w].mean()),
                              mse_raw=mse(to_uint8(o.raw[..., :h, :w])[0], real),
                              mse_warped=mse(to_uint8(o.warped[..., :h, :w])[0], real))
            records.append(record)
            writer.write(np.concatenate([real, made_pf, made_v], axis=0))
            if (t + 1) % 100 == 0:
                rate = (t + 1) / (time.perf_counter() - start)
                print(f"  frame {t + 1}/{frames}: {rate:.2f} frames/s (both models)", file=sys.stderr, flush=True)
    hook.remove()
    return records


def windows(records: list[dict], size: int) -> list[dict]:
    """Per window of `size` frames: PSNRs, mean weight, sharpness (None where a window has no composed frame)."""
    rows = []
    for start in range(0, len(records), size):
        chunk = records[start: start + size]
        composed = [r for r in chunk if "weight" in r]
        rows.append({
            "frames": f"{start}-{start + len(chunk) - 1}",
            "psnr_per_frame": window_psnr([r["mse_per_frame"] for r in chunk]),
            "psnr_video": window_psnr([r["mse_video"] for r in chunk]),
            "psnr_raw": window_psnr([r["mse_raw"] for r in composed]) if composed else None,
            "psnr_warped": window_psnr([r["mse_warped"] for r in composed]) if composed else None,
            "weight": float(np.mean([r["weight"] for r in composed])) if composed else None,
            **{f"sharp_{k}": float(np.mean([r[f"sharp_{k}"] for r in chunk])) for k in ("real", "per_frame", "video")},
        })
    return rows


def window_table(rows: list[dict]) -> str:
    def f(x, spec=".2f"):
        return "-" if x is None else format(x, spec)

    lines = ["| frames | PSNR per-frame | PSNR video | video - per-frame | video: PSNR raw | PSNR warped | mean w | "
             "sharpness real / per-frame / video |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['frames']} | {f(r['psnr_per_frame'])} | {f(r['psnr_video'])} | "
                     f"{r['psnr_video'] - r['psnr_per_frame']:+.2f} | {f(r['psnr_raw'])} | {f(r['psnr_warped'])} | "
                     f"{f(r['weight'], '.3f')} | {r['sharp_real']:.0f} / {r['sharp_per_frame']:.0f} / "
                     f"{r['sharp_video']:.0f} |")
    return "\n".join(lines)


def measure(image: str = IMAGE, video: str = VIDEO, frames: int = 1000, window: int | None = None,
            scene: str = "pingpong", scene_frames: int = 91, seed: int = 0, threads: int = 0,
            out: str = "runs/bench_drift", device: str = "cpu") -> dict:
    from vid2vid.render import VideoRenderer

    for flag, path in (("--image", image), ("--video", video)):
        if not (Path(path) / "config.yaml").is_file():
            raise SystemExit(f"{flag} {path}: no exported model there (config.yaml); train one (`make demo`, or "
                             f"BENCHMARKS.md's proof table has the commands) or pass {flag} PATH")
    window = window or max(1, frames // 10)
    if scene_frames < 2 or not 0 < window <= frames:
        raise SystemExit(f"--scene-frames {scene_frames} must be >= 2 and --window {window} within 1..{frames}")
    if threads:
        torch.set_num_threads(threads)
    per_frame = VideoRenderer(image, device=device, seed=0)
    vid = VideoRenderer(video, first_frame=f"image-model:{image}", device=device, seed=0)
    if not vid.is_video or per_frame.is_video:
        raise SystemExit(f"--image must be a per-frame model and --video a video model; got "
                         f"{per_frame.cfg.model.name} and {vid.cfg.model.name}")
    size = vid.cfg.data.load_size
    long_scene = Scene(scene, frames, scene_frames, size, seed)
    start = time.perf_counter()
    records = render_both(per_frame, vid, long_scene, frames, Path(out))
    seconds = time.perf_counter() - start
    first, last = records[:window], records[-window:]
    drift = {k: window_psnr([r[f"mse_{k}"] for r in last]) - window_psnr([r[f"mse_{k}"] for r in first])
             for k in ("per_frame", "video")}
    rows = windows(records, window)
    same = long_scene.period is not None and (frames - window) % long_scene.period == 0
    # the first window's frames again one period later, after the video model's start-up transient (its seed
    # frames come from the per-frame model and their benefit fades over ~20 frames): what accumulates after it
    later = long_scene.period if same and long_scene.period + window <= frames - window else None
    if later:
        settled = records[later: later + window]
        drift_settled = {k: window_psnr([r[f"mse_{k}"] for r in last]) - window_psnr([r[f"mse_{k}"] for r in settled])
                         for k in ("per_frame", "video")}
    from flow import atomic_path

    with atomic_path(Path(out, "drift.json")) as tmp:
        tmp.write_text(json.dumps({"records": records, "windows": rows, "drift": drift}, indent=1))
    return {
        "sequence": f"{scene}, {frames} frames at {size}, seed {seed}"
                    + (f", scene frames 0-{scene_frames - 1} forwards and back (period {long_scene.period})"
                       if long_scene.period else "")
                    + ("; the two windows show the same frames" if same else ""),
        "models": f"per-frame {image}; video {video} (first frames image-model:{image})",
        f"PSNR last {window} - first {window} frames, per-frame model": figure(drift["per_frame"], "dB"),
        f"PSNR last {window} - first {window} frames, video model": figure(drift["video"], "dB", drift["per_frame"],
                                                                           "per-frame model", compare="difference"),
        f"within {BAR_DB:g} dB of the per-frame model's": bool(abs(drift["video"] - drift["per_frame"]) <= BAR_DB),
        **({f"PSNR last {window} - frames {later}-{later + window - 1} (the same frames, after the start-up), video "
            "model": figure(drift_settled["video"], "dB", drift_settled["per_frame"], "per-frame model",
                            compare="difference")} if later else {}),
        "render, both models": figure(frames / seconds, "frames/s"),
        "windows": window_table(rows),
    }


def default_exports() -> tuple[str, str]:
    """(per-frame, video) exports: the proof table's runs when they exist, else the newest `make demo`'s
    (runs/demo/<m>min/per_frame/export and vid2vid/export), else the proof's paths (measure() names what is missing)."""
    def complete(*paths) -> bool:
        return all((Path(p) / "config.yaml").is_file() for p in paths)

    if complete(IMAGE, VIDEO):
        return IMAGE, VIDEO
    for demo in sorted(Path("runs/demo").glob("*min"), key=lambda p: p.stat().st_mtime, reverse=True):
        image, video = demo / "per_frame" / "export", demo / "vid2vid" / "export"
        if complete(image, video):
            return str(image), str(video)
    return IMAGE, VIDEO


def run(quick: bool = True) -> dict:
    """Figures for tools/bench.py: quick renders 200 frames of a 46-frame scene played back and forth (period 90:
    frames 90-109 and 180-199 repeat 0-19), full the 1,000 frames (period 180: frames 900-999 repeat 0-99)."""
    frames, scene_frames = (200, 46) if quick else (1000, 91)
    image, video = default_exports()
    result = measure(image, video, frames=frames, scene_frames=scene_frames,
                     out="runs/bench_drift/quick" if quick else "runs/bench_drift")
    result["reference"] = "the per-frame model rendering the same frames in the same run"
    result["command"] = (f"python tools/bench.py drift --image {image} --video {video} --frames {frames} "
                         f"--scene-frames {scene_frames}")
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.py drift", description=__doc__.split("\n\n")[0])
    p.add_argument("--image", help=f"exported per-frame model (default {IMAGE}, else the newest make demo's)")
    p.add_argument("--video", help=f"exported video model (default {VIDEO}, else the newest make demo's)")
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--window", type=int, default=None, help="frames per window (default: frames / 10)")
    p.add_argument("--scene", choices=("pingpong", "straight"), default="pingpong")
    p.add_argument("--scene-frames", type=int, default=91, help="pingpong: frames of the scene played back and forth")
    p.add_argument("--seed", type=int, default=0, help="the synthetic dataset seed whose test sequence 0 is used")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: PyTorch's choice)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/bench_drift", help="folder for drift.json and the stacked mp4")
    args = p.parse_args(argv)
    from bench import area_table

    image, video = default_exports()
    result = measure(args.image or image, args.video or video, args.frames, args.window, args.scene,
                     args.scene_frames, args.seed, args.threads, args.out, args.device)
    print(area_table(result))


if __name__ == "__main__":
    main(sys.argv[1:])
