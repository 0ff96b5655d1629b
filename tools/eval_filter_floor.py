"""What the recursive-filter bar asks of a clip's own footage. The proof table's baseline "per-frame filtered"
(vid2vid.eval.postprocess.recursive_filter) smooths any video; a faithful video model reproduces the footage. This
measures the real frames, the real frames through the same filter, and the real frames Gaussian-blurred to the
filtered frames' detail (vid2vid.eval.detail.blur_to_detail), all on DIS flow between the real frames, frames
t >= 2 of each chunk, with E_warp split by motion. Where the footage flickers more than its filtered self at the
same detail ("real / filtered" > 1), a model that shows the footage as it is cannot pass below the filter at matched
detail on that clip (BENCHMARKS.md, issue 25: 4.3x on vtest.avi at 144x192).

    python tools/eval_filter_floor.py VIDEO_OR_FRAME_FOLDER... [--size HxW] [--frames 29] [--chunks 4] [--tail 0.15]

Each input is read whole (a video, or a folder of PNG/JPG frames), resized to --size (area, rounded to 8 bits),
and cut into --chunks chunks of --frames frames from the start of its last --tail share (1: the whole input); the
figures are means over all chunks of all inputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flow import get_estimator  # noqa: E402
from vid2vid.config import Size, parse_size  # noqa: E402
from vid2vid.errors import UserError, run_cli  # noqa: E402
from vid2vid.eval.detail import blur_to_detail, hf_energy  # noqa: E402
from vid2vid.eval.metrics import motion_split_warping_error, pair_flows, warping_error  # noqa: E402
from vid2vid.eval.postprocess import DEFAULT_WEIGHT, recursive_filter  # noqa: E402
from vid2vid.video_io import iter_frames  # noqa: E402

SKIP = 2  # frames left out at each chunk's start, as the proof table leaves out the video model's seed frames
ROWS = ("real frames", "filtered", "real blurred to filtered's detail")


def chunks(path: str, size: Size | None, frames: int, count: int, tail: float) -> list[torch.Tensor]:
    """Up to `count` chunks [frames,3,H,W] in [0, 1] (8-bit values) from the start of the input's last `tail`."""
    video = [torch.from_numpy(np.ascontiguousarray(f)) for f in iter_frames(path)]
    start = int(len(video) * (1 - tail))
    if len(video) - start < frames:
        raise UserError(f"{path}: {len(video)} frames, its last {tail:g} holds {len(video) - start}, fewer than "
                        f"--frames {frames}; pass a smaller --frames or a larger --tail")
    out = []
    for first in list(range(start, len(video) - frames + 1, frames))[:count]:
        x = rearrange(torch.stack(video[first:first + frames]), "t h w c -> t c h w").float() / 255
        if size is not None:
            x = (F.interpolate(x, size=(size.h, size.w), mode="area") * 255).round() / 255
        out.append(x)
    return out


def measure(real: torch.Tensor, estimator=None) -> dict[str, dict[str, float]]:
    """real [T,3,H,W] in [0, 1] -> per row of ROWS: e_warp, moving, still (x1 on the 0..1 scale; None -> nan) and
    detail (hf_energy / the real frames'), on frames t >= SKIP."""
    estimator = estimator or get_estimator("dis")
    filtered = (recursive_filter(real, DEFAULT_WEIGHT) * 255).round().clamp(0, 255) / 255
    real, filtered = real[SKIP:], filtered[SKIP:]
    _, blurred = blur_to_detail(real, hf_energy(filtered))
    flows = pair_flows(estimator, real * 2 - 1)
    out = {}
    for name, video in zip(ROWS, (real, filtered, blurred)):
        split = motion_split_warping_error(video, flows)
        out[name] = {"e_warp": warping_error(video, flows).value,
                     "moving": np.nan if split["moving"] is None else split["moving"],
                     "still": np.nan if split["still"] is None else split["still"],
                     "detail": hf_energy(video) / max(hf_energy(real), 1e-12)}
    return out


def ratio(result: dict[str, dict[str, float]]) -> float:
    """E_warp of the real frames at the filtered frames' detail / the filtered frames' (nan when both are 0)."""
    blurred, filtered = result[ROWS[2]]["e_warp"], result[ROWS[1]]["e_warp"]
    return blurred / filtered if filtered > 0 else (np.inf if blurred > 0 else np.nan)


def mean_results(results: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {row: {k: float(np.nanmean([r[row][k] for r in results])) for k in results[0][row]} for row in ROWS}


def format_table(result: dict[str, dict[str, float]]) -> str:
    lines = ["row | E_warp x1e3 | moving x1e3 | still x1e3 | detail", "---|---|---|---|---"]
    for row in ROWS:
        r = result[row]
        lines.append(f"{row} | {r['e_warp'] * 1e3:.3f} | {r['moving'] * 1e3:.3f} | {r['still'] * 1e3:.3f} | "
                     f"{r['detail']:.3f}")
    lines.append(f"real / filtered at matched detail: {ratio(result):.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="videos or folders of frames")
    parser.add_argument("--size", default=None, metavar="HxW", help="resize every frame (area) first")
    parser.add_argument("--frames", type=int, default=29, help="frames per chunk (default 29)")
    parser.add_argument("--chunks", type=int, default=4, help="chunks per input (default 4)")
    parser.add_argument("--tail", type=float, default=1.0, help="share of each input, from its end, the chunks "
                        "start in (default 1: the whole input; 0.15: a held-out tail)")
    args = parser.parse_args()
    if args.frames < SKIP + 3 or args.chunks < 1 or not 0 < args.tail <= 1:
        raise UserError(f"--frames {args.frames} --chunks {args.chunks} --tail {args.tail}: need frames >= "
                        f"{SKIP + 3}, chunks >= 1 and 0 < tail <= 1 (e.g. --frames 29 --chunks 4 --tail 0.15)")
    size = None if args.size is None else parse_size(args.size, "--size")
    estimator = get_estimator("dis")
    results = [measure(c, estimator) for path in args.inputs
               for c in chunks(path, size, args.frames, args.chunks, args.tail)]
    print(format_table(mean_results(results)))
    print(f"{len(results)} chunks of {args.frames} frames, frames t >= {SKIP}; DIS flow between the real frames; "
          f"the filter: w {DEFAULT_WEIGHT}, DIS between consecutive frames")


if __name__ == "__main__":
    sys.exit(run_cli("eval_filter_floor", main))
