"""Rendering with an exported model: label maps in, video frames out, one frame at a time, in constant memory.

    renderer = VideoRenderer("runs/street/export")     # an exported video model (vid2vid) or image model
    for labels, inst in frames:                        # labels [H,W] integer ids, inst [H,W] or None
        rgb = renderer.step(labels, inst)              # uint8 [H,W,3] RGB
    renderer.reset()                                   # before the next video

    render_video("runs/street/export", "data/x/test_A/seq0", "out.mp4")   # a whole input, streamed to H.264

A video model goes through the one recurrence of vid2vid.temporal (start_history, then step per frame).
Its first N-1 frames (N = model.n_frames_G) seed the history and are output as they are, so the output has
exactly as many frames as the input. They come from `first_frame`: "image-model:PATH" (an exported per-frame
model generates them), "real:DIR" (frames of a folder or video file, index-aligned with the labels, from
`real_start`), or "zeros" (mid-grey; the model outputs raw frames until N-1 generated frames replace them).
The export's model.first_frame is the default; "real" there means the sequence's <phase>_B/<seq> when the
input is a dataset sequence. An image model renders every frame through Export.generate.

Inputs (open_input): a folder of label-id PNGs or a dataset sequence; colour-coded label PNGs with a palette
(--palette FILE or the export's data.palette: one [R, G, B] per id; single-channel PNGs stay ids); or a video
file, converted to labels by vid2vid.data.prepare.FrameLabeller exactly as `vid2vid prepare video` does
(--labels edges or kmeans:K, with --centres <dataset>/kmeans_centres.json for the dataset's colour clusters).

Sizes the model's stride cannot take are padded (repeating the last row and column) and cropped back.
render_video reads labels in one thread and encodes in another, with small bounded queues, so the model
does not wait on I/O and memory does not grow with the video length. The output appears under its name only when
complete: a failed write (full disk) or an error leaves nothing behind, and so does SIGINT / SIGTERM unless
keep_partial finishes the frames rendered so far into a playable output (exit status 130 / 143 either way).
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import torch

from vid2vid import temporal
from vid2vid.config import Size, model_stride, palette_problem
from vid2vid.data.encoding import DONTCARE_ID, semantic_input
from vid2vid.errors import ConfigError, DataError, UserError, write_failed, writing
from vid2vid.families import is_sequential
from vid2vid.imaging import from_uint8, label_palette, to_uint8
from vid2vid.signals import StopSignals
from vid2vid.video_io import IMAGE_EXTENSIONS, VideoWriter, iter_frames, probe, read_image, write_image

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")
QUEUE_FRAMES = 4  # frames waiting between reader, model and encoder
log = logging.getLogger("vid2vid")


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is a UserError."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return device


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere torch emulates it, ~100x slower."""
    if "AMX" in torch.backends.cpu.get_cpu_capability().upper():
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """x [...,H,W] -> [...,height,width], repeating the last row and column (exact for integer ids)."""
    h, w = x.shape[-2:]
    if (h, w) == (height, width):
        return x
    rows = torch.arange(height, device=x.device).clamp(max=h - 1)
    cols = torch.arange(width, device=x.device).clamp(max=w - 1)
    return x[..., rows[:, None], cols[None, :]]


def label_range(labels: np.ndarray | torch.Tensor, dontcare: bool) -> tuple[int, int]:
    """(lowest, highest) id of labels [...,H,W] (numpy or torch), leaving out id 255 when dontcare
    (data.contain_dontcare_label: SPADE's don't-care id, which becomes one-hot channel label_nc)."""
    if dontcare and int(labels.max()) == DONTCARE_ID:
        labels = labels[labels != DONTCARE_ID]
        if labels.shape[0] == 0:
            return 0, 0
    return int(labels.min()), int(labels.max())


def _as_ids(x: np.ndarray | torch.Tensor | None, what: str) -> torch.Tensor | None:
    """numpy or torch [H,W] integer ids -> int64 tensor [1,H,W]."""
    if x is None:
        return None
    x = torch.as_tensor(x)
    if x.ndim != 2 or x.is_floating_point() or x.is_complex():
        raise UserError(f"{what}: expected [H,W] integer ids, got {x.dtype} {tuple(x.shape)}")
    return x.long()[None]


def load_model(checkpoint: str | Path, device: torch.device):
    """load_export with the config's errors prefixed by the export's path."""
    from vid2vid.checkpoint import load_export

    try:
        return load_export(checkpoint, device)
    except ConfigError as e:
        raise UserError(f"{checkpoint}: its config.yaml is not a valid config ({e}); re-export the model") from None


# ----------------------------------------------------------------------------------------------
# First frames of a video model
# ----------------------------------------------------------------------------------------------


class ZerosFirst:
    """first_frame zeros: mid-grey seed frames (the history fills with generated frames)."""

    mode = "zeros"

    def frame(self, index: int, labels: torch.Tensor, inst: torch.Tensor | None, size: Size) -> torch.Tensor:
        return labels.new_zeros(1, 3, *labels.shape[-2:], dtype=torch.float32)  # [1,3,Hp,Wp]


