"""The proof table: a per-frame image model against the sequential video model on held-out sequences.

    python tools/compare_models.py --image runs/demo_image/export --video runs/demo/export \
        [--data DATA_ROOT] [--phase test] [--out runs/compare] [--json FILE]

For every sequence of the split: the per-frame model renders every frame from its labels (and instances);
the video model renders through temporal.unroll with its first n_frames_G-1 frames made by that same
per-frame model (model.first_frame image-model:PATH), so both start equal. Frames, real frames and mp4s
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
import torch
from einops import rearrange

from vid2vid.checkpoint import load_export
from vid2vid.data.encoding import semantic_input
from vid2vid.data.sequences import build_dataset
from vid2vid.errors import UserError, run_cli
from vid2vid.models.build import spec
from vid2vid.temporal import start_history, unroll
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
    return p.parse_args(argv)


def sequences(cfg, root: str, phase: str, max_frames: int) -> list[tuple[str, dict]]:
    """(name, clip {labels [T,H,W], inst?, frames [T,3,H,W]}) for every sequence of the split, unaugmented."""
    data = replace(cfg.data, root=root, n_frames=1, crop_size=cfg.data.load_size)  # whole frames, not training crops
    probe = build_dataset(data, phase=phase)
    n = probe.shortest if max_frames <= 0 else min(max_frames, probe.shortest)
    dataset = build_dataset(replace(data, n_frames=n), phase=phase)
    return [(seq.name, dataset[i]) for i, seq in enumerate(dataset.sequences)]


@torch.no_grad()
def render_per_frame(export, clip: dict) -> torch.Tensor:
    """Every frame independently: [T,3,H,W] in [-1,1]."""
    return torch.cat([export.generate(clip["labels"][t:t + 1], _inst(clip, t, t + 1), seed=0)
                      for t in range(len(clip["labels"]))]).clamp(-1, 1)


@torch.no_grad()
def render_video(export, image_export, clip: dict) -> torch.Tensor:
    """The video model with its first n_frames_G-1 frames from the per-frame model: [T,3,H,W] in [-1,1]."""
    cfg, G = export.cfg, export.generator
    n = cfg.model.n_frames_G - 1
    sem = semantic_input(clip["labels"], clip.get("inst"), cfg.data.label_nc, cfg.data.use_instance)[None]
    seed_clip = {k: v[:n] for k, v in clip.items() if torch.is_tensor(v)}
    first = render_per_frame(image_export, seed_clip)[None]  # [1,N-1,3,H,W]
    history = start_history("image-model:", sem[:, :n], first)
    out, _ = unroll(G, history, sem[:, n:])
    return torch.cat([first, out.final.clamp(-1, 1)], dim=1)[0]


def _inst(clip: dict, a: int, b: int):
    return clip["inst"][a:b] if "inst" in clip else None


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """[T,3,H,W] in [-1,1] -> [T,H,W,3] uint8."""
    return ((rearrange(frames.float(), "t c h w -> t h w c") * 0.5 + 0.5).clamp(0, 1) * 255 + 0.5).byte().numpy()


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


def flicker(videos: list[Path], reference: Path, flow_dir: Path, out_json: Path) -> dict[str, dict]:
    """tools/eval_flicker.py on the videos with the exact flow; {video path: record}."""
    cmd = [sys.executable, str(TOOLS / "eval_flicker.py"), *map(str, videos), "--reference", str(reference),
           "--flow", f"gt:{flow_dir}", "--json", str(out_json)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"eval_flicker.py failed ({proc.stderr.strip().splitlines()[-1:]}); command: {' '.join(cmd)}")
    return {r["path"]: r for r in json.loads(out_json.read_text())["videos"]}


def compare(args: argparse.Namespace) -> dict:
    image, video = load_export(args.image), load_export(args.video)
    if spec(video.cfg).sequential is False or spec(image.cfg).sequential:
        raise UserError(f"--image must be a per-frame model and --video a vid2vid model; got {image.cfg.model.name} "
                        f"and {video.cfg.model.name}")
    root = args.data or video.cfg.data.root
    out, rows = Path(args.out), {"real frames": [], "per-frame": [], "vid2vid": []}
    for name, clip in sequences(video.cfg, root, args.phase, args.max_frames):
        real = to_uint8(clip["frames"])
        made, speed = {}, {}
        for label, render in (("per-frame", lambda c: render_per_frame(image, c)),
                              ("vid2vid", lambda c: render_video(video, image, c))):
            start = time.perf_counter()
            made[label] = to_uint8(render(clip))
            speed[label] = len(real) / (time.perf_counter() - start)
        folders = {label: out / name / label.replace(" ", "_") for label in ("real frames", *made)}
        write_video(real, folders["real frames"], video.cfg.render.fps)
        for label, frames in made.items():
            write_video(frames, folders[label], video.cfg.render.fps)
        records = flicker(list(folders.values()), folders["real frames"], Path(root) / f"{args.phase}_flow" / name,
                          out / name / "flicker.json")
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
