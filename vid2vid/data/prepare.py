"""`vid2vid prepare video`: a paired dataset (vid2vid layout) from any video.

Labels are derived from the frames themselves:
  edges     Canny edges as ids {0, 1} (data.label_nc 2)
  kmeans:K  Lab colour clusters, centres fitted ONCE per video on a sample of frames (so the labels
            of a static colour do not flicker), ids 0..K-1 ordered by lightness (data.label_nc K)
The video is cut into sequences of seq_len frames; the last test_fraction of it becomes test_*. With kmeans the
centres are saved as <out>/kmeans_centres.json, so `vid2vid render NEW_VIDEO --centres FILE` labels new videos
with the same ids. FrameLabeller is the one frame -> labels conversion, for prepare and for render.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from flow import atomic_dir
from vid2vid.config import Size
from vid2vid.data.transforms import apply_image, centre_transform
from vid2vid.errors import DataError, UserError
from vid2vid.video_io import iter_frames, probe, write_image

SAMPLE_FRAMES = 8  # frames the colour clusters are fitted on, spread over the video
SAMPLE_PIXELS = 40_000
CENTRES_FILE = "kmeans_centres.json"  # in the dataset root, with kmeans labels


def parse_labels(spec: str) -> tuple[str, int]:
    """'edges' -> ('edges', 2); 'kmeans:8' -> ('kmeans', 8)."""
    if spec == "edges":
        return "edges", 2
    kind, _, k = spec.partition(":")
    if kind == "kmeans" and k.isdigit() and 2 <= int(k) <= 255:
        return "kmeans", int(k)
    raise UserError(f"--labels {spec!r}: expected edges or kmeans:K with K in 2..255, e.g. kmeans:8")


def edge_labels(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 [H,W,3] -> Canny edges as ids {0,1} [H,W] uint8."""
    grey = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (0, 0), 1.0)
    return (cv2.Canny(grey, 50, 150) > 0).astype(np.uint8)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 [H,W,3] -> Lab float32 [H,W,3] (L in 0..100), lightly smoothed against sensor noise."""
    return cv2.cvtColor(cv2.GaussianBlur(rgb, (0, 0), 1.0).astype(np.float32) / 255, cv2.COLOR_RGB2Lab)


def fit_colour_clusters(frames: list[np.ndarray], k: int, seed: int = 0) -> np.ndarray:
    """k Lab centres [k,3] fitted on a pixel sample of the given frames, sorted by lightness (L)."""
    pixels = np.concatenate([_lab(f).reshape(-1, 3) for f in frames])
    rng = np.random.default_rng(seed)
    if len(pixels) > SAMPLE_PIXELS:
        pixels = pixels[rng.choice(len(pixels), SAMPLE_PIXELS, replace=False)]
    if len(np.unique(pixels, axis=0)) < k:
        raise UserError(f"kmeans:{k}: the video has fewer than {k} distinct colours; use a smaller K")
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.05)
    _, _, centres = cv2.kmeans(pixels, k, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    return centres[np.argsort(centres[:, 0], kind="stable")].astype(np.float32)


def cluster_table(centres: np.ndarray, bits: int = 6) -> np.ndarray:
    """Nearest-centre id for every RGB colour quantised to `bits` per channel: [2^b,2^b,2^b] uint8."""
    levels = (np.arange(2**bits, dtype=np.float32) + 0.5) * (256 / 2**bits)
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 1, 3)  # [N,1,3]
    lab = cv2.cvtColor(rgb / 255, cv2.COLOR_RGB2Lab)  # [N,1,3]
    dist = ((lab - centres[None]) ** 2).sum(-1)  # [N,K]
    return dist.argmin(1).astype(np.uint8).reshape(2**bits, 2**bits, 2**bits)


def cluster_labels(rgb: np.ndarray, table: np.ndarray) -> np.ndarray:
    """RGB uint8 [H,W,3] -> id of the nearest Lab centre [H,W] uint8, through cluster_table's lookup."""
    shift = 8 - int(np.log2(table.shape[0]))
    q = cv2.GaussianBlur(rgb, (0, 0), 1.0) >> shift
    return table[q[..., 0], q[..., 1], q[..., 2]]