class RealFirst:
    """first_frame real:PATH: frames start, start+1, ... of a folder of images or a video file."""

    mode = "real"

    def __init__(self, path: str | Path, n_seed: int, start: int = 0):
        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"first frame real:{self.path}: no such folder or video file; pass a folder of the "
                            "real frames (named in frame order) or a video file")
        have = probe(self.path).n_frames
        if have < start + n_seed:
            raise UserError(f"first frame real:{self.path}: {have} frames, but the first {n_seed} seed frames from "
                            f"frame {start} need {start + n_seed}; pass a folder with more frames, or "
                            "--first-frame image-model:PATH or zeros")
        self.frames = list(islice(iter_frames(self.path), start, start + n_seed))  # uint8 [H,W,3] each

    def frame(self, index: int, labels: torch.Tensor, inst: torch.Tensor | None, size: Size) -> torch.Tensor:
        rgb = self.frames[index]
        if rgb.shape[:2] != tuple(size):
            rgb = cv2.resize(rgb, (size.w, size.h), interpolation=cv2.INTER_AREA)
        return pad_to(from_uint8(rgb, labels.device), *labels.shape[-2:])  # [1,3,Hp,Wp]


class NoRealFrames:
    """model.first_frame real without real frames: fails when a seed frame is needed."""

    mode = "real"

    def __init__(self, error: UserError):
        self.error = error

    def frame(self, index: int, labels: torch.Tensor, inst: torch.Tensor | None, size: Size) -> torch.Tensor:
        raise self.error


class ImageModelFirst:
    """first_frame image-model:PATH: an exported per-frame model generates the seed frames."""

    def __init__(self, path: str, device: torch.device, label_nc: int, options: dict):
        self.mode = f"image-model:{path}"
        self.export = load_model(path, device)
        cfg = self.export.cfg
        if is_sequential(cfg):
            raise UserError(f"first frame image-model:{path} is a video model; pass an exported per-frame model "
                            "(pix2pix, pix2pixhd or spade)")
        if cfg.data.label_nc < label_nc:
            raise UserError(f"first frame image-model:{path} has label_nc {cfg.data.label_nc} but the video model "
                            f"has {label_nc}; use an image model trained on the same labels")
        self.options = {**options, "seed": 0 if options.get("seed") is None else options["seed"]}
        self.stride = model_stride(cfg.model)

    def frame(self, index: int, labels: torch.Tensor, inst: torch.Tensor | None, size: Size) -> torch.Tensor:
        return self.export.generate(labels, inst, **self.options).float()  # [1,3,Hp,Wp]


# ----------------------------------------------------------------------------------------------
# The frame-in / frame-out renderer
# ----------------------------------------------------------------------------------------------


