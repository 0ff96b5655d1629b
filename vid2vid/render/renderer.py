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
A face model steps with a frame's landmarks and the frame (step(landmarks=, frame=)); a pose model with the frame's
OpenPose people, the frame and, as its data.pose reads them, the body mask and DensePose's IUV (step(people=, frame=,
mask=, iuv=)), its input drawn by the pose dataset's own frame_input; a pose video model's first frames are zeros or
an image model's, never real frames (the source person's own frames must not seed a motion transfer).

Sizes the model's stride cannot take are padded (repeating the last row and column) and cropped back.
Inputs are opened and read by vid2vid.render.inputs; whole inputs stream through vid2vid.render.pipeline.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import torch

from vid2vid import temporal
from vid2vid.checkpoint import load_export, read_style
from vid2vid.config import Size, model_stride
from vid2vid.data.encoding import DONTCARE_ID, pose_options, semantic_channels, semantic_input
from vid2vid.data.face_input import N_POINTS, FaceInput, FaceOptions, FaceSequence, centre_crop
from vid2vid.data.openpose import Person
from vid2vid.data.poses import frame_input, frame_target
from vid2vid.data.transforms import centre_transform
from vid2vid.errors import ConfigError, UserError
from vid2vid.families import is_sequential
from vid2vid.imaging import from_uint8, to_uint8
from vid2vid.video_io import iter_frames, probe

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
log = logging.getLogger("vid2vid")


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
    try:
        return load_export(checkpoint, device)
    except ConfigError as e:
        raise UserError(f"{checkpoint}: its config.yaml is not a valid config ({e}); re-export the model") from None


class ZerosFirst:
    """first_frame zeros: mid-grey seed frames (the history fills with generated frames)."""

    mode = "zeros"

    def frame(self, index: int, labels: torch.Tensor, inst: torch.Tensor | None, size: Size, **face) -> torch.Tensor:
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

    def frame(self, index: int, labels: torch.Tensor, inst: torch.Tensor | None, size: Size, **face) -> torch.Tensor:
        rgb = self.frames[index]
        if rgb.shape[:2] != tuple(size):
            rgb = cv2.resize(rgb, (size.w, size.h), interpolation=cv2.INTER_AREA)
        return pad_to(from_uint8(rgb, labels.device), *labels.shape[-2:])  # [1,3,Hp,Wp]


class NoRealFrames:
    """model.first_frame real without real frames: fails when a seed frame is needed."""

    mode = "real"

    def __init__(self, error: UserError):
        self.error = error

    def frame(self, index: int, labels: torch.Tensor, inst: torch.Tensor | None, size: Size, **face) -> torch.Tensor:
        raise self.error