class FrameLabeller:
    """A video frame -> (the frame at `size`, its label ids [H,W] uint8): the conversion `vid2vid prepare video`
    writes datasets with and `vid2vid render` applies to video inputs. spec: edges or kmeans:K (then `centres`,
    [K,3] Lab sorted by lightness, from fit_labeller or load_labeller); size None: keep the frame size."""

    def __init__(self, spec: str, size: Size | None = None, centres: np.ndarray | None = None):
        self.spec, self.size = spec, size
        self.kind, self.label_nc = parse_labels(spec)
        if (self.kind == "kmeans") != (centres is not None):
            raise ValueError(f"FrameLabeller({spec!r}): centres are needed with kmeans and only with it")
        self.centres = centres
        self.table = None if centres is None else cluster_table(centres)

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frame = resized(frame, self.size)
        ids = edge_labels(frame) if self.kind == "edges" else cluster_labels(frame, self.table)
        return frame, ids


def fit_labeller(spec: str, video: str | os.PathLike, n: int, size: Size | None = None) -> FrameLabeller:
    """The labeller of `spec` for the first n frames of `video`; kmeans centres are fitted once, on SAMPLE_FRAMES
    frames (at `size`) spread over them."""
    kind, k = parse_labels(spec)
    if kind != "kmeans":
        return FrameLabeller(spec, size)
    picks = set(np.linspace(0, n - 1, min(SAMPLE_FRAMES, n)).round().astype(int).tolist())
    sample = [resized(f, size) for i, f in zip(range(n), iter_frames(video)) if i in picks]
    return FrameLabeller(spec, size, fit_colour_clusters(sample, k))


def save_centres(labeller: FrameLabeller, path: Path) -> None:
    """The kmeans centres as JSON ({"labels": "kmeans:K", "centres": [[L, a, b], ...]}, id = position)."""
    text = json.dumps({"labels": labeller.spec, "colour_space": "OpenCV Lab of RGB/255 blurred by sigma 1 (L 0..100)",
                       "centres": labeller.centres.tolist()}, indent=1)
    path.write_text(text + "\n")


def load_labeller(path: str | os.PathLike, spec: str | None = None, size: Size | None = None) -> FrameLabeller:
    """The kmeans labeller of a centres file (save_centres); spec (kmeans:K), when given, must match it."""
    path, where = Path(path), f"--centres {path}"
    if not path.is_file():
        raise UserError(f"{where}: no such file; pass the {CENTRES_FILE} that vid2vid prepare video --labels "
                        "kmeans:K wrote into its dataset folder")
    try:
        data = json.loads(path.read_text())
        centres = np.asarray(data["centres"], np.float32)
    except (ValueError, UnicodeDecodeError, TypeError, KeyError) as e:
        raise UserError(f"{where}: not a centres file ({type(e).__name__}: {e}); expected JSON "
                        f'{{"centres": [[L, a, b], ...]}} as vid2vid prepare video writes it') from None
    if centres.ndim != 2 or centres.shape[1] != 3 or not 2 <= len(centres) <= 255 or not np.isfinite(centres).all():
        raise UserError(f"{where}: centres of shape {list(centres.shape)}; expected 2..255 finite [L, a, b] "
                        "triples as vid2vid prepare video writes them")
    k = len(centres)
    if spec is not None and parse_labels(spec) != ("kmeans", k):
        raise UserError(f"{where}: {k} kmeans centres, but --labels {spec}; pass --labels kmeans:{k} or leave "
                        "--labels out")
    return FrameLabeller(f"kmeans:{k}", size, centres)


def split_sequences(n: int, seq_len: int, test_fraction: float, test_seq_len: int | None = None
                    ) -> list[tuple[str, int, int]]:
    """(phase, first frame, frame count) per sequence, by time: train = the first frames, test = the last
    round(n * test_fraction), each cut into sequences of seq_len frames (the test tail: of test_seq_len; None: seq_len;
    0: the whole tail as one sequence). A remainder shorter than half a sequence joins the sequence before it."""
    n_test = int(round(n * test_fraction))
    out = []
    tail = seq_len if test_seq_len is None else test_seq_len or max(n_test, 1)
    for phase, start, count, length in (("train", 0, n - n_test, seq_len), ("test", n - n_test, n_test, tail)):
        chunks = [[s, min(length, start + count - s)] for s in range(start, start + count, length)]
        if len(chunks) > 1 and chunks[-1][1] < max(2, length / 2):
            chunks[-2][1] += chunks.pop()[1]
        out += [(phase, s, c) for s, c in chunks if c >= 2]
    return out


