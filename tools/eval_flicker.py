"""Temporal warping error of videos (and tOF against a reference), exactly defined.

    python tools/eval_flicker.py out.mp4 [more videos or frame folders] [--reference real.mp4]

Definition (Lai et al., ECCV 2018, as their evaluation code computes it): frames O_t in [0, 1];
F_t = flow(R_t -> R_t+1), B_t = flow(R_t+1 -> R_t) on reference frames R (the --reference
video when given, so every video is measured on the same flow; otherwise each video's own
frames); M_t = pixels that pass the forward-backward check |F + warp(B, F)|^2 <= 0.01 (|F|^2 +
|warp(B, F)|^2) + 0.5, are not on a motion boundary (|grad u|^2 + |grad v|^2 <= 0.01 |F|^2 + 0.002)
and, unless --no-oob-mask, do not leave the frame;
E_pair(t) = sum_x M_t sum_c (warp(O_t+1, F_t) - O_t)^2 / (3 sum_x M_t) (an empty M_t uses all
pixels; such pairs are counted); E_warp = mean of E_pair over pairs. The table shows E_warp x 1e3;
--json holds the raw values. tOF (TecoGAN, with --reference): mean |Farneback(R_t, R_t+1) -
Farneback(O_t, O_t+1)| in pixels over the centre crop, averaged over pairs skipping 2 at each end.
"""

import argparse
import csv
import hashlib
import json
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import torch

from flow import ClassicFlow, atomic_path, get_estimator, read_flo, rgb_to_grey, write_flo
from flow.estimators import CLASSIC_NAMES
from vid2vid.config import Size, parse_size
from vid2vid.data.transforms import apply_image, centre_transform
from vid2vid.errors import UserError, run_cli
from vid2vid.eval.metrics import (
    WarpingError,
    farneback_flow,
    frame_pair_batches,
    pair_flows,
    pair_warping_errors,
    tof_pair,
    tof_summary,
)
from vid2vid.video_io import iter_frames, probe

OPENCV_WORKERS = 2  # threads computing OpenCV flow (DIS, Farneback) in parallel
FLOW_CHOICES = "dis | dis_fast | dis_ultrafast | farneback | raft_small | raft_large | gt:DIR"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="eval_flicker.py",
        description=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders of PNG/JPG frames")
    parser.add_argument("--reference", metavar="REF",
                        help="compute flow once on this video and measure every VIDEO on it (also enables tOF)")
    parser.add_argument("--flow", default="dis", metavar="METHOD",
                        help=f"{FLOW_CHOICES} (default dis = OpenCV DIS medium on grey round(255 x) RGB->GRAY); "
                        "gt:DIR reads exact flows DIR/fw_00000.flo (frame t -> t+1) and bw_00000.flo (t+1 -> t)")
    parser.add_argument("--weights", metavar="PATH", help="RAFT checkpoint (torchvision or original format)")
    parser.add_argument("--iters", type=int, default=12, help="RAFT iterations (default 12)")
    parser.add_argument("--device", default="cpu", help="device for RAFT and the warp (default cpu)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--size", metavar="HxW", help="compute everything at this size (frames resized, flow there)")
    size.add_argument("--max-side", type=int, metavar="N",
                      help="scale down so that the longer side of the flow source is at most N")
    parser.add_argument("--frames", default=":", metavar="a:b", help="frame range [a, b) (default: all)")
    parser.add_argument("--no-oob-mask", action="store_true",
                        help="keep pixels whose flow leaves the frame (as Lai et al.'s code does)")
    parser.add_argument("--no-tof", action="store_true",
                        help="skip tOF with --reference (it runs Farneback on every pair of every video)")
    parser.add_argument("--batch", type=int, default=8, help="frame pairs per step (default 8)")
    parser.add_argument("--json", metavar="FILE", help="write every number and setting as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write per-pair values as CSV")
    parser.add_argument("--plot", metavar="PNG", help="plot per-pair error over time (drawn with OpenCV)")
    parser.add_argument("--cache", metavar="DIR", help="store / reuse the forward and backward flows here")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------------
# Settings and inputs
# ------------------------------------------------------------------------------------------------


