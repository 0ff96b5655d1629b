"""The quality segmenter: a small segmentation network S trained once on the REAL frames and label maps of a
dataset's training split and cached in the dataset folder (vid2vid.eval.quality scores generated frames with it).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from flow import atomic_path
from vid2vid.config import DataConfig, Size
from vid2vid.data.sequences import SequenceFiles, read_ids, scan
from vid2vid.data.synthetic import ensure_dataset
from vid2vid.data.transforms import apply_image, centre_transform
from vid2vid.errors import DataError, UserError
from vid2vid.video_io import VideoIndex, read_image

FORMAT_VERSION = 1  # bump when training changes in a way the settings do not show (invalidates caches)


CACHE_FOLDER = ".quality_segmenter"


N_IDS = 256  # label maps are 8-bit ids


Log = Callable[[str], None]


Dataset = str | os.PathLike | DataConfig  # a dataset root, or a config's data section


@dataclass(frozen=True)
class SegmenterSettings:
    """How the segmenter is built and trained; all of it is part of the cache key."""

    steps: int = 500  # optimizer steps (the training budget; deterministic, unlike a time limit)
    minutes: float = 0.0  # > 0: also stop after this many minutes (then S depends on the machine's speed)
    width: int = 8  # channels at full working resolution (x2, x4, x4 at 1/2, 1/4, 1/8)
    max_side: int = 256  # frames are scaled so their longer side is this many px (sides multiples of 8)
    batch_size: int = 8
    lr: float = 1e-2
    max_train_frames: int = 2000  # evenly spaced frames of the training split at most
    ignore_ids: tuple[int, ...] = ()  # label ids neither learnt nor scored (e.g. 255 = don't care)
    seed: int = 0

    def check(self) -> None:
        for name in ("steps", "width", "batch_size", "max_train_frames"):
            if getattr(self, name) < 1:
                raise UserError(f"segmenter {name} must be >= 1, got {getattr(self, name)}")
        if self.max_side < 16:
            raise UserError(f"segmenter max_side must be >= 16, got {self.max_side}")
        if self.minutes < 0:
            raise UserError(f"segmenter minutes must be >= 0 (0: no time limit), got {self.minutes}")
        if not self.lr > 0:
            raise UserError(f"segmenter lr must be > 0, got {self.lr}")


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True),
                         nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True))


class TinyUNet(nn.Module):
    """A small U-Net: [B,3,H,W] in [-1,1] (H, W multiples of 8) -> class scores [B,n_classes,H,W]. Context comes
    from an encoder down to 1/8 and a decoder back up to 1/2; at full resolution only one 3x3 convolution (the
    stem) and 1x1 convolutions run, which keeps thin structures (poles) visible at a fraction of the cost."""

    def __init__(self, n_classes: int, width: int = 8):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True))
        self.down = nn.ModuleList([_block(w, 2 * w, 2), _block(2 * w, 4 * w, 2), _block(4 * w, 4 * w, 2)])
        self.up = nn.ModuleList([_block(8 * w, 2 * w), _block(4 * w, 2 * w)])  # to 1/4, to 1/2
        self.head = nn.Sequential(nn.Conv2d(3 * w, w, 1), nn.ReLU(True), nn.Conv2d(w, n_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = [x]  # [B,w,H,W], [B,2w,H/2,W/2], [B,4w,H/4,W/4]
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = block(torch.cat([_upsample(x, skip), skip], 1))
        return self.head(torch.cat([_upsample(x, skips[0]), skips[0]], 1))


def _upsample(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)


def working_size(height: int, width: int, max_side: int) -> Size:
    """The size the segmenter sees a height x width frame at: longer side max_side (never enlarged), sides
    rounded to multiples of 8 (at least 8)."""
    scale = min(1.0, max_side / max(height, width))
    return Size(max(8, round(height * scale / 8) * 8), max(8, round(width * scale / 8) * 8))


def resize_image(image: np.ndarray, size: Size) -> np.ndarray:
    """RGB [H,W,3] -> [size.h, size.w, 3] by the dataset transforms' rule (area when shrinking, else bilinear)."""
    return apply_image(image, centre_transform(load_size=Size(*size), crop_size=Size(*size)))


def resize_ids(ids: np.ndarray, size: Size) -> np.ndarray:
    return ids if ids.shape == tuple(size) else cv2.resize(ids, (size.w, size.h), interpolation=cv2.INTER_NEAREST)