def plan_sequences(input: Path, out: Path, seq_len: int, test_fraction: float,
                   max_frames: int | None, test_seq_len: int | None = None) -> tuple[int, list[tuple[str, int, int]]]:
    """The checks every `prepare video` makes (arguments, a new output folder) and its plan: (frames used,
    split_sequences of them)."""
    if seq_len < 2:
        raise UserError(f"--seq-len {seq_len}: a sequence needs at least 2 frames")
    if test_seq_len is not None and test_seq_len != 0 and test_seq_len < 2:
        raise UserError(f"--test-seq-len {test_seq_len}: a sequence needs at least 2 frames (0: the whole held-out "
                        "tail as one sequence)")
    if not 0.0 <= test_fraction < 1.0:
        raise UserError(f"--test-fraction {test_fraction}: must be in [0, 1)")
    if max_frames is not None and max_frames < 2:
        raise UserError(f"--max-frames {max_frames}: a sequence needs at least 2 frames; give 2 or more, or leave it "
                        "out (all frames)")
    if out.exists():
        raise UserError(f"{out} already exists; remove it or choose another output folder")
    n = probe(input).n_frames
    if max_frames is not None:
        n = min(n, max_frames)
    plan = split_sequences(n, seq_len, test_fraction, test_seq_len)
    if not plan:
        raise DataError(f"{input}: only {n} frames; too few for one sequence of at least 2 frames")
    return n, plan


def frame_places(plan: list[tuple[str, int, int]]) -> tuple[dict[int, tuple[str, str, int]], dict[str, int]]:
    """({frame index: (phase, sequence name, index in the sequence)}, {phase: sequence count}) of a plan."""
    where = {}
    counters = {"train": 0, "test": 0}
    for phase, start, count in plan:
        name = f"seq_{counters[phase]:04d}"
        counters[phase] += 1
        where.update({start + j: (phase, name, j) for j in range(count)})
    return where, counters


def resized(frame: np.ndarray, size: Size | None) -> np.ndarray:
    """The frame at `size` (None: unchanged), resampled by the dataset transforms' rule (area when shrinking)."""
    if size is None:
        return frame
    return apply_image(frame, centre_transform(load_size=size, crop_size=size))


def prepare_video(input: str | os.PathLike, out: str | os.PathLike, *, labels: str = "edges",
                  size: Size | None = None, seq_len: int = 30, test_fraction: float = 0.2,
                  max_frames: int | None = None, test_seq_len: int | None = None) -> str:
    """Write a vid2vid-layout dataset (train_A/B, test_A/B) made from one video. Returns a summary."""
    kind, label_nc = parse_labels(labels)
    input, out = Path(input), Path(out)
    n, plan = plan_sequences(input, out, seq_len, test_fraction, max_frames, test_seq_len)
    labeller = fit_labeller(labels, input, n, size)
    where, counters = frame_places(plan)
    with atomic_dir(out) as tmp:
        if labeller.centres is not None:
            save_centres(labeller, tmp / CENTRES_FILE)
        shape, decoded = None, 0
        for i, frame in zip(range(n), iter_frames(input)):
            decoded += 1
            if i not in where:
                continue
            frame, ids = labeller(frame)
            shape = frame.shape[:2]
            phase, name, j = where[i]
            for side, image in (("A", ids), ("B", frame)):
                folder = tmp / f"{phase}_{side}" / name
                folder.mkdir(parents=True, exist_ok=True)
                write_image(folder / f"{j:05d}.png", image)
        if decoded < n:
            raise DataError(f"{input}: decoded {decoded} frames but the container says {n}; the video is "
                            "truncated or damaged; re-encode it")
    frames = {p: sum(c for ph, _, c in plan if ph == p) for p in counters}
    size_text = f"{shape[0]}x{shape[1]}"
    render_options = f"--labels {labels}" + (f" --centres {out / CENTRES_FILE}" if kind == "kmeans" else "")
    render_options += f" --size {size_text}" if size else ""
    return (f"wrote {out}: {counters['train']} train sequences ({frames['train']} frames), {counters['test']} test "
            f"sequences ({frames['test']} frames), {size_text}, labels {labels} "
            f"(label_nc {label_nc}, no instance maps)\n"
            f"use it with: --set data.root={out} data.source=folder data.label_nc={label_nc} "
            f"data.use_instance=false data.fg_labels=[] data.load_size={size_text} data.crop_size={size_text}\n"
            f"render new videos of this kind with: vid2vid render VIDEO OUTPUT -m EXPORT {render_options}")
