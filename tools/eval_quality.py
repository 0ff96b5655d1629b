"""Segmentation consistency (mIoU, pixel accuracy), PSNR and L1 of generated videos on a dataset's held-out
sequences, with the real frames as the ceiling row; FID only with Inception weights you supply.

    python tools/eval_quality.py --data ROOT [--phase test] \
        --video per-frame=runs/compare/{seq}/per-frame.mp4 --video vid2vid=runs/compare/{seq}/vid2vid.mp4 \
        [--seg-steps 500] [--cache DIR] [--fid-weights inception_v3_google-0cc3c7bd.pth] [--json FILE] \
        [--detail-skip 2]

A small segmentation network is trained on the REAL frames of the training split (once: cached in
ROOT/.quality_segmenter, keyed by the training files and the segmenter settings), then segments the real
held-out frames (the ceiling) and every video. Videos pair with the held-out sequences by position: give one
per sequence, as NAME=PATTERN with {seq} standing for each sequence name, or NAME=PATH1,PATH2,... in the
order of the sorted sequence names. Frame t pairs with label map t; frames are resized to the label size.
mIoU: confusion matrix over all frames of all sequences, IoU per class (classes absent from both truth and
prediction excluded), mean over classes. PSNR / L1 against the real frames in [0, 1], mean over sequences.
detail: high-frequency energy mean |Y - Gaussian(Y, sigma 1.5)| of the luma (BT.601, 0..255) over the real
frames' on the same frames; aligned detail: sum h h_real / sum h_real^2 of the two high-passes (noise does not
raise it, blur lowers it); both over frames t >= --detail-skip, at the label maps' size (vid2vid.eval.detail).
The scores measure whether frames carry their labels' semantics as a segmenter trained on real frames sees
them; they do not measure temporal stability (tools/eval_flicker.py) nor realism beyond that.

Face datasets (<phase>_keypoints + <phase>_img; --task face, chosen by itself when ROOT/<phase>_keypoints exists):
no segmenter; landmarks are detected again on every frame (--landmarks dlib|mediapipe, default dlib, the detector
the original was trained with) and compared with the conditioning keypoints mapped into the rendered face crop:
NME (mean point distance / outer-eye-corner distance) and the share of frames with a face found, then PSNR, L1 and
detail. The real frames, cropped as the model renders them, are the floor row (the detector's own error). Videos
are face models' renders from each sequence's first frame; --face-size is the model's data.load_size (default: the
config's, else the videos' frame size), the crop the videos' frame size (vid2vid.eval.face_quality).

Pose datasets (<phase>_openpose + <phase>_img; --task pose, chosen by itself when ROOT/<phase>_openpose exists): body
keypoints are detected again on every frame by MediaPipe Holistic (the detector of prepare --labels pose) and compared
with the conditioning OpenPose keypoints: body error (mean distance / torso size: neck to mid-hip, else same-side
shoulder to hip, else the shoulder width), PCK@0.2 per body part (head, torso, arms, legs, feet, overall), the face's
NME on OpenPose's 68 face points, the share of frames with a person found, then PSNR, L1 and detail. Videos are pose
models' renders: each frame resized to --pose-size (the model's data.load_size; default the config's, else the
held-out frames' own size), its centre --pose-crop (data.crop_size; default the config's, else --pose-size), then the
central 2 * (W // 4 // 32 * 32) columns (data.pose.central_columns; --all-columns when the model keeps them all).
The real frames framed the same way are the floor row (vid2vid.eval.pose_quality).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from flow import atomic_path
from vid2vid.config import PoseConfig, parse_size
from vid2vid.data.faces import scan_faces
from vid2vid.data.sequences import LAYOUT, scan
from vid2vid.errors import UserError, run_cli
from vid2vid.eval.quality import REAL, evaluate_quality
from vid2vid.eval.segmenter import SegmenterSettings
from vid2vid.landmarks import BACKENDS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="eval_quality.py", description=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="ROOT", help="dataset root in the vid2vid layout")
    source.add_argument("--config", metavar="YAML", help="take data.root from this config (a synthetic dataset "
                        "is generated when absent)")
    p.add_argument("--phase", default="test", help="held-out split (default test)")
    p.add_argument("--train-phase", default="train", help="split the segmenter learns from (default train)")
    p.add_argument("--video", action="append", default=[], metavar="NAME=PATTERN",
                   help="a generated video set: PATTERN with {seq} (one video file or frame folder per held-out "
                   "sequence) or comma-separated paths in sequence order; repeatable")
    p.add_argument("--max-frames", type=int, default=0,
                   help="measure the first N frames of each sequence (0: all; videos must then match exactly)")
    s = SegmenterSettings()
    p.add_argument("--seg-steps", type=int, default=s.steps, help=f"segmenter training steps (default {s.steps})")
    p.add_argument("--seg-minutes", type=float, default=s.minutes,
                   help="also stop training after this many minutes (default 0: no time limit); a time limit "
                   "makes the segmenter, and so every mIoU, depend on the machine's speed")
    p.add_argument("--seg-width", type=int, default=s.width, help=f"segmenter width (default {s.width})")
    p.add_argument("--seg-max-side", type=int, default=s.max_side,
                   help=f"segmenter input: longer side in px (default {s.max_side})")
    p.add_argument("--ignore-ids", default="", metavar="ID,ID",
                   help="label ids neither learnt nor scored, e.g. 255 (default none)")
    p.add_argument("--cache", metavar="DIR", help="segmenter cache folder (default ROOT/.quality_segmenter)")
    p.add_argument("--fid-weights", metavar="PATH",
                   help="torchvision inception_v3 state dict (.pth or .safetensors) for FID; never downloaded")
    p.add_argument("--detail-skip", type=int, default=0, metavar="N",
                   help="leave the first N frames of each sequence out of the detail figures, e.g. the video model's "
                   "n_frames_G-1 seed frames (default 0)")
    p.add_argument("--task", default="auto", choices=("auto", "labels", "face", "pose"),
                   help="labels (segmentation consistency), face (landmark consistency) or pose (body keypoint "
                   "consistency); auto: face when ROOT/<phase>_keypoints exists, pose when ROOT/<phase>_openpose does")
    p.add_argument("--landmarks", default="dlib", choices=BACKENDS,
                   help="--task face: the detector run again on the frames (default dlib, the original's)")
    p.add_argument("--face-size", default=None, metavar="HxW",
                   help="--task face: the model's data.load_size, which the face crop is resized to (default: the "
                   "config's, else the videos' frame size)")
    p.add_argument("--pose-size", default=None, metavar="HxW",
                   help="--task pose: the model's data.load_size, which each frame is resized to (default: the "
                   "config's, else the held-out frames' own size)")
    p.add_argument("--pose-crop", default=None, metavar="HxW",
                   help="--task pose: the model's data.crop_size, the centre of --pose-size kept (default: the "
                   "config's, else --pose-size)")
    p.add_argument("--all-columns", action="store_true",
                   help="--task pose: the model keeps every column of its crop (data.pose.central_columns false; "
                   "default: the config's, else the central 2 * (W // 4 // 32 * 32) columns, as the original)")
    p.add_argument("--device", default="cpu", help="device (default cpu)")
    p.add_argument("--json", metavar="FILE", help="write every number and definition as JSON")
    return p.parse_args(argv)


def parse_ids(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"--ignore-ids {text!r}: expected comma-separated integers, e.g. 0,255") from None


def expand_videos(specs: list[str], names: list[str]) -> dict[str, list[str]]:
    """--video NAME=PATTERN|PATH,PATH,... -> {NAME: one path per sequence name}."""
    videos = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name or not value:
            raise UserError(f"--video {spec!r}: expected NAME=PATTERN (with {{seq}}) or NAME=PATH1,PATH2,...")
        if name in videos:
            raise UserError(f"--video {spec!r}: the name {name!r} is given twice")
        videos[name] = [value.replace("{seq}", n) for n in names] if "{seq}" in value else value.split(",")
    return videos


def data_config(args: argparse.Namespace):
    """The config's data section (--config), or None (--data)."""
    if args.data:
        return None
    from vid2vid.config import load_config

    return load_config(args.config).data