def to_input(frames: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """uint8 [N,H,W,3] -> float [N,3,H,W] in [-1, 1] (channels-last in memory: faster convolutions on CPUs)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
    return x.contiguous(memory_format=torch.channels_last)


def _new_net(n_classes: int, width: int, device: str) -> TinyUNet:
    return TinyUNet(n_classes, width).to(device, memory_format=torch.channels_last)


@dataclass
class Segmenter:
    """A trained segmenter: `net` predicts indices into `classes` (the label ids seen in training)."""

    net: TinyUNet
    classes: list[int]
    settings: SegmenterSettings
    meta: dict = field(default_factory=dict)  # training record (meta.json) + from_cache, cache
    device: str = "cpu"

    @torch.inference_mode()
    def predict(self, frames: np.ndarray, size: Size | None = None, batch: int = 8) -> np.ndarray:
        """uint8 RGB frames [N,H,W,3] -> label ids [N,h,w] int64 at `size` (default: the frames' size)."""
        n, h, w = frames.shape[:3]
        size = Size(*(size or (h, w)))
        work = working_size(h, w, self.settings.max_side)
        ids = torch.tensor(self.classes, device=self.device)
        out = []
        self.net.eval()
        for start in range(0, n, batch):
            x = np.stack([resize_image(f, work) for f in frames[start:start + batch]])
            scores = self.net(to_input(x, self.device))
            scores = F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)
            out.append(ids[scores.argmax(1)].cpu())
        return torch.cat(out).numpy()


def frames_of(seq: SequenceFiles, indices: list[int]) -> list[np.ndarray]:
    if seq.is_video:
        return VideoIndex(seq.frames).read(indices)
    return [read_image(seq.frames[i]) for i in indices]


def _training_set(root: Path, phase: str, settings: SegmenterSettings, log: Log) -> tuple[np.ndarray, np.ndarray]:
    """Real frames uint8 [N,h,w,3] and label ids [N,h,w] of a split, at the working size of its first frame,
    at most max_train_frames evenly spaced ones."""
    sequences = scan(root, phase)
    total = sum(len(s) for s in sequences)
    stride = math.ceil(total / settings.max_train_frames)
    first = read_ids(sequences[0].labels[0], "label")
    size = working_size(*first.shape, settings.max_side)
    log(f"reading {math.ceil(total / stride)} of {total} frames of {root}/{phase}_B at {size}")
    frames, labels = [], []
    for seq in sequences:
        indices = list(range(0, len(seq), stride))
        frames += [resize_image(f, size) for f in frames_of(seq, indices)]
        labels += [resize_ids(read_ids(seq.labels[i], "label"), size) for i in indices]
        if max(int(x.max()) for x in labels[-len(indices):]) >= N_IDS:
            raise DataError(f"{root}/{phase}_A/{seq.name}: label ids above {N_IDS - 1}; label maps hold 8-bit ids")
    return np.stack(frames), np.stack(labels)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Photometric jitter and occasional blur per image, so that S keys on what a class looks like rather than
    on the exact colours and sharpness of the real frames. x [B,3,H,W] in [-1,1]."""
    b = x.shape[0]

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(b, *shape, 1, 1, generator=gen)

    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * uniform(0.75, 1.25, 1) + mean + uniform(-0.15, 0.15, 1)  # contrast, brightness
    x = x * uniform(0.9, 1.1, 3) + uniform(-0.05, 0.05, 3)  # colour balance
    blurred = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    x = torch.where(torch.rand(b, 1, 1, 1, generator=gen) < 0.3, blurred, x)
    return x + 0.03 * torch.randn(x.shape, generator=gen)


def _class_weights(counts: np.ndarray) -> torch.Tensor:
    """Inverse square root of each class's pixel share (normalised to mean 1), from pixel counts [n_classes]:
    rare classes (poles, people) are not ignored by a short training run."""
    counts = torch.from_numpy(counts).double()
    weights = (counts.sum() / counts.clamp(min=1)).sqrt()
    return (weights / weights.mean()).float()


def learning_rate(peak: float, progress: float, warmup: float = 0.05) -> float:
    """The schedule over training progress in [0, 1]: linear warm-up to `peak`, then cosine decay to 0."""
    if progress < warmup:
        return peak * (0.1 + 0.9 * progress / warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


def _fit(frames: np.ndarray, targets: torch.Tensor, counts: np.ndarray, settings: SegmenterSettings,
         device: str, log: Log) -> tuple[TinyUNet, dict]:
    """Train a TinyUNet on frames uint8 [N,h,w,3] and class indices int16 [N,h,w] (-1 = ignored), with the
    pixel count of each class [n_classes], for settings.steps steps or settings.minutes, whichever ends first
    (progress, which drives the schedule, is the larger of the two fractions)."""
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    net = _new_net(len(counts), settings.width, device)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=1e-4)
    weights = _class_weights(counts).to(device)
    images = torch.from_numpy(frames)  # uint8, converted per batch
    start, cpu_start, losses = time.perf_counter(), time.process_time(), []
    budget = settings.minutes * 60 or math.inf
    progress, reported = 0.0, 0
    net.train()
    while progress < 1:
        for group in opt.param_groups:
            group["lr"] = learning_rate(settings.lr, progress)
        pick = torch.randint(len(images), (settings.batch_size,), generator=gen)
        x, y = _augment(to_input(images[pick].numpy(), "cpu"), gen), targets[pick].long()
        flip = torch.rand(len(pick), generator=gen) < 0.5
        x, y = torch.where(flip[:, None, None, None], x.flip(3), x), torch.where(flip[:, None, None], y.flip(2), y)
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(net(x), y.to(device), weight=weights, ignore_index=-1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        elapsed = time.perf_counter() - start
        progress = max(len(losses) / settings.steps, elapsed / budget)
        if int(progress * 5) > reported:
            reported = int(progress * 5)
            log(f"segmenter step {len(losses)}: loss {np.mean(losses[-20:]):.3f} ({elapsed:.0f} s, "
                f"{min(progress, 1):.0%})")
    return net, {"steps_done": len(losses), "train_seconds": time.perf_counter() - start,
                 "train_cpu_seconds": time.process_time() - cpu_start, "threads": torch.get_num_threads(),
                 "final_loss": float(np.mean(losses[-20:]))}


def _dataset_identity(root: Path, phase: str) -> str:
    """A digest of the training split's files (names relative to root, sizes, modification times)."""
    rows = []
    for seq in scan(root, phase):
        frames = [seq.frames] if seq.is_video else seq.frames
        for path in [*seq.labels, *frames]:
            stat = path.stat()
            rows.append(f"{path.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def cache_key(root: Path, phase: str, settings: SegmenterSettings) -> dict:
    """What a cached segmenter must match (JSON values: compares equal to its copy read from meta.json)."""
    key = {"format": FORMAT_VERSION, "train_phase": phase, "dataset": _dataset_identity(Path(root), phase),
           "settings": asdict(settings)}
    return json.loads(json.dumps(key))


def dataset_root(data: Dataset) -> Path:
    """A dataset root, or a DataConfig's (generating its synthetic dataset first when configured)."""
    if isinstance(data, (str, os.PathLike)):
        return Path(data)
    return ensure_dataset(data)


def train_segmenter(data: Dataset, settings: SegmenterSettings = SegmenterSettings(), *, phase: str = "train",
                    cache_dir: str | os.PathLike | None = None, device: str = "cpu",
                    log: Log | None = None) -> Segmenter:
    """The segmenter of a dataset's `phase` split (data: its root, or a DataConfig): loaded from the cache when
    one with the same key exists (training files, settings, format), else trained and stored there. The cache is
    cache_dir/<digest of the key>/ (default cache_dir: <root>/.quality_segmenter) holding segmenter.safetensors
    and meta.json (the key, the label ids, trained_at, steps_done, train_seconds, ...); meta["from_cache"] says
    whether this call loaded it."""
    log = log or (lambda message: None)
    settings.check()
    root = dataset_root(data)
    key = cache_key(root, phase, settings)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir or root / CACHE_FOLDER) / digest
    meta_path, weights_path = folder / "meta.json", folder / "segmenter.safetensors"
    if meta_path.is_file() and weights_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}  # damaged: trained again and replaced
        if meta.get("key") == key:
            net = _new_net(len(meta["classes"]), settings.width, device)
            net.load_state_dict(load_file(weights_path, device=str(device)))
            log(f"segmenter loaded from {folder} (trained {meta['trained_at']})")
            return Segmenter(net.eval(), meta["classes"], settings, {**meta, "from_cache": True,
                                                                     "cache": str(folder)}, device)
    frames, labels = _training_set(root, phase, settings, log)
    classes = sorted(set(np.unique(labels).tolist()) - set(settings.ignore_ids))
    if not classes:
        raise DataError(f"{root}/{phase}_A: no label id left to learn (all ignored by {settings.ignore_ids})")
    lookup = np.full(N_IDS, -1, np.int16)
    lookup[classes] = np.arange(len(classes))
    counts = np.bincount(labels.ravel(), minlength=N_IDS)[classes]
    log(f"training the segmenter: {len(frames)} frames at {frames.shape[1]}x{frames.shape[2]}, {len(classes)} "
        f"classes, {settings.steps} steps")
    net, record = _fit(frames, torch.from_numpy(lookup[labels]), counts, settings, device, log)
    meta = {"key": key, "classes": classes, "trained_at": datetime.now(timezone.utc).isoformat(),
            "train_frames": len(frames), "train_size": f"{frames.shape[1]}x{frames.shape[2]}",
            "torch": torch.__version__, **record}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(weights_path) as tmp:
            save_file({k: v.contiguous().cpu() for k, v in net.state_dict().items()}, str(tmp))
        with atomic_path(meta_path) as tmp:  # written last: its presence marks a complete cache entry
            tmp.write_text(json.dumps(meta, indent=1))
    except OSError as e:
        raise UserError(f"cannot store the segmenter in {folder} ({e.strerror or e}); pass a writable cache "
                        "folder (--cache DIR)") from None
    log(f"segmenter trained in {record['train_seconds']:.0f} s, stored in {folder}")
    return Segmenter(net.eval(), classes, settings, {**meta, "from_cache": False, "cache": str(folder)}, device)
