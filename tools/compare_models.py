"""The proof table: a per-frame image model against the sequential video model on held-out sequences, raw and
at matched detail, with the two baselines a user would pick instead of a video model.

    python tools/compare_models.py --image runs/demo_image/export --video runs/demo/export \
        [--data DATA_ROOT] [--phase test] [--out runs/compare] [--json FILE] [--skip N] [--blend 0.3]

For every sequence of the split, both models render through the product's renderer (vid2vid.render.
VideoRenderer, as `vid2vid render` does): the per-frame model every frame from its labels (and instances; face
models, data.condition face: from each frame's landmarks and frame, against the face-cropped real frames; pose
models, data.condition pose: from each frame's OpenPose people, frame and mask, the prepared sequence folder's),
the video model with its first n_frames_G-1 frames made by that same per-frame model (first frame
image-model:PATH), so both start equal. Two baselines are made from the per-frame model's output: "per-frame
+ blur", Gaussian-blurred to the video model's detail (sigma bisected, vid2vid.eval.detail.blur_to_detail), and
"per-frame filtered", through the flow-guided recursive filter (vid2vid.eval.postprocess, current-frame weight
--blend, DIS flow between consecutive per-frame outputs); both rounded to 8 bits. Frames, real frames and mp4s
are written under --out. Every figure is measured on the frames t >= --skip (default: the video model's
n_frames_G-1 seed frames are left out): tools/eval_flicker.py measures each video's warping error E_warp on the
dataset's exact flow (gt:<root>/<phase>_flow/<seq>) and tOF against the real frames; PSNR against the real
frames ([0, 1], from the 8-bit frames); detail and aligned detail against the real frames (vid2vid.eval.detail);
and for every row, E_warp(vid2vid) / E_warp(row) raw and at matched detail (the sharper of the two blurred to
the other's high-frequency energy, then E_warp on the same exact flow and masks), and E_warp split by motion
(on the pixels whose flow moves at least 0.5 px and on the rest, vid2vid.eval.metrics.motion_split_warping_error):
a video that holds moving content still (a lag, a ghost, a smear) scores low on the moving pixels, where the real
frames' own figure says what showing the motion costs. The real frames' own E_warp is the floor. Prints one table
(means over sequences) and, with --json, every number.
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

from flow import get_estimator, read_flo
from vid2vid.checkpoint import load_export
from vid2vid.data.sequences import whole_sequences
from vid2vid.errors import UserError, run_cli
from vid2vid.eval.detail import (
    DEFINITIONS,
    as_frames,
    blur_to_detail,
    blur_video,
    hf_energy,
    matched_warping_error,
    measure_detail,
)
from vid2vid.eval.metrics import motion_split_warping_error, pair_flows, psnr
from vid2vid.eval.postprocess import DEFAULT_WEIGHT, recursive_filter
from vid2vid.families import is_sequential
from vid2vid.imaging import to_uint8
from vid2vid.render import VideoRenderer
from vid2vid.video_io import VideoWriter, write_image

TOOLS = Path(__file__).resolve().parent
ROWS = {"real frames": "real_frames", "per-frame": "per-frame", "per-frame + blur": "per-frame_blur",
        "per-frame filtered": "per-frame_filtered", "vid2vid": "vid2vid"}  # row label: folder name
MATCHED = ("E_warp at matched detail: of a row and vid2vid, the video with the higher hf_energy is Gaussian-blurred "
           "(sigma bisected to the other's hf_energy, then rounded to 8 bits), then both measured on the same exact "
           "flow and masks as eval_flicker; ratio = E_warp(vid2vid) / E_warp(row)")


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
    p.add_argument("--skip", type=int, help="frames left out at the start of every figure (default: the video "
                   "model's n_frames_G-1 seed frames, made by the per-frame model)")
    p.add_argument("--blend", type=float, default=DEFAULT_WEIGHT, help="the recursive filter's weight of the "
                   f"current frame (default {DEFAULT_WEIGHT}: out_t = w frame_t + (1 - w) warp(out_t-1))")
    p.add_argument("--plot", action="store_true", help="also draw each sequence's per-frame error plot "
                   "(<out>/<sequence>/flicker.png, tools/eval_flicker.py --plot)")
    return p.parse_args(argv)


def render(renderer: VideoRenderer, clip: dict, inputs: list[dict] | None = None) -> np.ndarray:
    """A clip's label maps (and instances) through the product's renderer -> uint8 frames [T,H,W,3]; a face or pose
    model's from `inputs`, each frame's keywords of VideoRenderer.step (keyword_inputs)."""
    renderer.reset()
    if inputs is not None:
        return np.stack([renderer.step(**frame) for frame in inputs])
    inst = clip.get("inst")
    return np.stack([renderer.step(labels, None if inst is None else inst[t])
                     for t, labels in enumerate(clip["labels"])])


def keyword_inputs(data, phase: str, name: str, n: int) -> list[dict] | None:
    """The first n frames of a face or pose sequence as the renderer takes them (vid2vid render's sequence-folder
    input): a face's {"landmarks" [68,2], "frame" uint8 [H,W,3]}, a pose's {"people", "frame", "mask", "iuv"} each;
    None for a label model (its clip's labels)."""
    from vid2vid.render.faces import iter_faces, open_face_input
    from vid2vid.render.poses import iter_poses, open_pose_input

    root = Path(data.root)
    if data.condition == "face":
        return list(iter_faces(open_face_input(root / f"{phase}_keypoints" / name), 0, n))
    if data.condition == "pose":
        return list(iter_poses(open_pose_input(root / f"{phase}_openpose" / name, data.pose, size=None), 0, n))
    return None


def write_video(frames: np.ndarray, folder: Path, fps: float) -> None:
    """PNG frames 00000.png ... into folder, and folder.mp4 beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        write_image(folder / f"{t:05d}.png", frame)
    with VideoWriter(folder.with_suffix(".mp4"), fps=fps) as writer:
        for frame in frames:
            writer.write(frame)


def flow_method(flow_dir: Path) -> str:
    """eval_flicker's --flow: the dataset's exact flow when it has one (gt:DIR), else OpenCV DIS on the real frames
    (a prepared real clip has no exact flow)."""
    return f"gt:{flow_dir}" if flow_dir.is_dir() else "dis"


def flicker(videos: list[Path], reference: Path, flow_dir: Path, out_json: Path, skip: int = 0, plot: bool = False
            ) -> dict[str, dict]:
    """tools/eval_flicker.py on the videos with the exact flow (DIS on the real frames without one), frames t >= skip;
    {video path: record}; with plot, the per-pair errors drawn beside out_json as flicker.png."""
    cmd = [sys.executable, str(TOOLS / "eval_flicker.py"), *map(str, videos), "--reference", str(reference),
           "--flow", flow_method(flow_dir), "--frames", f"{skip}:", "--json", str(out_json)]
    cmd += ["--plot", str(out_json.with_suffix(".png"))] if plot else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"eval_flicker.py failed ({proc.stderr.strip().splitlines()[-1:]}); command: {' '.join(cmd)}")
    return {r["path"]: r for r in json.loads(out_json.read_text())["videos"]}


def measuring_flows(folder: Path, real: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The flows every video of a sequence is measured on: the dataset's exact flow in `folder`, or (no such
    folder) OpenCV DIS between the real frames real [T,H,W,3] uint8, as eval_flicker's --flow dis --reference."""
    if folder.is_dir():
        return exact_flows(folder, len(real) - 1)
    return pair_flows(get_estimator("dis"), torch.from_numpy(real).permute(0, 3, 1, 2).float() / 127.5 - 1)


def exact_flows(folder: Path, n_pairs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The dataset's exact flows fw_%05d.flo (t -> t+1), bw_%05d.flo (t+1 -> t) -> two [n_pairs,2,H,W]."""
    def read(direction: str, pair: int) -> np.ndarray:
        path = folder / f"{direction}_{pair:05d}.flo"
        if not path.is_file():
            raise UserError(f"{path}: missing exact flow for frame pair {pair}; the comparison measures E_warp on "
                            "the dataset's exact flow (<root>/<phase>_flow/<sequence>/fw_/bw_NNNNN.flo)")
        return read_flo(path)

    return tuple(rearrange(torch.from_numpy(np.stack([read(d, i) for i in range(n_pairs)])), "n h w c -> n c h w")
                 for d in ("fw", "bw"))


def to_uint8_frames(unit: torch.Tensor) -> np.ndarray:
    """[T,3,H,W] on the 0..1 scale -> uint8 [T,H,W,3] (rounded)."""
    return rearrange((unit * 255).round().clamp(0, 255).to(torch.uint8), "t c h w -> t h w c").numpy()


def baselines(per_frame: np.ndarray, vid: np.ndarray, skip: int, blend: float) -> tuple[dict, dict, dict]:
    """The per-frame model's frames [T,H,W,3] uint8 as a user would post-process them -> ({row: frames},
    {row: seconds to make them}, {"blur_sigma": the Gaussian that brought them to vid2vid's detail})."""
    unit = as_frames(per_frame, (0, 255))
    start = time.perf_counter()
    filtered = to_uint8_frames(recursive_filter(unit, blend))
    filter_s = time.perf_counter() - start
    sigma, _ = blur_to_detail(unit[skip:], hf_energy(vid, (0, 255), skip))
    start = time.perf_counter()
    blurred = to_uint8_frames(blur_video(unit, sigma)) if sigma > 0 else per_frame
    return ({"per-frame + blur": blurred, "per-frame filtered": filtered},
            {"per-frame + blur": time.perf_counter() - start, "per-frame filtered": filter_s}, {"blur_sigma": sigma})


def against_vid2vid(frames: np.ndarray, vid: np.ndarray, real: np.ndarray, flows, skip: int) -> dict:
    """E_warp(vid2vid) / E_warp(frames), raw and at matched detail (vid2vid.eval.detail.matched_warping_error)."""
    record = matched_warping_error(vid, frames, real, flows, (0, 255), skip).as_dict()
    record["blurred"] = {"a": "vid2vid", "b": "this", "": None}[record["blurred"]]
    return record


def measure_sequence(name: str, real: np.ndarray, made: dict[str, np.ndarray], records: dict[str, dict],
                     folders: dict[str, Path], flows, skip: int, seconds: dict) -> dict[str, dict]:
    """Every figure of one sequence: {row: record}."""
    rows = {}
    for label, folder in folders.items():
        frames = real if label == "real frames" else made[label]
        r = records[str(folder)]
        split = motion_split_warping_error(as_frames(frames[skip:], (0, 255)), (flows[0][skip:], flows[1][skip:]))
        row = {"sequence": name, "psnr": None, "e_warp": r["warping_error"], "tof": r.get("tof"),
               "fps": len(real) / seconds[label] if label in seconds else None, "mp4": str(folder.with_suffix(".mp4")),
               "e_warp_moving": split["moving"], "e_warp_still": split["still"], "moving_share": split["moving_share"],
               **measure_detail(frames, real, (0, 255), skip).as_dict()}
        if label != "real frames":
            row["psnr"] = psnr(torch.from_numpy(frames[skip:]), torch.from_numpy(real[skip:]), (0, 255))
        if label != "vid2vid":
            row["vs_vid2vid"] = against_vid2vid(frames, made["vid2vid"], real, flows, skip)
        rows[label] = row
    return rows


def compare(args: argparse.Namespace) -> dict:
    image, video = load_export(args.image), load_export(args.video)
    if not is_sequential(video.cfg) or is_sequential(image.cfg):
        raise UserError(f"--image must be a per-frame model and --video a vid2vid model; got {image.cfg.model.name} "
                        f"and {video.cfg.model.name}")
    skip = video.cfg.model.n_frames_G - 1 if args.skip is None else args.skip
    if skip < 0:
        raise UserError(f"--skip {skip}: must be >= 0 (frames left out at the start; default n_frames_G-1)")
    if not 0 < args.blend <= 1:
        raise UserError(f"--blend {args.blend}: must be in (0, 1] (the current frame's weight, e.g. 0.3)")
    renderers = {"per-frame": VideoRenderer(args.image, device=args.device, seed=0),
                 "vid2vid": VideoRenderer(args.video, first_frame=f"image-model:{args.image}", device=args.device,
                                          seed=0)}
    data = replace(video.cfg.data, root=args.data, source="folder") if args.data else video.cfg.data
    root = data.root
    out, rows, extra = Path(args.out), {label: [] for label in ROWS}, []
    for name, clip in whole_sequences(data, args.phase, args.max_frames):
        real = to_uint8(clip["frames"])
        if len(real) - skip < 2:
            raise UserError(f"--skip {skip}: sequence {name} has {len(real)} frames; at least 2 must be left "
                            "(lower --skip or raise --max-frames)")
        inputs = keyword_inputs(data, args.phase, name, len(real))
        made, seconds = {}, {}
        for label, renderer in renderers.items():
            start = time.perf_counter()
            made[label] = render(renderer, clip, inputs)
            seconds[label] = time.perf_counter() - start
            if made[label].shape != real.shape:
                raise UserError(f"{label}: rendered {made[label].shape[1:3]} frames but the real frames of {name} are "
                                f"{real.shape[1:3]}; compare models trained at the dataset's data.load_size")
        post, post_s, info = baselines(made["per-frame"], made["vid2vid"], skip, args.blend)
        made.update(post)
        seconds.update({k: seconds["per-frame"] + v for k, v in post_s.items()})
        folders = {label: out / name / folder for label, folder in ROWS.items()}
        for label, folder in folders.items():
            write_video(real if label == "real frames" else made[label], folder, video.cfg.render.fps)
        records = flicker(list(folders.values()), folders["real frames"], Path(root) / f"{args.phase}_flow" / name,
                          out / name / "flicker.json", skip, args.plot)
        flows = measuring_flows(Path(root) / f"{args.phase}_flow" / name, real)
        for label, row in measure_sequence(name, real, made, records, folders, flows, skip, seconds).items():
            rows[label].append(row)
        extra.append({"sequence": name, **info})
    return {"image": str(args.image), "video": str(args.video), "data": root, "phase": args.phase, "skip": skip,
            "blend": args.blend, "baselines": extra, "rows": rows,
            "definitions": {**DEFINITIONS, "matched_e_warp": MATCHED}}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def vs_vid2vid(rows: list[dict]) -> tuple[float, float]:
    """Means over sequences -> (E_warp(vid2vid) / E_warp(row) raw, the same at matched detail)."""
    m = [r["vs_vid2vid"] for r in rows]
    return (_mean(x["e_warp_a"] for x in m) / _mean(x["e_warp_b"] for x in m),
            _mean(x["matched_e_warp_a"] for x in m) / _mean(x["matched_e_warp_b"] for x in m))


def _percent(share: float | None) -> float | None:
    return None if share is None else 100 * share


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_table(result: dict) -> str:
    lines = ["model | PSNR dB | detail | aligned detail | E_warp x1e3 | moving / still x1e3 | tOF px | "
             "render frames/s | E_warp vid2vid/this: raw | at matched detail", "|".join(["---"] * 10)]
    for label, rows in result["rows"].items():
        psnr, detail, aligned, e_warp, moving, still, tof, fps = (
            _mean(r[k] for r in rows) for k in
            ("psnr", "detail", "detail_aligned", "e_warp", "e_warp_moving", "e_warp_still", "tof", "fps"))
        raw, matched = vs_vid2vid(rows) if "vs_vid2vid" in rows[0] else (None, None)
        lines.append(f"{label} | {_cell(psnr, '.2f')} | {detail:.3f} | {aligned:.3f} | {e_warp * 1e3:.3f} | "
                     f"{_cell(moving and moving * 1e3, '.3f')} / {_cell(still and still * 1e3, '.3f')} | "
                     f"{_cell(tof, '.3f')} | {_cell(fps, '.1f')} | {_cell(raw, '.2f')} | {_cell(matched, '.2f')}")
    r = result["rows"]
    raw, matched = vs_vid2vid(r["per-frame"])
    dpsnr = _mean(x["psnr"] for x in r["vid2vid"]) - _mean(x["psnr"] for x in r["per-frame"])
    sigmas = ", ".join(f"{b['blur_sigma']:.2f}" for b in result["baselines"])
    moving_share = _mean(x["moving_share"] for x in r["real frames"])
    lines += ["", f"E_warp(vid2vid) / E_warp(per-frame) = {raw:.3f} raw, {matched:.3f} at matched detail; "
              f"vs per-frame + blur (sigma {sigmas}): {vs_vid2vid(r['per-frame + blur'])[1]:.3f}; vs per-frame "
              f"filtered (w {result['blend']}): {vs_vid2vid(r['per-frame filtered'])[1]:.3f} at matched detail; "
              f"PSNR(vid2vid) - PSNR(per-frame) = {dpsnr:+.2f} dB",
              f"frames t >= {result['skip']} of {len(r['vid2vid'])} sequences of {result['data']}/{result['phase']}; "
              "detail = high-frequency energy / the real frames' (luma, sigma 1.5); aligned = in-place gain on the "
              f"real high-pass; moving / still: E_warp on the pixels whose flow moves >= 0.5 px "
              f"({_cell(_percent(moving_share), '.1f')} % of the measured ones) / on the rest"]
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