def data_root(args: argparse.Namespace, data) -> Path:
    if data is None:
        return Path(args.data)
    from vid2vid.data.synthetic import ensure_dataset

    return ensure_dataset(data)


def task_of(args: argparse.Namespace, root: Path) -> str:
    if args.task != "auto":
        return args.task
    for task in ("face", "pose"):
        if (root / f"{args.phase}_{LAYOUT[task][0]}").is_dir():
            return task
    return "labels"


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def format_face_table(result: dict) -> str:
    head = "model | NME | face found | PSNR dB | L1 | detail | aligned detail"
    lines = [head, "|".join("---" for _ in head.split("|"))]
    for name, row in result["rows"].items():
        lines.append(" | ".join([name, _cell(row["nme"], ".4f"), _cell(row["found"], ".3f"), _cell(row["psnr"], ".2f"),
                                 _cell(row["l1"], ".4f"), _cell(row["detail"], ".3f"),
                                 _cell(row["detail_aligned"], ".3f")]))
    lines.append(f"\nlandmarks by {result['landmarks']} on face crops of {result['crop_size']} (resized to "
                 f"{result['load_size']}); the {REAL!r} row is the floor (the detector against the conditioning "
                 f"keypoints); {len(result['sequences'])} sequences of {result['dataset']}/{result['phase']}, "
                 f"{sum(result['frames'])} frames")
    return "\n".join(lines)


