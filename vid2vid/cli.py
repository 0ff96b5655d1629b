"""Command line: `vid2vid <command> ...`. Parses arguments and calls the library; no logic here."""

from __future__ import annotations

import argparse
import sys

from vid2vid.errors import UserError, run_cli

# Imports inside the command functions are on purpose: each command imports what it runs, so that `vid2vid --help`,
# argument errors and the light commands start without importing torch and the models (heavy).


SMOOTH_HELP = ("landmarks smoothed over time by the One-Euro filter: none (default), one-euro (min_cutoff 1 Hz, beta "
               "0.2) or one-euro:MIN_CUTOFF,BETA")


def _add_config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--config", "-c", required=required, help="YAML config file, e.g. configs/demo.yaml")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override config keys, e.g. --set train.max_steps=100 data.batch_size=2")


def _load(args: argparse.Namespace):
    from vid2vid.config import load_config

    return load_config(args.config, args.overrides)


def cmd_check_data(args: argparse.Namespace) -> None:
    cfg = _load(args)
    from vid2vid.data.check import check_dataset

    summary = check_dataset(cfg.data)
    print(summary.format())
    if args.draw is not None:
        from vid2vid.data.draw import draw_dataset

        drawn = draw_dataset(cfg.data, args.draw, args.frames)
        print(f"drew what the generator sees for {drawn} frames into {args.draw} (<seq>/<frame>.npy: the frame's "
              "condition [C,H,W]; .png: a picture of it)")


def cmd_config(args: argparse.Namespace) -> None:
    import yaml

    from vid2vid.config import to_dict

    print(yaml.safe_dump(to_dict(_load(args)), sort_keys=False), end="")


def cmd_train(args: argparse.Namespace) -> None:
    from vid2vid.train import train

    train(_load(args), resume=args.resume)


def cmd_prepare_synthetic(args: argparse.Namespace) -> None:
    from vid2vid.config import parse_size
    from vid2vid.data.synthetic import generate_synthetic

    generate_synthetic(args.out, sequences=args.sequences, test_sequences=args.test_sequences,
                       frames=args.frames, size=parse_size(args.size, "--size"), seed=args.seed)
    print(f"wrote {args.out}")


def cmd_prepare_video(args: argparse.Namespace) -> None:
    from vid2vid.config import parse_size
    from vid2vid.data.prepare import prepare_video

    size = parse_size(args.size, "--size") if args.size else None
    split = dict(size=size, seq_len=args.seq_len, test_fraction=args.test_fraction, test_seq_len=args.test_seq_len,
                 max_frames=args.max_frames)
    if args.labels != "pose" and (args.openpose is not None or args.mask or args.all_people):
        flag = f"--openpose {args.openpose}" if args.openpose else "--mask" if args.mask else "--all-people"
        raise UserError(f"{flag}: only with --labels pose (the labels here are {args.labels})")
    if args.labels == "face":
        from vid2vid.data.prepare_face import prepare_face_video
        from vid2vid.landmarks.smoothing import parse_smoothing

        smooth = parse_smoothing(args.smooth or "none", "--smooth")
        print(prepare_face_video(args.input, args.out, landmarks=args.landmarks or "dlib", smooth=smooth, **split))
        return
    for flag, value in (("--landmarks", args.landmarks), ("--smooth", args.smooth)):
        if value not in (None, "none"):
            raise UserError(f"{flag} {value}: only with --labels face (the labels here are {args.labels})")
    if args.labels == "pose":
        from vid2vid.data.prepare_pose import prepare_pose_video

        print(prepare_pose_video(args.input, args.out, openpose=args.openpose, mask=args.mask,
                                 all_people=args.all_people, **split))
        return
    print(prepare_video(args.input, args.out, labels=args.labels, **split))


def cmd_render(args: argparse.Namespace) -> None:
    from vid2vid.landmarks.smoothing import parse_smoothing
    from vid2vid.render import RenderOptions, render_all, render_video

    smooth = parse_smoothing(args.smooth, "--smooth") if args.smooth is not None else None  # before the model loads
    options = RenderOptions(smooth=smooth, **{key: getattr(args, key) for key in (
        "palette", "labels", "landmarks", "centres", "pose_normalize", "first_frame", "instances", "size", "start",
        "max_frames", "fps", "crf", "frames_dir", "side_by_side", "overwrite", "keep_partial", "device", "precision",
        "channels_last", "compile", "feature_cluster", "style", "seed")})
    if args.all is not None:
        if args.input is not None or args.instances is not None:
            raise UserError("render --all PHASE_DIR OUTPUT_DIR: give no INPUT and no --instances "
                             "(each sequence brings its own <phase>_inst)")
        summaries = render_all(args.checkpoint, args.all, args.output, options)
    elif args.input is None:
        raise UserError("render: give INPUT OUTPUT, or --all PHASE_DIR OUTPUT_DIR")
    else:
        summaries = [render_video(args.checkpoint, args.input, args.output, options)]
    for summary in summaries:
        print(summary)