def parse_range(text: str) -> tuple[int, int | None]:
    """'a:b' -> (a, b) with b None for open; both >= 0 and b >= a + 2 (one pair at least)."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0] else 0
        stop = int(parts[1]) if parts[1] else None
    except ValueError:
        raise UserError(f"--frames {text!r}: expected a:b with integers, e.g. 0:40 or 10: or :100") from None
    if start < 0 or (stop is not None and stop < start + 2):
        raise UserError(f"--frames {text!r}: need 0 <= a and b >= a + 2 (at least one pair of frames)")
    return start, stop


def working_size(native: Size, args: argparse.Namespace) -> Size:
    """The size the metric is computed at: --size, --max-side applied to `native`, or `native`."""
    if args.size:
        size = parse_size(args.size, "--size")
        if size.h < 1 or size.w < 1:
            raise UserError(f"--size {args.size}: both sides must be >= 1")
        return size
    if args.max_side:
        if args.max_side < 1:
            raise UserError(f"--max-side {args.max_side}: must be >= 1")
        scale = min(1.0, args.max_side / max(native))
        return Size(max(1, round(native.h * scale)), max(1, round(native.w * scale)))
    return native


def resize_to(image: np.ndarray, size: Size) -> np.ndarray:
    """float [H,W,C] -> [size.h, size.w, C] by the dataset transforms' rule (area when shrinking, else bilinear)."""
    return apply_image(image, centre_transform(load_size=size, crop_size=size))


def resize_flow(flow: np.ndarray, size: Size) -> np.ndarray:
    """flow [H,W,2] in pixels -> [size.h, size.w, 2], displacements scaled with the image."""
    height, width = flow.shape[:2]
    if (height, width) == tuple(size):
        return flow
    resized = resize_to(flow, size)
    return resized * np.array([size.w / width, size.h / height], np.float32)


def stream_frames(path: str, size: Size, start: int, stop: int | None) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """Frames start..stop-1 of a video or folder at `size`: (float32 [3,H,W] in [0, 1], grey uint8 [H,W]),
    the grey image made as flow.classic makes it (round(255 x), RGB2GRAY)."""
    for index, frame in enumerate(iter_frames(path)):
        if stop is not None and index >= stop:
            return
        if index < start:
            continue
        if frame.shape[:2] == tuple(size):  # the same float values as below, in one pass to [3,H,W]
            image = torch.from_numpy(frame).permute(2, 0, 1).contiguous().float().div_(255.0)
        else:
            resized = resize_to(frame.astype(np.float32) / 255.0, size)
            frame = np.round(resized * 255).astype(np.uint8)
            image = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).contiguous()
        yield image, rgb_to_grey(frame)


FlowPair = tuple[torch.Tensor, torch.Tensor]  # fw, bw [K,2,H,W]
Frames = tuple[tuple[torch.Tensor, np.ndarray], ...]  # one (frame, grey) per stream, at one time step


@dataclass
class Chunk:
    """K+1 consecutive frames of one stream: images [3,H,W] in [0, 1] (`frames` stacks them when first
    asked: OpenCV flow needs only the grey images) and their grey images."""

    images: list[torch.Tensor]
    greys: list[np.ndarray]

    @classmethod
    def of_stream(cls, run: list[Frames], index: int) -> "Chunk":
        """Stream `index`'s part of a run of time steps (from metrics.frame_pair_batches)."""
        return cls([step[index][0] for step in run], [step[index][1] for step in run])

    @cached_property
    def frames(self) -> torch.Tensor:
        """[K+1,3,H,W]"""
        return torch.stack(self.images)


# ------------------------------------------------------------------------------------------------
# Flow sources
# ------------------------------------------------------------------------------------------------