def format_pose_table(result: dict) -> str:
    head = ("model | body error | PCK@0.2 | head | torso | arms | legs | feet | face NME | person found | PSNR dB | L1 "
            "| detail | aligned detail")
    lines = [head, "|".join("---" for _ in head.split("|"))]
    for name, row in result["rows"].items():
        pck = row["pck"]
        lines.append(" | ".join([name, _cell(row["error"], ".4f"), _cell(pck["overall"], ".3f"),
                                 *(_cell(pck[g], ".3f") for g in ("head", "torso", "arms", "legs", "feet")),
                                 _cell(row["face_nme"], ".4f"), _cell(row["found"], ".3f"), _cell(row["psnr"], ".2f"),
                                 _cell(row["l1"], ".4f"), _cell(row["detail"], ".3f"),
                                 _cell(row["detail_aligned"], ".3f")]))
    real = result["rows"][REAL]
    torso = ", ".join(f"{k} {v}" for k, v in real["torso"].items() if v)
    columns = "its central columns" if result["central_columns"] else "every column"
    lines.append(f"\nbody keypoints by {result['detector']} on {result['view_size']} views (frames resized to "
                 f"{result['load_size']}, the centre {result['crop_size']}, {columns}); the {REAL!r} row is the floor "
                 f"(the detector against the conditioning keypoints); torso size (its frames with a person found): "
                 f"{torso or 'none'}; {real['skipped']} frames without a person skipped; "
                 f"{len(result['sequences'])} sequences of {result['dataset']}/{result['phase']}, "
                 f"{sum(result['frames'])} frames")
    return "\n".join(lines)