def _add_render_parser(sub) -> None:
    from vid2vid.checkpoint import add_generation_options

    p = sub.add_parser("render", help="render label maps into a video with an exported model",
                       description="Render a folder of label-id PNGs (or colour-coded PNGs with --palette, or a "
                                   "dataset sequence such as data/x/test_A/seq0, or a video file converted to labels "
                                   "as `vid2vid prepare video` does) into an H.264 video or a folder of PNG frames. "
                                   "A face model renders a keypoint sequence folder or a talking-head video (--labels "
                                   "face); a pose model (motion transfer) a prepared pose sequence such as "
                                   "data/pose/test_openpose/seq_0000 or a video of a person (--labels pose: its "
                                   "keypoints, and the body mask when the model reads one, detected per frame by "
                                   "MediaPipe Holistic and drawn as the pose dataset draws them).")
    p.add_argument("input", nargs="?", help="folder of label PNGs, a dataset sequence folder, or a video file "
                   "(with --labels; a pose model: a video of a person or <root>/<phase>_openpose/<seq>)")
    p.add_argument("output", help="output .mp4/.mkv/.mov (or a folder with --frames-dir; with --all a folder)")
    p.add_argument("--checkpoint", "-m", required=True, help="exported model (<train.out_dir>/export)")
    p.add_argument("--all", default=None, metavar="PHASE_DIR", help="render every sequence of a split (e.g. "
                   "data/x/test_A) into OUTPUT/<seq>.mp4")
    p.add_argument("--first-frame", default=None, metavar="image-model:PATH|real:DIR|zeros",
                   help="video model: where the first n_frames_G-1 frames come from (default: the model's "
                        "model.first_frame; real = the sequence's <phase>_B frames). A pose model takes zeros or "
                        "image-model:PATH only: the pose source's own frames never seed a motion transfer")
    p.add_argument("--palette", default=None, metavar="FILE",
                   help="colour-coded label PNGs: a YAML or JSON list of [R, G, B] per label id (id = position); "
                        "default: the model's data.palette. Single-channel PNGs stay ids")
    p.add_argument("--labels", default=None, metavar="edges|kmeans:K|face|pose",
                   help="a video file INPUT: its frames become labels as `vid2vid prepare video --labels` makes them "
                        "(a face model: face, the landmarks detected per frame; a pose model: pose, the person's "
                        "keypoints detected per frame, frames without a person drawn empty and counted)")
    p.add_argument("--landmarks", default=None, choices=["dlib", "mediapipe"],
                   help="a face model's video INPUT: the landmark detector (default dlib, the original's)")
    p.add_argument("--smooth", default=None, metavar="none|one-euro[:MIN_CUTOFF,BETA]",
                   help=SMOOTH_HELP + " (a face model's video INPUT)")
    p.add_argument("--centres", default=None, metavar="FILE",
                   help="a video file INPUT with kmeans labels: the dataset's kmeans_centres.json (written by "
                        "prepare video), so the ids are the model's; without it the clusters are fitted on INPUT")
    p.add_argument("--pose-normalize", default=None, metavar="DATA_ROOT",
                   help="a pose model: map the source person's keypoints onto the target person of the dataset the "
                        "model was trained on (DATA_ROOT/train_openpose) by Everybody Dance Now's global pose "
                        "normalisation: a scale and a vertical position, interpolated between the two people's "
                        "farthest and closest ankle positions and their heights there. Needs the whole body (neck "
                        "to ankles) in both; the input is read twice: all its keypoints first (its near and far "
                        "positions need the whole video: the frames rendered, --start/--max-frames), then rendered")
    p.add_argument("--instances", default=None, metavar="DIR", help="instance-id PNGs, one per label map")
    p.add_argument("--size", default=None, metavar="HxW", help="resize the inputs (labels nearest); a pose model's "
                   "video: the size its frames are resized to before detection and drawing (default: the model's "
                   "data.load_size; give the size of the training frames when prepare --size made them another)")
    p.add_argument("--start", type=int, default=0, help="first input frame")
    p.add_argument("--max-frames", type=int, default=None, help="render at most this many frames")
    p.add_argument("--fps", type=float, default=None, help="frame rate (default: the export's render.fps)")
    p.add_argument("--crf", type=int, default=None, help="H.264 quality, 0-51 (default: the export's render.crf)")
    p.add_argument("--frames-dir", action="store_true", help="write OUTPUT/00000.png, 00001.png, ... instead")
    p.add_argument("--side-by-side", action="store_true", help="write labels | output side by side (a pose "
                   "model: source | drawn keypoints | output, as the model sees them)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--keep-partial", action="store_true",
                   help="on Ctrl-C / SIGTERM, finish the output with the frames rendered so far (default: remove it); "
                        "exit status 130 / 143 either way")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default=None, choices=("fp32", "bf16", "fp16"),
                   help="default: the export's render.precision (bf16 on a CPU without AVX512-BF16 is emulated)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format for the convolutions")
    p.add_argument("--compile", action="store_true", help="torch.compile the generator")
    add_generation_options(p)
    p.set_defaults(func=cmd_render)