class GroundTruthFlow:
    """Exact flows fw_%05d.flo (t -> t+1) and bw_%05d.flo (t+1 -> t) from a folder, rescaled to the working size."""

    def __init__(self, folder: str, native: Size, size: Size, resize_allowed: bool):
        self.folder, self.native, self.size, self.resize_allowed = Path(folder), native, size, resize_allowed
        if not self.folder.is_dir():
            raise UserError(f"--flow gt:{folder}: no such folder (it must hold fw_00000.flo, bw_00000.flo, ...)")

    def read(self, direction: str, pair: int) -> np.ndarray:
        path = self.folder / f"{direction}_{pair:05d}.flo"
        if not path.is_file():
            raise UserError(f"{path}: missing exact flow for frame pair {pair}; the folder must hold one "
                            "fw_/bw_ file per pair of the measured frames")
        flow = read_flo(path)
        if flow.shape[:2] != tuple(self.native) and not self.resize_allowed:
            raise UserError(f"{path}: flow size {flow.shape[0]}x{flow.shape[1]} differs from the frames' "
                            f"{self.native}; pass --size HxW to measure at one size")
        return resize_flow(flow, self.size)

    def start(self, first_pair: int, chunk: Chunk, device: torch.device) -> Callable[[], FlowPair]:
        """The exact flows of a chunk of K+1 frames (pairs first_pair ...), read now: fw, bw [K,2,H,W]."""
        n = len(chunk.greys) - 1
        fw, bw = (torch.from_numpy(np.stack([self.read(d, first_pair + i) for i in range(n)])).permute(0, 3, 1, 2)
                  for d in ("fw", "bw"))
        return lambda: (fw, bw)