class VideoRenderer:
    """An exported model as a frame-in / frame-out function: step(labels [H,W], instances) -> uint8 [H,W,3].

    precision: fp32 (exact), bf16 or fp16 (autocast); None: the export's render.precision. feature_cluster,
    style (an image path or [1,3,H,W] tensor) and seed choose the features or z of an image model with an encoder
    (Export.generate), for the per-frame model or the first-frame image model.
    real_start: the index of the first real:DIR frame used (render_video passes its --start).
    """

    def __init__(self, checkpoint: str | Path, *, first_frame: str | None = None, device: str = "auto",
                 precision: str | None = "fp32", feature_cluster: int | None = None, style=None,
                 seed: int | None = None, channels_last: bool = False, compile: bool = False, real_start: int = 0):
        self.device, self.checkpoint = resolve_device(device), Path(checkpoint)
        self.export = load_model(checkpoint, self.device)
        self.cfg = self.export.cfg
        self.precision = precision or self.cfg.render.precision
        if self.precision not in PRECISIONS:
            raise UserError(f"precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.precision == "bf16" and self.device.type == "cpu" and not cpu_has_fast_bf16():
            log.warning("bf16 on this CPU is emulated (no AVX512-BF16/AMX) and much slower than fp32")
        self.is_video = is_sequential(self.cfg)
        self.n_seed = self.cfg.model.n_frames_G - 1 if self.is_video else 0
        if isinstance(style, (str, Path)):
            from vid2vid.checkpoint import read_style

            style = read_style(style)
        self.options = {"cluster": feature_cluster, "style": style, "seed": seed}
        generator = self.export.generator
        if channels_last:
            generator = generator.to(memory_format=torch.channels_last)
        # (inductor's freezing was ~10% faster here but renders garbage when ATen's CPU capability is AVX2: not used)
        self.export.generator = torch.compile(generator) if compile else generator
        self._image_models: dict[str, ImageModelFirst] = {}
        self.reset(first_frame, real_start=real_start)

    @property
    def label_nc(self) -> int:
        return self.cfg.data.label_nc

    @property
    def uses_instances(self) -> bool:
        return self.cfg.data.use_instance

    @property
    def dontcare(self) -> bool:
        """data.contain_dontcare_label of a per-frame model: label id 255 is allowed (one-hot channel label_nc). The
        video model has no don't-care channel (its builder and trainer leave the key out)."""
        return self.cfg.data.contain_dontcare_label and not self.is_video

    def reset(self, first_frame: str | None = None, *, real_start: int = 0) -> None:
        """Start a new video (optionally with another first-frame source; None: keep the current one)."""
        if first_frame is not None or not hasattr(self, "first"):
            lazy = first_frame is None
            self.first = self._first_frames(first_frame, real_start, lazy=lazy) if self.is_video else None
        self.history: temporal.History | None = None
        self._seed_labels: list[torch.Tensor] = []  # [1,C,Hp,Wp] each
        self._seed_frames: list[torch.Tensor] = []  # [1,3,Hp,Wp] each
        self.index, self.size = 0, None

    def _first_frames(self, spec: str | None, real_start: int, lazy: bool = False):
        """The first-frame source of `spec` (None: the export's model.first_frame). lazy: a bare "real" fails at
        the first step() rather than now."""
        spec = spec or self.cfg.model.first_frame
        kind, _, path = spec.partition(":")
        if kind == "zeros" and not path:
            return ZerosFirst()
        if kind == "real" and path:
            return RealFirst(path, self.n_seed, real_start)
        if kind == "real" and lazy:
            return NoRealFrames(self._no_real_frames())
        if kind == "real":
            raise self._no_real_frames()
        if kind == "image-model" and path:
            if path not in self._image_models:
                self._image_models[path] = ImageModelFirst(path, self.device, self.label_nc, self.options)
            return self._image_models[path]
        raise UserError(f"first frame {spec!r}: expected image-model:PATH, real:DIR or zeros")

    def _no_real_frames(self) -> UserError:
        return UserError(f"{self.checkpoint}: the model's first {self.n_seed} frames come from the real video "
                         "(model.first_frame real) but the input is not a dataset sequence (<root>/<phase>_A/<seq>) "
                         "with its <phase>_B frames; pass --first-frame real:DIR, image-model:PATH or zeros "
                         "(VideoRenderer(first_frame=...) or reset(first_frame=...))")

    @property
    def stride(self) -> int:
        """What the frame size is padded to a multiple of (the video model's and the first-frame model's)."""
        stride = model_stride(self.cfg.model)
        return math.lcm(stride, self.first.stride) if isinstance(self.first, ImageModelFirst) else stride

    @torch.inference_mode()
    def step(self, labels, instances=None) -> np.ndarray:
        """labels [H,W] integer ids (numpy or torch), instances [H,W] ids or None -> the next frame, uint8 [H,W,3]."""
        labels_t, inst_t = self._prepare(labels, instances)  # [1,Hp,Wp] int64 on the device
        autocast = (contextlib.nullcontext() if self.precision == "fp32"
                    else torch.autocast(self.device.type, dtype=PRECISIONS[self.precision]))
        with autocast:
            if self.is_video:
                frame = self._video_step(labels_t, inst_t)
            else:
                frame = self.export.generate(labels_t, inst_t, **self.options)
        self.index += 1
        return to_uint8(frame[..., : self.size.h, : self.size.w])[0]

    def _prepare(self, labels, instances) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Checks ids and sizes; pads to the stride; moves to the device."""
        labels, inst = _as_ids(labels, "labels"), _as_ids(instances, "instances")
        size = Size(*labels.shape[-2:])
        if self.size is None:
            self.size = size
        if size != self.size or (inst is not None and inst.shape != labels.shape):
            got = size if inst is None or size != self.size else Size(*inst.shape[-2:])
            raise UserError(f"frame {self.index}: labels/instances are {got}, earlier frames {self.size}; every frame "
                            "of a video must have the same size (reset() starts a new video)")
        low, high = label_range(labels, self.dontcare)
        if low < 0 or high >= self.label_nc:
            raise UserError(f"frame {self.index}: label id {high if high >= self.label_nc else low} is outside "
                            f"0..{self.label_nc - 1} (the model's label_nc {self.label_nc}); remap the labels")
        stride = self.stride
        padded = (-(-size.h // stride) * stride, -(-size.w // stride) * stride)
        if min(padded) < 2 * stride:  # the innermost layers need at least 2x2 values
            raise UserError(f"frame size {size.h}x{size.w}: too small for this model, whose frames are padded to "
                            f"a multiple of {stride}; each side must be at least {stride + 1} pixels (pass --size "
                            "HxW, e.g. the model's data.crop_size)")
        labels = pad_to(labels.to(self.device), *padded)
        return labels, None if inst is None else pad_to(inst.to(self.device), *padded)

    def _video_step(self, labels: torch.Tensor, inst: torch.Tensor | None) -> torch.Tensor:
        """One frame of the video model: a seed frame while the history fills, then temporal.step -> [1,3,Hp,Wp]."""
        sem = semantic_input(labels, inst, self.label_nc, self.uses_instances)  # [1,C,Hp,Wp]
        if self.history is None:
            seed = self.first.frame(self.index, labels, inst, self.size)  # [1,3,Hp,Wp]
            self._seed_labels.append(sem)
            self._seed_frames.append(seed)
            if len(self._seed_labels) == self.n_seed:
                self.history = temporal.start_history(self.first.mode, torch.stack(self._seed_labels, 1),
                                                      torch.stack(self._seed_frames, 1))
                self._seed_labels, self._seed_frames = [], []
            return seed
        output, self.history = temporal.step(self.export.generator, self.history, sem)
        return output.final


# ----------------------------------------------------------------------------------------------
# Inputs: folders of label-id or colour-coded PNGs, dataset sequences, video files
# ----------------------------------------------------------------------------------------------


class Palette:
    """Colour-coded label maps -> ids: colours[i] is the RGB colour of label id i. `where` names its origin
    (a --palette file or the export's data.palette) in errors."""

    def __init__(self, colours: list, where: str):
        problem = palette_problem(colours)
        if problem is not None:
            raise UserError(f"{where}: {problem}")
        self.colours, self.where = np.asarray(colours, np.uint8), where  # [K,3]
        codes = _rgb_codes(self.colours)  # [K]
        self.order = np.argsort(codes)
        self.sorted_codes = codes[self.order]

    def __len__(self) -> int:
        return len(self.colours)

    def ids(self, rgb: np.ndarray, file: Path) -> np.ndarray:
        """uint8 [H,W,3] RGB -> [H,W] int64 ids; a colour not in the palette is a UserError naming the pixel."""
        codes = _rgb_codes(rgb)
        pos = np.searchsorted(self.sorted_codes, codes).clip(max=len(self) - 1)
        known = self.sorted_codes[pos] == codes
        if not known.all():
            y, x = np.argwhere(~known)[0]
            r, g, b = (int(c) for c in rgb[y, x])
            raise UserError(f"{file}: pixel (x={x}, y={y}) has the colour ({r}, {g}, {b}), which is not in the palette "
                            f"({self.where}); add it to the palette (its position is its label id) or recolour the "
                            "pixel to a palette colour")
        return self.order[pos]


def _rgb_codes(rgb: np.ndarray) -> np.ndarray:
    """uint8 [...,3] -> int64 [...]: one number per colour."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def load_palette(path: str | Path) -> Palette:
    """--palette FILE: a YAML or JSON list of [R, G, B] per label id (id = position)."""
    import yaml

    path, where = Path(path), f"--palette {path}"
    if not path.is_file():
        raise UserError(f"{where}: no such file; pass a YAML or JSON list of [R, G, B] colours, one per label id")
    try:
        colours = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        reason = str(e).replace("\n", " ")
        raise UserError(f"{where}: not valid YAML or JSON ({reason}); write a list of [R, G, B] per label id") from None
    return Palette(colours, where)


def resolve_palette(palette: str | Path | None, renderer: VideoRenderer) -> Palette | None:
    """--palette FILE, else the export's data.palette, else None; at most label_nc colours."""
    if palette is not None:
        found = load_palette(palette)
    elif renderer.cfg.data.palette is not None:
        found = Palette(renderer.cfg.data.palette, f"{renderer.checkpoint} data.palette")
    else:
        return None
    if len(found) > renderer.label_nc:
        raise UserError(f"{found.where}: {len(found)} colours, but the model has label_nc {renderer.label_nc} (ids "
                        f"0..{renderer.label_nc - 1}); one colour per id the model knows, no more")
    return found


@dataclass
class VideoLabels:
    """A video file whose frames become label maps through `labeller` (vid2vid.data.prepare.FrameLabeller)."""

    path: Path
    labeller: object
    n_frames: int


@dataclass
class LabelInput:
    """One input video: label PNGs (sorted by name; ids, or colours with `palette`) or a video file (`video`),
    instance maps or None, and its real frames (a dataset sequence's <phase>_B/<seq>, a video's own frames) or
    None."""

    name: str
    labels: list[Path]
    inst: list[Path] | None = None
    real: Path | None = None
    palette: Palette | None = None
    video: VideoLabels | None = None

    def __len__(self) -> int:
        return self.video.n_frames if self.video is not None else len(self.labels)


def _real_frames(root: Path, phase: str, name: str) -> Path | None:
    """<root>/<phase>_B/<name>: a folder of frames, or a video file <name>.<ext>; None when absent."""
    folder = root / f"{phase}_B"
    if (folder / name).is_dir():
        return folder / name
    videos = sorted(p for p in folder.glob(f"{name}.*") if p.suffix.lower() not in (".png", ".jpg", ".jpeg"))
    return videos[0] if videos else None


def open_input(path: str | Path, *, instances: str | Path | None = None, use_instance: bool = True,
               palette: Palette | None = None, labels: str | None = None, centres: str | Path | None = None,
               size: Size | None = None, label_nc: int | None = None) -> LabelInput:
    """A folder of label PNGs, a dataset sequence folder (<root>/<phase>_A/<seq>) or a video file -> LabelInput.
    A dataset sequence brings its <phase>_inst/<seq> (when the model uses instances) and its real frames;
    `instances` (a folder of instance-id PNGs, one per label map) overrides the dataset's. Colour PNGs are mapped
    through `palette`. A video file is converted by `labels` (edges or kmeans:K) and `centres` (see
    video_labeller) at `size`; label_nc (the model's) is checked before any k-means fitting."""
    path = Path(path)
    if path.is_file():
        return open_video(path, labels=labels, centres=centres, size=size, label_nc=label_nc, instances=instances)
    if labels is not None or centres is not None:
        raise UserError(f"{path}: --labels and --centres convert a video file input; this is a folder of label "
                        "maps, so leave them out")
    if not path.is_dir():
        raise UserError(f"{path}: no such folder; pass a folder of label-id PNGs or a dataset sequence folder")
    labels = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not labels:
        raise UserError(f"{path}: no PNG label maps in this folder; pass a folder of single-channel label-id PNGs "
                        "(sorted by name) or a dataset sequence folder such as data/x/test_A/seq0")
    source = LabelInput(path.name, labels, palette=palette)
    if path.parent.name.endswith("_A"):  # a dataset sequence
        root, phase = path.parent.parent, path.parent.name[:-2]
        source.real = _real_frames(root, phase, path.name)
        inst_dir = root / f"{phase}_inst" / path.name
        if instances is None and use_instance and inst_dir.is_dir():
            instances = inst_dir
    if instances is not None and use_instance:
        source.inst = _instance_files(Path(instances), len(labels), path)
    elif instances is not None:
        log.warning("%s: the model does not use instance maps (data.use_instance false); ignoring them", instances)
    return source


def open_video(path: Path, *, labels: str | None, centres: str | Path | None, size: Size | None,
               label_nc: int | None, instances: str | Path | None = None) -> LabelInput:
    """A video file -> LabelInput whose label maps are its frames converted as `vid2vid prepare video` does; its
    own frames are its real frames (for model.first_frame real)."""
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise UserError(f"{path}: a single image; the input is a folder of label maps (one PNG per frame, sorted by "
                        "name), a dataset sequence folder such as data/x/test_A/seq0, or a video file")
    if instances is not None:
        raise UserError(f"--instances {instances}: not with a video input (its labels come without instance maps)")
    n_frames = probe(path).n_frames
    labeller = video_labeller(path, labels, centres, size, label_nc, n_frames)
    return LabelInput(path.stem, [], real=path, video=VideoLabels(path, labeller, n_frames))


def video_labeller(path: Path, labels: str | None, centres: str | Path | None, size: Size | None,
                   label_nc: int | None, n_frames: int):
    """The FrameLabeller of a video input: --centres FILE (a prepared dataset's kmeans centres), else --labels
    edges, else --labels kmeans:K fitted on this video itself (as prepare video does, with a warning)."""
    from vid2vid.data.prepare import CENTRES_FILE, fit_labeller, load_labeller, parse_labels

    if labels is None and centres is None:
        raise UserError(f"{path}: a video file; pass --labels edges or kmeans:K to turn its frames into label maps as "
                        f"vid2vid prepare video does (with kmeans also --centres <dataset>/{CENTRES_FILE} for the "
                        "ids of the dataset the model was trained on)")
    if centres is not None:
        if labels is not None and parse_labels(labels)[0] != "kmeans":
            raise UserError(f"--centres {centres}: k-means centres go with --labels kmeans:K, not --labels {labels}")
        labeller = load_labeller(centres, labels, size)
        _check_label_nc(labeller.spec, labeller.label_nc, label_nc)
        return labeller
    kind, k = parse_labels(labels)
    _check_label_nc(labels, k, label_nc)
    if kind == "kmeans":
        log.warning("%s: --labels %s without --centres: fitting the %d colour clusters on this video itself (as "
                    "prepare video does); to get the ids the model was trained with, pass --centres "
                    "<dataset>/%s", path, labels, k, CENTRES_FILE)
    return fit_labeller(labels, path, n_frames, size)


def _check_label_nc(spec: str, n_ids: int, label_nc: int | None) -> None:
    if label_nc is not None and n_ids > label_nc:
        raise UserError(f"--labels {spec}: makes ids 0..{n_ids - 1}, but the model has label_nc {label_nc}; use the "
                        "labels the model was trained on")


def _instance_files(folder: Path, n: int, label_dir: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"--instances {folder}: no such folder; pass a folder of instance-id PNGs")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if len(files) != n:
        raise UserError(f"{folder}: {len(files)} instance maps for the {n} label maps of {label_dir}; they pair by "
                        "sorted name, one per frame")
    return files


def read_id_map(path: Path, what: str, size: tuple[int, int] | None, ids: np.ndarray | None = None) -> np.ndarray:
    """A single-channel id PNG (or its already read `ids`) -> [H,W] ids; a colour image or another size than
    `size` is a UserError."""
    ids = read_image(path, cv2.IMREAD_UNCHANGED) if ids is None else ids
    if ids.ndim != 2:
        hint = ("; for colour-coded label maps pass --palette FILE (a YAML or JSON list of [R, G, B], one per id)"
                if what == "label" else "")
        raise UserError(f"{path}: a colour image ({ids.shape[2]} channels) where {what} ids are expected; "
                        f"{what} maps are single-channel PNGs of ids (8- or 16-bit), not colour renderings{hint}")
    if size is not None and ids.shape != size:
        raise UserError(f"{path}: {ids.shape[0]}x{ids.shape[1]}, but the first frame is {size[0]}x{size[1]}; "
                        "every frame of a video must have the same size (or pass --size HxW to resize them all)")
    return ids


def read_label_map(path: Path, size: tuple[int, int] | None, palette: Palette | None) -> np.ndarray:
    """A label PNG -> [H,W] ids: single-channel ids as they are, a colour image through the palette (without
    one, a UserError naming --palette); another size than `size` is a UserError."""
    image = read_image(path, cv2.IMREAD_UNCHANGED)
    if image.ndim == 2 or palette is None:
        return read_id_map(path, "label", size, image)
    if image.dtype != np.uint8 or image.shape[2] not in (3, 4):
        raise UserError(f"{path}: a {image.dtype} image with {image.shape[2]} channels; colour-coded label maps are "
                        "8-bit RGB (or RGBA) PNGs")
    ids = palette.ids(cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB), path)
    return read_id_map(path, "label", size, ids)


def iter_labels(source: LabelInput, label_nc: int, *, size: Size | None = None, start: int = 0,
                count: int | None = None, dontcare: bool = False):
    """(labels [H,W] int64, inst [H,W] int64 or None) per frame from `start`, checked (ids or palette colours,
    one size, ids < label_nc, or 255 with dontcare: data.contain_dontcare_label), resized to `size` (nearest) when
    given. A video input's frames are converted by its labeller (at the size it was opened with)."""
    if source.video is not None:
        yield from _video_labels(source.video, label_nc, start, count)
        return
    stop = None if count is None else start + count
    inst_files = source.inst[start:stop] if source.inst is not None else None
    first = None
    for i, file in enumerate(source.labels[start:stop]):
        labels = read_label_map(file, first, source.palette)
        first = first or labels.shape
        top = label_range(labels, dontcare)[1]
        if top >= label_nc:
            hint = (" (single-channel PNGs are read as ids even with a palette; save colour-coded maps as RGB)"
                    if source.palette is not None else
                    " (255 is SPADE's don't-care id, which only per-frame models with data.contain_dontcare_label "
                    "take)"
                    if top == DONTCARE_ID else "")
            raise UserError(f"{file}: label id {top}, but the model was trained with label_nc {label_nc} (ids "
                            f"0..{label_nc - 1}){hint}; remap the labels or render with a model trained on them")
        inst = None if inst_files is None else read_id_map(inst_files[i], "instance", first)
        if size is not None and tuple(size) != labels.shape:
            labels = cv2.resize(labels, (size.w, size.h), interpolation=cv2.INTER_NEAREST)
            inst = None if inst is None else cv2.resize(inst, (size.w, size.h), interpolation=cv2.INTER_NEAREST)
        yield labels.astype(np.int64), None if inst is None else inst.astype(np.int64)


def _video_labels(video: VideoLabels, label_nc: int, start: int, count: int | None):
    """(labels [H,W] int64, None) per frame start.. of a video input, converted by its labeller."""
    stop = video.n_frames if count is None else min(video.n_frames, start + count)
    decoded = start
    for frame in islice(iter_frames(video.path), start, stop):
        labels = video.labeller(frame)[1]  # ids < label_nc: checked up front against the labeller's spec
        decoded += 1
        yield labels.astype(np.int64), None
    if decoded < stop:
        raise DataError(f"{video.path}: decoded {decoded} frames but the container says {video.n_frames}; the video "
                        "is truncated or damaged; re-encode it")


# ----------------------------------------------------------------------------------------------
# Outputs: H.264 files and folders of PNG frames, both atomic
# ----------------------------------------------------------------------------------------------


def check_output(output: str | Path, *, frames_dir: bool, overwrite: bool) -> Path:
    """The output path, or a UserError: missing folder, unknown container, existing output without overwrite."""
    output = Path(output)
    if not output.parent.is_dir():
        raise UserError(f"{output}: the folder {output.parent} does not exist; create it or choose another output")
    if not frames_dir and output.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"{output}: unknown video container {output.suffix or '(no suffix)'!r}; name the output "
                        f"{'/'.join(VIDEO_SUFFIXES)} (H.264), or pass --frames-dir to write PNG frames into a folder")
    if output.exists() and not overwrite:
        raise UserError(f"{output}: already exists; pass --overwrite to replace it, or choose another output")
    if output.exists() and output.is_dir() != frames_dir:
        kind = "a folder" if output.is_dir() else "a file"
        raise UserError(f"{output}: is {kind}; --overwrite replaces only outputs of the same kind; remove it first")
    return output