def cmd_import(args: argparse.Namespace) -> None:
    from vid2vid.interop.import_originals import import_checkpoint

    if len(args.paths) < 2:
        raise UserError("import: give CHECKPOINT... OUT_EXPORT (the original checkpoint, then our export folder)")
    print(import_checkpoint(args.arch, args.paths[:-1], args.paths[-1], preset=args.preset, opt_file=args.opt_file,
                            options=args.options, features=args.features, encoder=args.encoder))


def _add_import_parser(sub) -> None:
    p = sub.add_parser("import", help="convert a released pix2pixHD / SPADE / vid2vid checkpoint into an export",
                       description="Convert an original NVIDIA generator checkpoint (read with weights_only=True) "
                                   "into our export folder (config.yaml + generator.safetensors), strictly: every "
                                   "key used, every parameter set. Options use the ORIGINAL's names.")
    p.add_argument("arch", choices=("pix2pixhd", "spade", "vid2vid", "vid2vid-single"),
                   help="the original project (vid2vid-single: vid2vid's single-frame first-frame generator)")
    p.add_argument("paths", nargs="+", metavar="CHECKPOINT... OUT_EXPORT",
                   help="the original latest_net_G*.pth, then the export folder to write")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--preset", default=None, help="a released model's options: label2city_1024p (pix2pixhd); "
                       "coco, ade20k, cityscapes (spade); label2city_2048, label2city_1024_g1, edge2face_512 (vid2vid)")
    group.add_argument("--opt-file", default=None, metavar="opt.txt", help="the opt.txt the original training wrote")
    p.add_argument("--option", dest="options", nargs="+", action="extend", default=[], metavar="NAME=VALUE",
                   help="an original option by its original name, e.g. --option ngf=32 no_instance=True")
    p.add_argument("--features", default=None, metavar="features.npy",
                   help="edge2face's single-frame generator's feature file (vid2vid-single --preset edge2face_512; "
                        "required there): its training images' per-part features, read without running code (only "
                        "arrays are admitted) and stored as tensors in the export")
    p.add_argument("--encoder", default=None, metavar="latest_net_E.pth",
                   help="edge2face's single-frame generator's encoder (vid2vid-single --preset edge2face_512); "
                        "default: latest_net_E.pth in the generator checkpoint's folder. Rendering encodes the real "
                        "frame with it and takes the nearest training image's features (without a real frame: "
                        "training image --feature-cluster K, default 0)")
    p.set_defaults(func=cmd_import)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vid2vid", description="Video-to-video translation with temporal consistency.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model from a config")
    _add_config_args(p)
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="latest|PATH",
                   help="continue from the latest checkpoint in train.out_dir, or from a checkpoint folder")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("config", help="print the resolved config (defaults, file, --set) as run folders store it")
    _add_config_args(p, required=False)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("check-data", help="validate every file of a dataset and print a summary")
    _add_config_args(p)
    p.add_argument("--draw", default=None, metavar="OUT", help="also write what the generator sees, per frame of "
                   "data.phase: OUT/<seq>/<frame>.npy (the frame's condition [C,H,W] after the test-phase "
                   "transforms) and a viewable .png")
    p.add_argument("--frames", type=int, default=None, metavar="N", help="with --draw: the first N frames of each "
                   "sequence (default: all)")
    p.set_defaults(func=cmd_check_data)

    prep = sub.add_parser("prepare", help="build a dataset in the vid2vid folder layout")
    prep_sub = prep.add_subparsers(dest="kind", required=True, metavar="KIND")
    p = prep_sub.add_parser("synthetic", help="procedural street scenes with exact labels, instances and flow")
    p.add_argument("out", help="output dataset folder")
    p.add_argument("--sequences", type=int, default=8, help="training sequences")
    p.add_argument("--test-sequences", type=int, default=2, help="held-out test sequences")
    p.add_argument("--frames", type=int, default=30, help="frames per sequence")
    p.add_argument("--size", default="128x256", help="frame size HxW")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_prepare_synthetic)

    p = prep_sub.add_parser("video", help="a paired dataset from any video: edge maps or colour clusters")
    p.add_argument("input", help="input video file (any container PyAV reads)")
    p.add_argument("out", help="output dataset folder")
    p.add_argument("--labels", default="edges", help="edges (Canny, label_nc 2), kmeans:K (Lab colour clusters; "
                   "the centres are saved as OUT/kmeans_centres.json for render --centres), or face (the original's "
                   "face layout: <phase>_img frames + <phase>_keypoints, 68 landmarks per frame) or pose (the "
                   "original's pose layout: <phase>_img + <phase>_openpose, OpenPose JSON per frame, by MediaPipe "
                   "Holistic, + <phase>_mask body masks)")
    p.add_argument("--landmarks", default=None, choices=["dlib", "mediapipe"],
                   help="with --labels face: the landmark detector (default dlib, the original's)")
    p.add_argument("--smooth", default=None, metavar="none|one-euro[:MIN_CUTOFF,BETA]",
                   help=SMOOTH_HELP + " (with --labels face)")
    p.add_argument("--openpose", default=None, metavar="DIR", help="with --labels pose: OpenPose's own JSON output "
                   "for this video (--write_json: one file per frame, matched by sorted name) instead of MediaPipe; "
                   "then no body masks unless --mask")
    p.add_argument("--mask", action="store_true", help="with --labels pose --openpose DIR: also write MediaPipe "
                   "Holistic's body masks")
    p.add_argument("--all-people", action="store_true", help="with --labels pose --openpose DIR: keep every person "
                   "OpenPose found (default: follow one person, the largest at first, and fill short gaps)")
    p.add_argument("--size", default=None, help="resize frames to HxW (default: keep)")
    p.add_argument("--seq-len", type=int, default=30, help="frames per sequence")
    p.add_argument("--test-fraction", type=float, default=0.2, help="last fraction of the video held out as test_*")
    p.add_argument("--test-seq-len", type=int, default=None, metavar="N", help="frames per held-out sequence "
                   "(default: --seq-len; 0: the whole held-out tail as one sequence)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="use only the first N frames of the "
                   "video")
    p.set_defaults(func=cmd_prepare_video)

    _add_render_parser(sub)
    _add_import_parser(sub)
    _add_demo_parser(sub)
    _add_app_parser(sub)
    return parser