class EstimatedFlow:
    """Flow from an estimator on the flow source's frames, optionally cached on disk as .flo files.

    OpenCV estimators run on `pool`'s threads, one task per pair and one estimator object per thread
    (they are not thread-safe), while run() keeps OpenCV single-threaded: every call keeps one core busy
    (OpenCV's own threads scale poorly at these sizes) and the flows are the same."""

    def __init__(self, args: argparse.Namespace, source: str, size: Size, pool: ThreadPoolExecutor):
        self.estimator = get_estimator(args.flow, weights=args.weights, iters=args.iters, device=args.device)
        self.name, self.pool, self.per_thread = args.flow, pool, threading.local()
        self.cache = None
        if args.cache:
            key = {"source": str(Path(source).resolve()), "source_stat": _stat(source), "flow": args.flow,
                   "weights": args.weights and str(Path(args.weights).resolve()),
                   "weights_stat": args.weights and _stat(args.weights), "iters": args.iters, "size": str(size)}
            digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
            self.cache = Path(args.cache) / f"{Path(source).stem}-{args.flow}-{size}-{digest}"
            self.cache.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.cache / "key.json") as tmp:
                tmp.write_text(json.dumps(key, indent=1))

    def start(self, first_pair: int, chunk: Chunk, device: torch.device) -> Callable[[], FlowPair]:
        """Start on the flows of a chunk of K+1 frames (pairs first_pair ...); the returned call waits for
        them: fw, bw [K,2,H,W]. OpenCV pairs are queued on the pool, so the next chunk's pairs queue behind
        these and no thread waits at a chunk's end; other estimators run here."""
        n = len(chunk.greys) - 1
        names = [f"{d}_{first_pair + i:05d}.flo" for d in ("fw", "bw") for i in range(n)]
        if self.cache is not None and all((self.cache / name).is_file() for name in names):
            flows = torch.from_numpy(np.stack([read_flo(self.cache / name) for name in names])).permute(0, 3, 1, 2)
            return lambda: (flows[:n], flows[n:])
        if not isinstance(self.estimator, ClassicFlow):
            flows = self._store(first_pair, pair_flows(self.estimator, chunk.frames.to(device) * 2 - 1, chunk.greys))
            return lambda: flows
        jobs = [self.pool.submit(self._opencv_pair, chunk.greys[i], chunk.greys[i + 1]) for i in range(n)]

        def finish() -> FlowPair:
            fw, bw = zip(*(job.result() for job in jobs))
            return self._store(first_pair, tuple(torch.from_numpy(np.stack(f)).permute(0, 3, 1, 2).to(device)
                                                 for f in (fw, bw)))
        return finish

    def _opencv_pair(self, grey: np.ndarray, grey_next: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flow t -> t+1 and t+1 -> t [H,W,2] with this thread's estimator (metrics.pair_flows' rule)."""
        if not hasattr(self.per_thread, "estimator"):
            self.per_thread.estimator = get_estimator(self.name)
        estimator = self.per_thread.estimator
        return estimator.grey_flow(grey, grey_next), estimator.grey_flow(grey_next, grey)

    def _store(self, first_pair: int, flows: FlowPair) -> FlowPair:
        if self.cache is not None:
            for direction, part in zip(("fw", "bw"), flows):
                for i, flow in enumerate(part.permute(0, 2, 3, 1).cpu().numpy()):
                    write_flo(self.cache / f"{direction}_{first_pair + i:05d}.flo", flow)
        return flows


def _stat(path: str) -> list[int]:
    stat = Path(path).stat()
    return [stat.st_size, stat.st_mtime_ns]


# ------------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------------


@dataclass
class VideoResult:
    path: str
    flow_from: str
    error: WarpingError = field(default_factory=WarpingError)
    tof: list[float] = field(default_factory=list)
    first_frame: int = 0


def measure_group(flow_source: str, videos: list[str], args: argparse.Namespace, notes: list[str]) -> list[VideoResult]:
    """Measure `videos` on flow computed from `flow_source` (one of them when there is no reference)."""
    start, stop = parse_range(args.frames)
    infos = {path: probe(path) for path in dict.fromkeys([flow_source, *videos])}
    native = Size(infos[flow_source].height, infos[flow_source].width)
    size = working_size(native, args)
    resized = bool(args.size or args.max_side)
    for path, info in infos.items():
        if (info.height, info.width) != tuple(native) and not resized:
            raise UserError(f"{path}: size {info.height}x{info.width} differs from the flow source {flow_source}'s "
                            f"{native}; pass --size HxW (or --max-side N) to measure both at one size")
    counts = {path: max(0, min(info.n_frames, stop or info.n_frames) - start) for path, info in infos.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{p}: {n}" for p, n in counts.items())
        notes.append(f"frame counts differ ({listed}); measured the common prefix of {min(counts.values())} frames")
    if min(counts.values()) < 2:
        raise UserError(f"{min(counts, key=counts.get)}: fewer than 2 frames in the range {args.frames}")

    with_tof = args.reference is not None and not args.no_tof
    paths = list(infos)  # flow source first, then videos not equal to it
    steps = zip(*(stream_frames(path, size, start, stop) for path in paths))  # ends with the shortest
    results = [VideoResult(path, flow_source, first_frame=start) for path in videos]
    device = torch.device(args.device)
    with ThreadPoolExecutor(OPENCV_WORKERS) as pool:  # (its threads start with the first OpenCV flow)
        if args.flow.startswith("gt:"):
            flows = GroundTruthFlow(args.flow[3:], native, size, resized)
        else:
            flows = EstimatedFlow(args, flow_source, size, pool)

        def flows_for(first: int, run: list[Frames]) -> tuple[Callable[[], FlowPair], list[np.ndarray]]:
            """(a call giving fw, bw [K,2,H,W], the Farneback flows of the flow source for tOF)."""
            chunk = Chunk.of_stream(run, 0)
            greys = chunk.greys
            ref_of = [farneback_flow(a, b) for a, b in zip(greys[:-1], greys[1:])] if with_tof else []
            return flows.start(start + first, chunk, device), ref_of

        # The next run's flows are started in a worker thread (OpenCV and torch release the GIL) while the
        # main thread decodes and measures this one.
        for _, run, (pending, ref_of) in frame_pair_batches(steps, args.batch, flows_for, prefetch=True):
            fw, bw = (f.to(device) for f in pending())
            for result in results:
                chunk = Chunk.of_stream(run, paths.index(result.path))
                video = chunk.frames.to(device)
                result.error.add(*pair_warping_errors(video[:-1], video[1:], fw, bw,
                                                      mask_out_of_frame=not args.no_oob_mask))
                if with_tof:
                    g = chunk.greys
                    result.tof += [tof_pair(of, farneback_flow(g[i], g[i + 1])) for i, of in enumerate(ref_of)]
    return results


def evaluate(args: argparse.Namespace) -> tuple[list[VideoResult], list[str]]:
    if args.batch < 1:
        raise UserError(f"--batch {args.batch}: must be >= 1")
    notes: list[str] = []
    if args.reference:
        return measure_group(args.reference, args.videos, args, notes), notes
    results = []
    for video in args.videos:
        results += measure_group(video, [video], args, notes)
    return results, notes


# ------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------


def settings(args: argparse.Namespace, results: list[VideoResult], notes: list[str]) -> dict:
    return {
        "metric": "warping error (Lai et al. 2018): per-channel mean of squared differences between O_t and "
        "warp(O_t+1, F_t) over valid pixels M_t, frames in [0, 1]; mean over pairs; raw (not x 1e3)",
        "mask": "not fb-occluded (|F+B~|^2 > 0.01(|F|^2+|B~|^2)+0.5) and not motion boundary "
        "(|grad u|^2+|grad v|^2 > 0.01|F|^2+0.002, forward differences)"
        + ("" if args.no_oob_mask else " and not out of frame"),
        "out_of_frame_masked": not args.no_oob_mask,
        "empty_mask_rule": "an empty mask averages over all pixels; such pairs are counted in empty_mask_pairs",
        "warp": "bilinear, border clamp (grid_sample align_corners=True)",
        "value_range": [0, 1],
        "flow": args.flow,
        "flow_detail": _flow_detail(args.flow),
        "weights": args.weights,
        "iters": args.iters if args.flow.startswith("raft") else None,
        "flow_computed_on": f"reference {args.reference}" if args.reference else "each video's own frames",
        "reference": args.reference,
        "size": args.size,
        "max_side": args.max_side,
        "frames": args.frames,
        "tof": "TecoGAN tOF: mean |Farneback(R) - Farneback(O)| px over the centre crop (>= 8 px margin, multiples "
        "of 32), pyr_scale 0.5, levels 3, winsize 15, iterations 3, poly_n 5, poly_sigma 1.2; mean over pairs "
        "skipping 2 at each end" if args.reference and not args.no_tof else None,
        "notes": notes,
    }


def _flow_detail(name: str) -> str:
    if name.startswith("gt:"):
        return f"exact flows read from {name[3:]}"
    if name.startswith("dis"):
        preset = name.removeprefix("dis").removeprefix("_") or "medium"
        return f"OpenCV DIS preset {preset} on grey images round(255 x), RGB2GRAY"
    if name == "farneback":
        return "OpenCV Farneback (TecoGAN parameters) on grey images round(255 x), RGB2GRAY"
    return f"{name} (RAFT), images in [-1, 1]"


def video_record(result: VideoResult) -> dict:
    record = {
        "path": result.path,
        "warping_error": result.error.value,
        "pairs": result.error.pairs,
        "valid_fraction": result.error.mean_valid_fraction,
        "empty_mask_pairs": result.error.empty_mask_pairs,
        "flow_computed_on": result.flow_from,
        "first_frame": result.first_frame,
        "per_pair_warping_error": result.error.per_pair,
        "per_pair_valid_fraction": result.error.valid_fraction,
    }
    if result.tof:
        record["tof"] = tof_summary(result.tof)
        record["per_pair_tof"] = result.tof
    return record


def format_table(args: argparse.Namespace, results: list[VideoResult], notes: list[str]) -> str:
    where = f"the reference {args.reference}" if args.reference else "each video's own frames"
    mask = "out-of-frame pixels kept" if args.no_oob_mask else "out-of-frame pixels masked"
    lines = [f"Warping error (Lai et al. 2018, frames in [0,1], per-channel MSE x 1e3); flow {args.flow} on "
             f"{where}; {mask}"]
    width = max(24, *(len(r.path) for r in results))
    header = f"{'video':<{width}}  {'E_warp x1e3':>11}  {'valid':>6}  {'pairs':>5}  {'empty':>5}"
    with_tof = any(r.tof for r in results)
    lines.append(header + (f"  {'tOF':>7}" if with_tof else ""))
    for r in results:
        row = (f"{r.path:<{width}}  {r.error.value * 1e3:>11.4f}  {r.error.mean_valid_fraction:>6.3f}  "
               f"{r.error.pairs:>5d}  {r.error.empty_mask_pairs:>5d}")
        lines.append(row + (f"  {tof_summary(r.tof):>7.4f}" if with_tof else ""))
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines)


def _atomic_write(path: str, write) -> None:
    """Call write(tmp_path); the result replaces path only when complete."""
    try:
        with atomic_path(path) as tmp:
            write(tmp)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def write_csv(path: str, results: list[VideoResult]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["video", "pair", "frame", "warping_error", "valid_fraction", "tof"])
            for r in results:
                for i, (e, v) in enumerate(zip(r.error.per_pair, r.error.valid_fraction)):
                    tof = f"{r.tof[i]:.6g}" if r.tof else ""
                    out.writerow([r.path, i, r.first_frame + i, f"{e:.8g}", f"{v:.6g}", tof])

    _atomic_write(path, write)


PLOT_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def draw_plot(results: list[VideoResult], width: int = 960, height: int = 480) -> np.ndarray:
    """Per-pair E_warp x 1e3 over frame index for every video, BGR uint8 [height, width, 3]."""
    canvas = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 80, 20, 30, 50
    series = [np.array(r.error.per_pair) * 1e3 for r in results]
    x_max = max(max(len(s) - 1 for s in series), 1)
    y_max = max(float(max(np.nanmax(s) for s in series if len(s))), 1e-9) * 1.05

    def to_px(i: float, v: float) -> tuple[int, int]:
        x = left + i / x_max * (width - left - right)
        return int(x), int(height - bottom - v / y_max * (height - top - bottom))

    font, black, grey = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0), (210, 210, 210)
    for k in range(6):  # horizontal grid lines with labels
        value = y_max * k / 5
        y = to_px(0, value)[1]
        cv2.line(canvas, (left, y), (width - right, y), grey, 1)
        cv2.putText(canvas, f"{value:.3g}", (5, y + 4), font, 0.4, black, 1, cv2.LINE_AA)
    for k in range(6):
        index = round(x_max * k / 5)
        x = to_px(index, 0)[0]
        cv2.putText(canvas, str(results[0].first_frame + index), (x - 10, height - bottom + 18), font, 0.4, black, 1,
                    cv2.LINE_AA)
    cv2.rectangle(canvas, (left, top), (width - right, height - bottom), black, 1)
    cv2.putText(canvas, "E_warp x 1e3 per frame pair", (left, 20), font, 0.5, black, 1, cv2.LINE_AA)
    cv2.putText(canvas, "frame t", (width // 2, height - 10), font, 0.45, black, 1, cv2.LINE_AA)
    for n, (r, s) in enumerate(zip(results, series)):
        colour = PLOT_COLOURS[n % len(PLOT_COLOURS)][::-1]
        points = np.array([to_px(i, v) for i, v in enumerate(s)], np.int32)
        cv2.polylines(canvas, [points], False, colour, 2, cv2.LINE_AA)
        cv2.putText(canvas, Path(r.path).name, (width - right - 220, top + 20 + 18 * n), font, 0.45, colour, 1,
                    cv2.LINE_AA)
    return canvas


def write_plot(path: str, results: list[VideoResult]) -> None:
    def write(tmp: Path) -> None:
        ok, data = cv2.imencode(".png", draw_plot(results))
        if not ok:
            raise OSError("PNG encoding failed")
        tmp.write_bytes(data.tobytes())

    _atomic_write(path, write)


@contextmanager
def single_threaded(torch_too: bool) -> Iterator[None]:
    """OpenCV (and torch when torch_too) single-threaded for the block, the thread counts restored after."""
    previous = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    if torch_too:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous[0])
        torch.set_num_threads(previous[1])


def run(args: argparse.Namespace) -> None:
    # OpenCV flow runs OPENCV_WORKERS single-threaded calls at a time (EstimatedFlow) while the main thread
    # decodes and measures: every core is busy without the threads of one library waiting on another's.
    with single_threaded(torch_too=args.flow in CLASSIC_NAMES):
        results, notes = evaluate(args)
    print(format_table(args, results, notes))
    for note in notes:
        print(f"eval_flicker: {note}", file=sys.stderr)
    if args.json:
        report = {"settings": settings(args, results, notes), "videos": [video_record(r) for r in results]}
        text = json.dumps(report, indent=1)
        _atomic_write(args.json, lambda tmp: tmp.write_text(text))
    if args.csv:
        write_csv(args.csv, results)
    if args.plot:
        write_plot(args.plot, results)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli("eval_flicker", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
