"""Command line: `vid2vid <command> ...`. Parses arguments and calls the library; no logic here."""

from __future__ import annotations

import argparse
import sys

from vid2vid.errors import run_cli


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


def cmd_config(args: argparse.Namespace) -> None:
    import yaml

    from vid2vid.config import NOT_YET_USED, to_dict

    print(mark_keys(yaml.safe_dump(to_dict(_load(args)), sort_keys=False), NOT_YET_USED), end="")


def mark_keys(text: str, notes: dict[str, str]) -> str:
    """YAML as safe_dump writes it (2-space indents) with `  # not yet used: <note>` after each key in notes."""
    lines, path = [], []
    for line in text.splitlines():
        key = line.strip().split(":", 1)[0]
        if line.strip() and not line.lstrip().startswith("-"):
            path = path[: (len(line) - len(line.lstrip())) // 2] + [key]
            note = notes.get(".".join(path))
            line += f"  # not yet used: {note}" if note else ""
        lines.append(line)
    return "\n".join(lines) + "\n"


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
    summary = prepare_video(args.input, args.out, labels=args.labels, size=size, seq_len=args.seq_len,
                            test_fraction=args.test_fraction)
    print(summary)


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
    p.add_argument("--labels", default="edges", help="edges (Canny, label_nc 2) or kmeans:K (Lab colour clusters)")
    p.add_argument("--size", default=None, help="resize frames to HxW (default: keep)")
    p.add_argument("--seq-len", type=int, default=30, help="frames per sequence")
    p.add_argument("--test-fraction", type=float, default=0.2, help="last fraction of the video held out as test_*")
    p.set_defaults(func=cmd_prepare_video)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("vid2vid", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