DEMO_DEFAULTS = {"street": ("runs/demo", "configs/demo_image.yaml", "configs/demo.yaml"),
                 "face": ("runs/demo_face", "configs/demo_face_image.yaml", "configs/demo_face.yaml"),
                 "pose": ("runs/demo_pose", "configs/demo_pose_image.yaml", "configs/demo_pose.yaml")}
DEMO_ONLY = {"--video": ("face", "pose"), "--landmarks": ("face",), "--size": ("pose",), "--transfer": ("pose",)}


def cmd_demo(args: argparse.Namespace) -> None:
    from pathlib import Path

    from vid2vid.demo import POSE_SIZE, Demo, run_demo

    if not args.minutes > 0:
        raise UserError(f"--minutes: {args.minutes} must be > 0 (the demo's training budget), e.g. --minutes 20")
    for option, tasks in DEMO_ONLY.items():
        given = getattr(args, option.removeprefix("--"))
        if given is not None and args.task not in tasks:
            raise UserError(f"{option} {given}: only with --task {' or --task '.join(tasks)} (the {args.task} demo "
                            f"{'uses its synthetic dataset' if args.task == 'street' else 'takes no ' + option})")
    if args.task != "street" and args.segmenter_steps is not None:
        raise UserError(f"--segmenter-steps {args.segmenter_steps}: the {args.task} demo has no segmenter (its "
                        "frames are not segmented); leave it out")
    out, image_config, video_config = DEMO_DEFAULTS[args.task]
    path = {k: None if getattr(args, k) is None else Path(getattr(args, k)) for k in ("video", "transfer")}
    run_demo(Demo(args.minutes, Path(args.out or out) / f"{args.minutes:g}min", Path(args.image_config or image_config),
                  Path(args.video_config or video_config), args.overrides, args.device,
                  500 if args.segmenter_steps is None else args.segmenter_steps, task=args.task,
                  landmarks=args.landmarks, size=args.size or POSE_SIZE, **path))


