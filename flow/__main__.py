"""Command line of the flow package.

    python -m flow A.png B.png --out f.flo [--viz f.png] [--model raft_small|raft_large|dis|farneback]
                   [--weights PATH] [--iters N]
    python -m flow train --data ROOT --model raft_small --steps N --out DIR [options]

Bad input (missing file, wrong weights, ...) or an OSError prints `flow: error: <message>` on stderr and exits
with code 2; Ctrl-C exits with 130 (flow.errors.run_command, the runner vid2vid and its tools use too).
"""

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from flow.errors import FlowError, run_command
from flow.io import atomic_path

# Imports inside the command functions are on purpose: the estimators (OpenCV, RAFT weights) and the RAFT trainer
# load only for the command that runs them.

MODELS = ("raft_small", "raft_large", "dis", "farneback")


def estimate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flow", description="Optical flow from image A to image B "
                                     "(`python -m flow train --help` for training RAFT).")
    parser.add_argument("image1", type=Path, help="first image (PNG/JPG)")
    parser.add_argument("image2", type=Path, help="second image, same size")
    parser.add_argument("--out", type=Path, required=True, help="output .flo (Middlebury format)")
    parser.add_argument("--viz", type=Path, help="also write a colour-wheel visualisation (PNG)")
    parser.add_argument("--model", default="raft_small", help=f"one of {', '.join(MODELS)} (also dis_fast, "
                        "dis_ultrafast); default raft_small")
    parser.add_argument("--weights", help="RAFT checkpoint (torchvision or original format, or from `flow train`); "
                        "default: torchvision's file in the torch hub cache")
    parser.add_argument("--iters", type=int, default=12, help="RAFT iterations (default 12)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    return parser


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flow train", description="Train RAFT on frames with exact flow "
                                     "(<root>/<phase>_B/<seq>/*.png and <root>/<phase>_flow/<seq>/fw_*.flo, bw_*.flo).")
    parser.add_argument("--data", type=Path, required=True, help="dataset root (phases train, test)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (weights, log.jsonl, report.json)")
    parser.add_argument("--model", default="raft_small", choices=("raft_small", "raft_large"))
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", help="random crop HxW (default: whole frames)")
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--iters", type=int, default=12, help="RAFT iterations while training")
    parser.add_argument("--eval-iters", type=int, default=12, help="RAFT iterations for the held-out EPE")
    parser.add_argument("--eval-pairs", type=int, help="evaluate on the first N test pairs only")
    parser.add_argument("--no-augment", action="store_true", help="no random flips (crops still apply)")
    parser.add_argument("--warm-start", type=float, default=0.0, metavar="P",
                        help="probability that a pair starts from the previous pair's flow carried forward plus "
                        "noise, as in video mode (default 0: always from zero); 0.5 trains for both")
    parser.add_argument("--init-noise", type=float, default=1.0, metavar="PX",
                        help="largest amplitude of the smooth noise added to exact warm starts (default 1 px)")
    parser.add_argument("--own-flow", type=float, default=0.0, metavar="F",
                        help="fraction of warm starts carried from the model's own flow for the previous pair "
                        "instead of the exact one (teaches it to repair its own errors; costs a forward pass)")
    parser.add_argument("--own-chain", type=int, default=1, metavar="N",
                        help="own-flow starts come from video mode run over the last 1..N frames (default 1), so "
                        "the model also sees errors carried over several frames; costs up to N forward passes")
    parser.add_argument("--gamma", type=float, default=0.8, help="sequence loss weight decay")
    parser.add_argument("--init", help="start from these weights (fine-tuning) instead of random ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    return parser


def parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise FlowError(f"--crop {text!r}: write the size as HxW, e.g. 96x128") from None
    if height < 1 or width < 1:
        raise FlowError(f"--crop {text!r}: height and width must be positive")
    return height, width


def read_rgb(path: Path) -> np.ndarray:
    data = np.fromfile(path, np.uint8) if path.is_file() else np.zeros(0, np.uint8)  # imread would warn on stderr
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise FlowError(f"cannot read image {path}: it does not exist or is not a PNG/JPG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_png(path: Path, rgb: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise FlowError(f"cannot write {path}")


def run_estimate(args: argparse.Namespace) -> None:
    from flow.estimators import get_estimator
    from flow.io import write_flo
    from flow.viz import flow_to_rgb

    image1, image2 = read_rgb(args.image1), read_rgb(args.image2)
    if image1.shape != image2.shape:
        raise FlowError(f"{args.image1} is {image1.shape[1]}x{image1.shape[0]} but {args.image2} is "
                        f"{image2.shape[1]}x{image2.shape[0]} (width x height): the images must have the same size")
    estimator = get_estimator(args.model, weights=args.weights, iters=args.iters)
    to_tensor = lambda rgb: torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1.0  # noqa: E731
    with torch.inference_mode():
        flow = estimator(to_tensor(image1), to_tensor(image2))[0].permute(1, 2, 0).cpu().numpy()  # [H,W,2]
    write_flo(args.out, flow)
    if args.viz:
        write_png(args.viz, flow_to_rgb(flow))
    magnitude = np.linalg.norm(flow, axis=2)
    print(f"{args.out}: {flow.shape[1]}x{flow.shape[0]} flow, mean |flow| {magnitude.mean():.2f} px, "
          f"max {magnitude.max():.2f} px ({args.model})")


def run_train(args: argparse.Namespace) -> None:
    from flow.train import train

    train(args.data, args.out, model=args.model, steps=args.steps, batch_size=args.batch_size,
          crop=parse_size(args.crop) if args.crop else None, lr=args.lr, weight_decay=args.weight_decay,
          iters=args.iters, eval_iters=args.eval_iters, gamma=args.gamma, init=args.init, seed=args.seed,
          log_every=args.log_every, save_every=args.save_every, eval_pairs=args.eval_pairs, augment=not args.no_augment,
          warm_start=args.warm_start, init_noise=args.init_noise, own_flow=args.own_flow,
          own_chain=args.own_chain)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    training = bool(argv) and argv[0] == "train"
    args = train_parser().parse_args(argv[1:]) if training else estimate_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return run_command("flow", lambda: run_train(args) if training else run_estimate(args))


if __name__ == "__main__":
    sys.exit(main())
