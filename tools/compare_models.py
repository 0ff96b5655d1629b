"""The proof table: a per-frame image model against the sequential video model on held-out sequences.

    python tools/compare_models.py --image runs/demo_image/export --video runs/demo/export \
        [--data DATA_ROOT] [--phase test] [--out runs/compare] [--json FILE]

For every sequence of the split, both models render through the product's renderer (vid2vid.render.
VideoRenderer, as `vid2vid render` does): the per-frame model every frame from its labels (and instances),
the video model with its first n_frames_G-1 frames made by that same per-frame model (first frame
image-model:PATH), so both start equal. Frames, real frames and mp4s
are written under --out; then tools/eval_flicker.py measures each video's warping error E_warp on the
dataset's exact flow (gt:<root>/<phase>_flow/<seq>) and tOF against the real frames, and PSNR is taken
against the real frames (all frames, [0, 1], from the written 8-bit PNGs). The real frames' own E_warp is
the floor. Prints one table (means over sequences) and, with --json, every number.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from vid2vid.checkpoint import load_export
from vid2vid.data.sequences import whole_sequences
from vid2vid.errors import UserError, run_cli
from vid2vid.models.build import spec
from vid2vid.render import VideoRenderer, to_uint8
from vid2vid.video_io import VideoWriter, write_image

TOOLS = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="compare_models.py", description=__doc__.split("\n\n")[2])
    p.add_argument("--image", required=True, help="export of the per-frame model (pix2pix / pix2pixhd / spade)")
    p.add_argument("--video", required=True, help="export of the video model (model.name vid2vid)")
    p.add_argument("--data", help="dataset root (default: the video model's data.root)")
    p.add_argument("--phase", default="test", help="split to render (default test)")
    p.add_argument("--out", default="runs/compare", help="folder for frames, mp4s and the table")
    p.add_argument("--max-frames", type=int, default=0, help="frames per sequence (default: all)")
    p.add_argument("--json", help="write every number here")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--plot", action="store_true", help="also draw each sequence's per-frame error plot "
                   "(<out>/<sequence>/flicker.png, tools/eval_flicker.py --plot)")
    return p.parse_args(argv)


def render(renderer: VideoRenderer, clip: dict) -> np.ndarray:
    """A clip's label maps (and instances) through the product's renderer -> uint8 frames [T,H,W,3]."""
    renderer.reset()
    inst = clip.get("inst")
    return np.stack([renderer.step(labels, None if inst is None else inst[t])
                     for t, labels in enumerate(clip["labels"])])


def write_video(frames: np.ndarray, folder: Path, fps: float) -> None:
    """PNG frames 00000.png ... into folder, and folder.mp4 beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        write_image(folder / f"{t:05d}.png", frame)
    with VideoWriter(folder.with_suffix(".mp4"), fps=fps) as writer:
        for frame in frames:
            writer.write(frame)


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2)
    return float(10 * np.log10(1 / max(mse, 1e-12)))


def flicker(videos: list[Path], reference: Path, flow_dir: Path, out_json: Path, plot: bool = False
            ) -> dict[str, dict]:
    """tools/eval_flicker.py on the videos with the exact flow; {video path: record}; with plot, the per-pair
    errors drawn beside out_json as flicker.png."""
    cmd = [sys.executable, str(TOOLS / "eval_flicker.py"), *map(str, videos), "--reference", str(reference),
           "--flow", f"gt:{flow_dir}", "--json", str(out_json)]
    cmd += ["--plot", str(out_json.with_suffix(".png"))] if plot else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"eval_flicker.py failed ({proc.stderr.strip().splitlines()[-1:]}); command: {' '.join(cmd)}")
    return {r["path"]: r for r in json.loads(out_json.read_text())["videos"]}


def compare(args: argparse.Namespace) -> dict:
    image, video = load_export(args.image), load_export(args.video)
    if spec(video.cfg).sequential is False or spec(image.cfg).sequential:
        raise UserError(f"--image must be a per-frame model and --video a vid2vid model; got {image.cfg.model.name} "
                        f"and {video.cfg.model.name}")
    renderers = {"per-frame": VideoRenderer(args.image, device=args.device, seed=0),
                 "vid2vid": VideoRenderer(args.video, first_frame=f"image-model:{args.image}", device=args.device,
                                          seed=0)}
    data = replace(video.cfg.data, root=args.data, source="folder") if args.data else video.cfg.data
    root = data.root
    out, rows = Path(args.out), {"real frames": [], "per-frame": [], "vid2vid": []}
    for name, clip in whole_sequences(data, args.phase, args.max_frames):
        real = to_uint8(clip["frames"])
        made, speed = {}, {}
        for label, renderer in renderers.items():
            start = time.perf_counter()
            made[label] = render(renderer, clip)
            speed[label] = len(real) / (time.perf_counter() - start)
        folders = {label: out / name / label.replace(" ", "_") for label in ("real frames", *made)}
        write_video(real, folders["real frames"], video.cfg.render.fps)
        for label, frames in made.items():
            write_video(frames, folders[label], video.cfg.render.fps)
        records = flicker(list(folders.values()), folders["real frames"], Path(root) / f"{args.phase}_flow" / name,
                          out / name / "flicker.json", args.plot)
        for label, folder in folders.items():
            r = records[str(folder)]
            frames = real if label == "real frames" else made[label]
            rows[label].append({"sequence": name, "psnr": psnr_uint8(frames, real) if label != "real frames" else None,
                                "e_warp": r["warping_error"], "tof": r.get("tof"), "fps": speed.get(label),
                                "mp4": str(folder.with_suffix(".mp4"))})
    return {"image": str(args.image), "video": str(args.video), "data": root, "phase": args.phase, "rows": rows}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def format_table(result: dict) -> str:
    lines = ["model | PSNR dB | E_warp x1e3 | tOF px | render frames/s", "---|---|---|---|---"]
    for label, rows in result["rows"].items():
        cells = [_mean(r[k] for r in rows) for k in ("psnr", "e_warp", "tof", "fps")]
        psnr, e_warp, tof, fps = cells
        lines.append(f"{label} | {'-' if psnr is None else f'{psnr:.2f}'} | {e_warp * 1e3:.3f} | "
                     f"{'-' if tof is None else f'{tof:.3f}'} | {'-' if fps is None else f'{fps:.1f}'}")
    per_frame, vid = (_mean(r["e_warp"] for r in result["rows"][k]) for k in ("per-frame", "vid2vid"))
    dpsnr = _mean(r["psnr"] for r in result["rows"]["vid2vid"]) - _mean(r["psnr"] for r in result["rows"]["per-frame"])
    lines.append(f"\nE_warp(vid2vid) / E_warp(per-frame) = {vid / per_frame:.3f}; PSNR(vid2vid) - PSNR(per-frame) = "
                 f"{dpsnr:+.2f} dB; {len(result['rows']['vid2vid'])} sequences of {result['data']}/{result['phase']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    def body() -> None:
        args = parse_args(argv)
        result = compare(args)
        print(format_table(result))
        if args.json:
            from flow import atomic_path

            with atomic_path(args.json) as tmp:
                Path(tmp).write_text(json.dumps(result, indent=1))

    return run_cli("compare_models.py", body)


if __name__ == "__main__":
    sys.exit(main())