class Mp4Sink:
    """VideoWriter (H.264 yuv420p, atomic) that pads odd frame sizes by one repeated row / column."""

    def __init__(self, path: Path, fps: float, crf: int):
        self.writer = VideoWriter(path, fps=fps, crf=crf)

    def __enter__(self) -> Mp4Sink:
        self.writer.__enter__()
        return self

    def write(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        self.writer.write(frame)

    def __exit__(self, *exc) -> None:
        self.writer.__exit__(*exc)


class FramesDirSink:
    """00000.png, 00001.png, ... in a temporary folder beside `path`, renamed to `path` when complete."""

    def __init__(self, path: Path, overwrite: bool):
        from flow.io import temp_sibling

        self.path, self.overwrite, self.tmp, self.n = path, overwrite, temp_sibling(path), 0

    def __enter__(self) -> FramesDirSink:
        with writing(self.path):
            self.tmp.mkdir()
        return self

    def write(self, frame: np.ndarray) -> None:
        try:
            write_image(self.tmp / f"{self.n:05d}.png", frame)
        except DataError:  # a full disk, no permission
            raise write_failed(self.path, f"frame {self.n} could not be saved") from None
        self.n += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        from flow import commit_dir

        try:
            if exc_type is None:
                commit_dir(self.tmp, self.path, replace=self.overwrite)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Streaming: a reader thread and an encoder thread around the model
# ----------------------------------------------------------------------------------------------

_END, _ABORT = object(), object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class Reader(threading.Thread):
    """Runs an iterator in a thread into a bounded queue; iterating the Reader yields its items in order and
    re-raises its error."""

    def __init__(self, items, maxsize: int = QUEUE_FRAMES):
        super().__init__(daemon=True, name="vid2vid-render-reader")
        self.items, self.queue, self.stop = items, queue.Queue(maxsize), threading.Event()

    def run(self) -> None:
        try:
            for item in self.items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as error:  # handed to the main thread
            self._put(_Failed(error))

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while (item := self.queue.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def close(self) -> None:
        self.stop.set()
        self.join()


class Encoder(threading.Thread):
    """Writes frames to a sink (a context manager with write(frame)) in a thread, from a bounded queue. finish()
    completes the output; abort() leaves nothing behind."""

    def __init__(self, sink, maxsize: int = QUEUE_FRAMES):
        super().__init__(daemon=True, name="vid2vid-render-encoder")
        self.sink, self.queue = sink, queue.Queue(maxsize)
        self.error: BaseException | None = None
        self.aborted = False

    def run(self) -> None:
        try:
            with self.sink:
                while (item := self.queue.get()) is not _END:
                    if item is _ABORT or self.aborted:
                        raise _Aborted
                    self.sink.write(item)
        except _Aborted:
            pass
        except BaseException as error:  # handed to the main thread
            self.error = error

    def put(self, frame) -> None:
        while True:
            if not self.is_alive():
                raise self.error or RuntimeError("the encoder thread stopped")
            try:
                self.queue.put(frame, timeout=0.05)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        self.put(_END)
        self.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        self.aborted = True
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(_ABORT)
        self.join()


class _Aborted(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# Whole inputs
# ----------------------------------------------------------------------------------------------


class RenderStopped(SystemExit):
    """Rendering stopped on SIGINT / SIGTERM after `frames` frames: a SystemExit whose code is the shell's status for
    the signal (130 / 143), so that the command line exits with it. `output` is the partial output kept with
    keep_partial, else None (nothing written)."""

    def __init__(self, signum: int, frames: int, output: Path | None):
        super().__init__(128 + signum)
        self.signum, self.frames, self.output = signum, frames, output


@dataclass
class RenderSummary:
    output: Path
    frames: int
    seconds: float

    def __str__(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else float("inf")
        return f"{self.output}: {self.frames} frames in {self.seconds:.1f} s ({rate:.2f} frames/s)"


RENDERER_OPTIONS = ("device", "precision", "feature_cluster", "style", "seed", "channels_last", "compile")


def render_video(checkpoint: str | Path, inputs: str | Path, output: str | Path, **options) -> RenderSummary:
    """Render one input (a folder of label PNGs, a dataset sequence folder or a video file) into `output`.

    Options: palette (a file; default: the export's data.palette), labels and centres (a video input: edges or
    kmeans:K, a prepared dataset's kmeans_centres.json), first_frame, instances (folder), size (HxW or Size;
    a video's frames are resized before labelling, as prepare video does), start, max_frames, fps, crf (default: the
    export's render.fps / render.crf), frames_dir (write PNGs into the folder `output`), side_by_side (labels |
    output), overwrite, progress (tqdm bar; None = on a terminal), keep_partial and on_frame (see render_input),
    and VideoRenderer's device, precision
    (default: the export's render.precision), feature_cluster, style, seed, channels_last, compile."""
    from vid2vid.config import parse_size

    output = check_output(output, frames_dir=options.get("frames_dir", False), overwrite=options.get("overwrite"))
    if options.get("palette") is not None and Path(inputs).is_file():
        raise UserError(f"--palette {options['palette']}: maps colour-coded label PNGs; {inputs} is a video file "
                        "(its labels come from --labels), so leave --palette out")
    renderer = _renderer(checkpoint, options)
    size = parse_size(options["size"], "--size") if options.get("size") is not None else None
    source = open_input(inputs, instances=options.get("instances"), use_instance=renderer.uses_instances,
                        palette=resolve_palette(options.get("palette"), renderer), labels=options.get("labels"),
                        centres=options.get("centres"), size=size, label_nc=renderer.label_nc)
    return render_input(renderer, source, output, **options)


def _renderer(checkpoint: str | Path, options: dict) -> VideoRenderer:
    kwargs = {k: options[k] for k in RENDERER_OPTIONS if options.get(k) is not None}
    return VideoRenderer(checkpoint, **{"precision": None, **kwargs})


def render_all(checkpoint: str | Path, phase_dir: str | Path, out_dir: str | Path, **options) -> list[RenderSummary]:
    """Render every sequence of a split (<root>/<phase>_A) into out_dir/<seq>.mp4 (or out_dir/<seq>/ frames)."""
    phase_dir, out_dir = Path(phase_dir), Path(out_dir)
    if not phase_dir.is_dir():
        raise UserError(f"--all {phase_dir}: no such folder; pass a split folder such as data/x/test_A")
    sequences = sorted(p for p in phase_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not sequences:
        raise UserError(f"--all {phase_dir}: no sequence folders inside; pass a split folder such as data/x/test_A")
    if not out_dir.parent.is_dir():
        raise UserError(f"{out_dir}: the folder {out_dir.parent} does not exist; create it or choose another output")
    if options.get("labels") is not None or options.get("centres") is not None:
        raise UserError("--all renders the label-map folders of a split; --labels and --centres are for a video "
                        "file INPUT")
    renderer = _renderer(checkpoint, options)  # before creating out_dir: a bad checkpoint leaves nothing behind
    palette = resolve_palette(options.get("palette"), renderer)
    out_dir.mkdir(exist_ok=True)
    suffix = "" if options.get("frames_dir") else ".mp4"
    outputs = [check_output(out_dir / f"{seq.name}{suffix}", frames_dir=options.get("frames_dir", False),
                            overwrite=options.get("overwrite")) for seq in sequences]
    sources = [open_input(seq, instances=None, use_instance=renderer.uses_instances, palette=palette)
               for seq in sequences]
    return [render_input(renderer, source, output, **options) for source, output in zip(sources, outputs)]


def render_input(renderer: VideoRenderer, source: LabelInput, output: Path, *, first_frame: str | None = None,
                 size: Size | str | None = None, start: int = 0, max_frames: int | None = None,
                 fps: float | None = None, crf: int | None = None, frames_dir: bool = False,
                 side_by_side: bool = False, overwrite: bool = False, progress: bool | None = None,
                 keep_partial: bool = False, on_frame: Callable[[int], object] | None = None,
                 **_renderer_options) -> RenderSummary:
    """Stream one LabelInput through a renderer into `output` (checked by check_output). on_frame(n) is called
    after each frame with the number of frames rendered so far (a progress hook).

    SIGINT / SIGTERM (from the main thread) stop after the frame in progress: the output is removed, or, with
    keep_partial, finished with the frames rendered so far (a playable video); one line on stderr says which and
    RenderStopped (exit status 130 / 143) is raised. A second signal acts at once (no output)."""
    from tqdm import tqdm

    from vid2vid.config import parse_size

    size = parse_size(size, "--size") if size is not None else None
    n = _frame_count(source, start, max_frames)
    if fps is not None and not fps > 0:
        raise UserError(f"--fps {fps}: the frame rate must be > 0")
    if crf is not None and not 0 <= crf <= 51:
        raise UserError(f"--crf {crf}: H.264 quality is 0..51 (0 lossless, 18 nearly so, 23 x264's default)")
    _reset(renderer, source, first_frame, start)
    cfg = renderer.cfg.render
    sink = (FramesDirSink(output, overwrite) if frames_dir
            else Mp4Sink(output, fps=cfg.fps if fps is None else fps, crf=cfg.crf if crf is None else crf))
    reader = Reader(iter_labels(source, renderer.label_nc, size=size, start=start, count=n,
                                dontcare=renderer.dontcare))
    encoder = Encoder(sink)
    disable = None if progress is None else not progress  # None: a bar only on a terminal
    bar = tqdm(total=n, unit="frame", desc=source.name, disable=disable, leave=False)
    n_colours = max(renderer.label_nc, DONTCARE_ID + 1) if renderer.dontcare else renderer.label_nc
    palette = label_palette(n_colours) if side_by_side else None
    began, done = time.perf_counter(), 0
    reader.start()
    encoder.start()
    with StopSignals() as stop:
        try:
            for labels, inst in reader:
                frame = renderer.step(labels, inst)  # uint8 [H,W,3]
                if side_by_side:
                    frame = np.concatenate([palette[labels], frame], axis=1)
                encoder.put(frame)
                done += 1
                bar.update()
                if on_frame is not None:
                    on_frame(done)
                if stop.signum and done < n:
                    break
            stopped = stop.signum if done < n else 0  # (a signal during the last frame: the render just ends)
            if stopped and not (keep_partial and done):
                encoder.abort()
            else:
                encoder.finish()
        except BaseException:
            encoder.abort()
            raise
        finally:
            reader.close()
            bar.close()
    if stopped:
        _stopped(stopped, done, n, output if keep_partial and done else None)
    return RenderSummary(output, n, time.perf_counter() - began)


def _stopped(signum: int, done: int, n: int, kept: Path | None) -> None:
    """One line on stderr saying where the render stopped and what it left, then RenderStopped."""
    import signal
    import sys

    left = (f"kept the partial output {kept} ({done} frames)" if kept is not None
            else "no output written (--keep-partial keeps the frames rendered so far)")
    print(f"vid2vid: {signal.Signals(signum).name}: stopped after {done} of {n} frames; {left}", file=sys.stderr,
          flush=True)
    raise RenderStopped(signum, done, kept)


def _frame_count(source: LabelInput, start: int, max_frames: int | None) -> int:
    total = len(source)
    if start < 0 or start >= total:
        raise UserError(f"--start {start}: the input has {total} frames (0..{total - 1}); pass a start inside them")
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max-frames {max_frames}: must be >= 1")
    return min(total - start, max_frames or total)


def _reset(renderer: VideoRenderer, source: LabelInput, first_frame: str | None, start: int) -> None:
    """reset() with the first-frame source for this input: model.first_frame real -> the sequence's real frames."""
    if renderer.is_video and first_frame is None and renderer.cfg.model.first_frame == "real" and source.real:
        first_frame = f"real:{source.real}"
    renderer.reset(first_frame or (renderer.cfg.model.first_frame if renderer.is_video else None),
                   real_start=start)