def _add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="train a per-frame and a video model on the synthetic dataset (or your own "
                       "talking-head video: --task face; or a video of a person: --task pose) and compare them "
                       "(what `make demo` runs)")
    p.add_argument("--task", default="street", choices=("street", "face", "pose"), help="street (default): the "
                   "built-in synthetic street dataset; face: your talking-head video (--video), its last 20%% held "
                   "out; pose: your video of a person (--video), its last 20%% held out")
    p.add_argument("--video", default=None, metavar="FILE", help="--task face: the video of one talking face; --task "
                   "pose: the video of one person, seen head to feet")
    p.add_argument("--transfer", default=None, metavar="SOURCE", help="--task pose: a video of another person; after "
                   "training, their motion rendered by the video model as the trained person (normalised to them, "
                   "as `vid2vid render --labels pose --pose-normalize` does) into OUT/<minutes>min/transfer.mp4, "
                   "side by side with the source")
    p.add_argument("--size", default=None, metavar="HxW", help="--task pose: the size the video's frames are "
                   "prepared at (prepare --size; default 256x320; the models see them at 128x160)")
    p.add_argument("--landmarks", default=None, choices=["dlib", "mediapipe"], help="--task face: the landmark "
                   "detector (default: mediapipe when it can be imported, fast; else dlib)")
    p.add_argument("--minutes", type=float, default=20.0, help="training budget of the whole demo (default 20: "
                   "6 per-frame + 11 vid2vid + 2 segmenter, about 1 more to render and measure; face, pose: 7 + 12)")
    p.add_argument("--out", default=None, help="runs, videos and pictures go to OUT/<minutes>min (default runs/demo; "
                   "face: runs/demo_face, pose: runs/demo_pose, the prepared video in OUT/data)")
    p.add_argument("--image-config", default=None, help="the per-frame model's config (default "
                   "configs/demo_image.yaml; face: configs/demo_face_image.yaml; pose: configs/demo_pose_image.yaml)")
    p.add_argument("--video-config", default=None, help="the video model's config (default configs/demo.yaml; "
                   "face: configs/demo_face.yaml; pose: configs/demo_pose.yaml)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda")
    p.add_argument("--segmenter-steps", type=int, default=None, help="training steps of the quality metric's "
                   "segmenter (default 500; cached; street only)")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override keys of both configs (e.g. a smaller dataset)")
    p.set_defaults(func=cmd_demo)


def cmd_app(args: argparse.Namespace) -> None:
    from vid2vid.app.serve import serve

    serve(args.exports or ["runs"], host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
          workers=args.jobs)


def _add_app_parser(sub) -> None:
    p = sub.add_parser("app", help="try exported models in your browser: a local web page (your video, paint, live)",
                       description="Start a local web server with one page to try the exported models found under "
                                   "--exports: render your video (or a dataset sequence) and see input | labels | "
                                   "output with the warping error, paint a label map into a clip, or stream your "
                                   "webcam through a model. Prints the URL; Ctrl-C stops it.")
    p.add_argument("--exports", nargs="+", action="extend", default=[], metavar="DIR",
                   help="folders searched for exported models (default: runs)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only; "
                   "another address warns: anyone reaching it can use the server, and browsers give the camera only "
                   "to localhost or https pages)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: any free port)")
    p.add_argument("--max-upload-mb", type=int, default=200, help="largest upload accepted (default 200 MB)")
    p.add_argument("--jobs", type=int, default=2, help="renders running at once (default 2; others wait)")
    p.set_defaults(func=cmd_app)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("vid2vid", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