class FaceFramesFirst:
    """A face model's first_frame real: the face-cropped frames given to step() with the landmarks."""

    mode = "real"

    def frame(self, index: int, labels: torch.Tensor, inst: torch.Tensor | None, size: Size, *,
              cond: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return real  # [1,3,Hp,Wp]


class ImageModelFirst:
    """first_frame image-model:PATH: an exported per-frame model generates the seed frames."""

    def __init__(self, path: str, device: torch.device, label_nc: int, options: dict, condition: str = "labels",
                 channels: int | None = None):
        self.mode = f"image-model:{path}"
        self.export = load_model(path, device)
        cfg = self.export.cfg
        if is_sequential(cfg):
            raise UserError(f"first frame image-model:{path} is a video model; pass an exported per-frame model "
                            "(pix2pix, pix2pixhd or spade)")
        if cfg.data.condition != condition:
            raise UserError(f"first frame image-model:{path} takes data.condition {cfg.data.condition} but the video "
                            f"model takes {condition}; use a per-frame model trained on the same input")
        if channels is not None and semantic_channels(cfg.data) != channels:
            raise UserError(f"first frame image-model:{path} takes {semantic_channels(cfg.data)} input channels but "
                            f"the video model takes {channels} (data.pose: DensePose, OpenPose, mask); use a per-frame "
                            "model trained on the same input")
        if cfg.data.label_nc < label_nc:
            raise UserError(f"first frame image-model:{path} has label_nc {cfg.data.label_nc} but the video model "
                            f"has {label_nc}; use an image model trained on the same labels")
        self.options = {**options, "seed": 0 if options.get("seed") is None else options["seed"]}
        self.stride = model_stride(cfg.model)

    def frame(self, index: int, labels: torch.Tensor, inst: torch.Tensor | None, size: Size, *,
              cond: torch.Tensor | None = None, real: torch.Tensor | None = None) -> torch.Tensor:
        # real: a face model's face-cropped frame (a bank of training images picks the nearest one's features)
        return self.export.generate(labels, inst, cond=cond, real=real, **self.options).float()  # [1,3,Hp,Wp]


def _picture(x, index: int, what: str, channels: int | None, values: str, size: tuple[int, int] | None = None
             ) -> np.ndarray:
    """A uint8 picture [H,W] (channels None) or [H,W,channels] of a pose model's step, checked -> numpy."""
    shape = "[H,W]" if channels is None else f"[H,W,{channels}]"
    a = np.asarray(x) if x is not None else None
    ok = (a is not None and a.dtype == np.uint8 and a.ndim == (2 if channels is None else 3)
          and (channels is None or a.shape[2] == channels))
    if not ok:
        got = "none" if a is None else f"{a.dtype} {a.shape}"
        raise UserError(f"frame {index}: a pose model needs {what} as uint8 {shape}{f' ({values})' if values else ''},"
                        f" got {got}")
    if size is not None and a.shape[:2] != tuple(size):
        raise UserError(f"frame {index}: {what} is {a.shape[0]}x{a.shape[1]}, the frame {size[0]}x{size[1]}; they "
                        "must have the same size")
    return a


@dataclass
class PoseInput:
    """A pose model's last frame as drawn: its input cond [C,h,w] in [-1,1] and its real frame [3,h,w] in [-1,1]
    (the source frame resized and cropped as the dataset crops it)."""

    cond: np.ndarray
    real: np.ndarray
    openpose_only: bool

    def pictures(self) -> tuple[np.ndarray, np.ndarray]:
        """(the source frame, the OpenPose rendering) as uint8 [h,w,3] each."""
        first = 0 if self.openpose_only else 3

        def rgb(x: np.ndarray) -> np.ndarray:
            return np.round((np.moveaxis(x, 0, -1) + 1) * 127.5).clip(0, 255).astype(np.uint8)

        return rgb(self.real), rgb(self.cond[first: first + 3])


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
            style = read_style(style)
        self.options = {"cluster": feature_cluster, "style": style, "seed": seed}
        generator = self.export.generator
        if channels_last:
            generator = generator.to(memory_format=torch.channels_last)
        # (inductor's freezing was ~10% faster here but renders garbage when ATen's CPU capability is AVX2: not used)
        self.export.generator = torch.compile(generator) if compile else generator
        self._image_models: dict[str, ImageModelFirst] = {}
        d = self.cfg.data
        self.pose = pose_options(d.pose) if d.condition == "pose" else None  # a pose model draws from keypoints
        self.pose_input: PoseInput | None = None  # the last frame's (for previews)
        self.face = (FaceSequence(d.load_size, FaceOptions(d.face.no_dist_map, d.face.no_canny_edge))
                     if d.condition == "face" else None)  # a face model draws its input from landmarks
        self.face_input: FaceInput | None = None  # the last frame's (for previews)
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
        if self.face is not None:
            self.face.reset()
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
        if kind == "real" and self.pose is not None:
            raise UserError(f"first frame {spec!r}: not for a pose model, which transfers motion: the pose source's "
                            "own frames must never seed it (the original's --no_first_img); pass zeros (the pose "
                            "models' default) or image-model:PATH (a per-frame pose model)")
        if kind == "real" and self.face is not None:
            if path:
                raise UserError(f"first frame {spec!r}: a face model's real first frames are the frames given with "
                                "the landmarks, cropped to the face; pass real (no folder), image-model:PATH or zeros")
            return FaceFramesFirst()
        if kind == "real" and path:
            return RealFirst(path, self.n_seed, real_start)
        if kind == "real" and lazy:
            return NoRealFrames(self._no_real_frames())
        if kind == "real":
            raise self._no_real_frames()
        if kind == "image-model" and path:
            if path not in self._image_models:
                channels = semantic_channels(self.cfg.data) if self.pose is not None else None
                self._image_models[path] = ImageModelFirst(path, self.device, self.label_nc, self.options,
                                                           self.cfg.data.condition, channels)
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
    def step(self, labels=None, instances=None, *, landmarks=None, frame=None, people=None, mask=None,
             iuv=None) -> np.ndarray:
        """labels [H,W] integer ids (numpy or torch), instances [H,W] ids or None -> the next frame, uint8 [H,W,3].
        A face model (data.condition face) takes a frame's landmarks [68,2] (x, y pixels; dlib's scheme) and the
        frame itself (uint8 [H,W,3] RGB: its size places the face crop, its Canny edges are the background) and
        returns the generated face crop (drawn at data.load_size, its centre data.crop_size as in the test phase); the
        crop square comes from the video's first frame.
        A pose model (data.condition pose) takes a frame's people (a list of vid2vid.data.openpose.Person; [] for a
        frame without a person), the frame (uint8 [H,W,3]: the size the keypoints are drawn at), its body mask (uint8
        [H,W], 0/255) with data.pose.mask and its DensePose IUV (uint8 [H,W,3]) unless data.pose.openpose_only; the
        input is drawn as the pose dataset's test phase draws it (vid2vid.data.poses.frame_input) and the frame
        generated at its size (data.crop_size, or its central columns)."""
        if self.pose is not None:
            labels_t, inst_t, face = self._prepare_pose(people, frame, mask, iuv)
        elif self.face is not None:
            labels_t, inst_t, face = self._prepare_face(landmarks, frame)
        else:
            if labels is None:
                raise UserError("step(labels, instances): this model takes label maps, not landmarks")
            (labels_t, inst_t), face = self._prepare(labels, instances), {}  # [1,Hp,Wp] int64 on the device
        autocast = (contextlib.nullcontext() if self.precision == "fp32"
                    else torch.autocast(self.device.type, dtype=PRECISIONS[self.precision]))
        with autocast:
            if self.is_video:
                frame = self._video_step(labels_t, inst_t, face)
            else:
                frame = self.export.generate(labels_t, inst_t, cond=face.get("cond"), real=face.get("real"),
                                             **self.options)
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

    def _prepare_face(self, landmarks, frame) -> tuple[torch.Tensor, None, dict[str, torch.Tensor]]:
        """Checks the landmarks and the frame; draws the face input (vid2vid.data.face_input) -> (part labels
        [1,Hp,Wp], None, {"cond": [1,C,Hp,Wp], "real": the face-cropped frame [1,3,Hp,Wp]}) on the device."""
        points = np.asarray(landmarks if landmarks is not None else [], dtype=np.float32)
        if points.shape != (N_POINTS, 2) or not np.isfinite(points).all():
            raise UserError(f"frame {self.index}: landmarks must be {N_POINTS} finite (x, y) points (dlib's scheme), "
                            f"got shape {points.shape}; a face model takes step(landmarks=..., frame=...)")
        rgb = np.asarray(frame) if frame is not None else None
        if rgb is None or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            got = "none" if rgb is None else f"{rgb.dtype} {rgb.shape}"
            raise UserError(f"frame {self.index}: a face model needs the frame as uint8 [H,W,3] RGB with its landmarks "
                            f"(for the face crop and the Canny background edges), got {got}")
        if self.face.box is not None and rgb.shape[:2] != self._frame_size:
            raise UserError(f"frame {self.index}: {rgb.shape[0]}x{rgb.shape[1]}, earlier frames "
                            f"{self._frame_size[0]}x{self._frame_size[1]}; every frame of a video must have the same "
                            "size (reset() starts a new video)")
        self._frame_size = rgb.shape[:2]
        face, crop = self.face.draw(points, rgb)
        load, self.size = self.face.size, Size(*self.cfg.data.crop_size)
        rows, cols = centre_crop(load, self.size)  # the centre, as the test phase crops
        self.face_input = FaceInput(face.cond[:, rows, cols], face.parts[rows, cols])
        stride = self.stride
        padded = (-(-self.size.h // stride) * stride, -(-self.size.w // stride) * stride)
        parts = pad_to(torch.from_numpy(self.face_input.parts.astype(np.int64))[None].to(self.device), *padded)
        cond = pad_to(torch.from_numpy(np.ascontiguousarray(self.face_input.cond))[None].to(self.device), *padded)
        real = from_uint8(np.ascontiguousarray(crop[rows, cols]), self.device)
        return parts, None, {"cond": cond, "real": pad_to(real, *padded)}

    def _prepare_pose(self, people, frame, mask, iuv) -> tuple[torch.Tensor, None, dict[str, torch.Tensor]]:
        """Checks the people, the frame and the pictures the model reads; draws the pose input (the dataset's
        frame_input, test phase) -> (labels [1,Hp,Wp], None, {"cond": [1,C,Hp,Wp]}) on the device."""
        d = self.cfg.data
        if people is None or isinstance(people, Person) or not all(isinstance(p, Person) for p in people):
            raise UserError(f"frame {self.index}: a pose model takes step(people=[Person, ...], frame=...) "
                            "(vid2vid.data.openpose.Person; people=[] for a frame without a person)")
        rgb = _picture(frame, self.index, "the frame", 3, "its size is the size the keypoints are drawn at")
        if self.pose_input is not None and self.index > 0 and rgb.shape[:2] != self._frame_size:
            raise UserError(f"frame {self.index}: {rgb.shape[0]}x{rgb.shape[1]}, earlier frames "
                            f"{self._frame_size[0]}x{self._frame_size[1]}; every frame of a video must have the same "
                            "size (reset() starts a new video)")
        self._frame_size = rgb.shape[:2]
        if d.pose.mask:
            mask = _picture(mask, self.index, "the body mask (data.pose.mask)", None, "0/255", rgb.shape[:2])
        if not d.pose.openpose_only:
            iuv = _picture(iuv, self.index, "DensePose's IUV (data.pose.openpose_only is false)", 3, "", rgb.shape[:2])
        tf = centre_transform(load_size=d.load_size, crop_size=d.crop_size)  # the test phase's
        h, w = rgb.shape[:2]
        cond, labels = frame_input(list(people), h, w, tf, self.pose, iuv=iuv, mask=mask if d.pose.mask else None,
                                   central=d.pose.central_columns)
        self.pose_input = PoseInput(cond, frame_target(rgb, tf, d.pose.central_columns), self.pose.openpose_only)
        self.size = Size(*cond.shape[-2:])
        stride = self.stride
        padded = (-(-self.size.h // stride) * stride, -(-self.size.w // stride) * stride)
        labels_t = pad_to(torch.from_numpy(labels.astype(np.int64))[None].to(self.device), *padded)
        cond_t = pad_to(torch.from_numpy(cond)[None].to(self.device), *padded)
        return labels_t, None, {"cond": cond_t}

    def _video_step(self, labels: torch.Tensor, inst: torch.Tensor | None, face: dict) -> torch.Tensor:
        """One frame of the video model: a seed frame while the history fills, then temporal.step -> [1,3,Hp,Wp].
        face: {"cond", "real"} of a face model, else empty."""
        sem = semantic_input(labels, inst, self.label_nc, self.uses_instances, cond=face.get("cond"))  # [1,C,Hp,Wp]
        if self.history is None:
            seed = self.first.frame(self.index, labels, inst, self.size, **face)  # [1,3,Hp,Wp]
            self._seed_labels.append(sem)
            self._seed_frames.append(seed)
            if len(self._seed_labels) == self.n_seed:
                self.history = temporal.start_history(self.first.mode, torch.stack(self._seed_labels, 1),
                                                      torch.stack(self._seed_frames, 1))
                self._seed_labels, self._seed_frames = [], []
            return seed
        output, self.history = temporal.step(self.export.generator, self.history, sem)
        return output.final