def format_table(result: dict) -> str:
    with_fid = any(row["fid"] is not None for row in result["rows"].values())
    head = "model | mIoU | pixel acc. | PSNR dB | L1 | detail | aligned detail" + (" | FID" if with_fid else "")
    lines = [head, "|".join("---" for _ in head.split("|"))]
    for name, row in result["rows"].items():
        cells = [name, _cell(row["miou"], ".3f"), _cell(row["pixel_accuracy"], ".3f"), _cell(row["psnr"], ".2f"),
                 _cell(row["l1"], ".4f"), _cell(row["detail"], ".3f"), _cell(row["detail_aligned"], ".3f")]
        cells += [_cell(row["fid"], ".1f")] if with_fid else []
        lines.append(" | ".join(cells))
    seg = result["segmenter"]
    how = "loaded from" if seg["from_cache"] else f"trained in {seg['train_seconds']:.0f} s, stored in"
    lines.append(f"\nsegmenter: {seg['steps_done']} steps on {seg['train_frames']} real {seg['train_phase']} "
                 f"frames at {seg['train_size']}, {len(seg['classes'])} classes; {how} {seg['cache']}")
    lines.append(f"the {REAL!r} row is the ceiling; mIoU from position alone (mean-colour frames): "
                 f"{seg['prior_only_miou']:.3f}; {len(result['sequences'])} sequences of "
                 f"{result['dataset']}/{result['phase']}, {sum(result['frames'])} frames")
    return "\n".join(lines)


def log(message: str) -> None:
    print(f"eval_quality: {message}", file=sys.stderr, flush=True)


def run_labels(args: argparse.Namespace, root: Path) -> dict:
    names = [s.name for s in scan(root, args.phase)]
    settings = SegmenterSettings(steps=args.seg_steps, minutes=args.seg_minutes, width=args.seg_width,
                                 max_side=args.seg_max_side, ignore_ids=parse_ids(args.ignore_ids))
    result = evaluate_quality(root, args.phase, expand_videos(args.video, names), settings=settings,
                              train_phase=args.train_phase, cache_dir=args.cache, max_frames=args.max_frames,
                              fid_weights=args.fid_weights, device=args.device, detail_skip=args.detail_skip, log=log)
    print(format_table(result))
    return result


def run_face(args: argparse.Namespace, root: Path, data) -> dict:
    from vid2vid.eval.face_quality import evaluate_face_quality

    names = [s.name for s in scan_faces(root, args.phase)]
    load = parse_size(args.face_size, "--face-size") if args.face_size else data.load_size if data else None
    crop = data.crop_size if data and not args.face_size else None
    result = evaluate_face_quality(root, args.phase, expand_videos(args.video, names), landmarks=args.landmarks,
                                   load_size=load, crop_size=crop, max_frames=args.max_frames,
                                   detail_skip=args.detail_skip, log=log)
    print(format_face_table(result))
    return result


def run_pose(args: argparse.Namespace, root: Path, data) -> dict:
    from vid2vid.data.poses import scan_poses
    from vid2vid.eval.pose_quality import evaluate_pose_quality

    names = [s.name for s in scan_poses(root, args.phase, PoseConfig(openpose_only=True, mask=False))]
    load = parse_size(args.pose_size, "--pose-size") if args.pose_size else data.load_size if data else None
    crop = parse_size(args.pose_crop, "--pose-crop") if args.pose_crop else data.crop_size if data else None
    central = not args.all_columns and (data.pose.central_columns if data else True)
    result = evaluate_pose_quality(root, args.phase, expand_videos(args.video, names), load_size=load,
                                   crop_size=crop, central=central, max_frames=args.max_frames,
                                   detail_skip=args.detail_skip, log=log)
    print(format_pose_table(result))
    return result


TASKS = {"face": run_face, "pose": run_pose}


def run(args: argparse.Namespace) -> None:
    data = data_config(args)
    root = data_root(args, data)
    task = task_of(args, root)
    result = TASKS[task](args, root, data) if task in TASKS else run_labels(args, root)
    if args.json:
        try:
            with atomic_path(args.json) as tmp:
                Path(tmp).write_text(json.dumps(result, indent=1))
        except OSError as e:
            raise UserError(f"cannot write {args.json}: {e.strerror or e}") from None


def main(argv: list[str] | None = None) -> int:
    return run_cli("eval_quality.py", lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
