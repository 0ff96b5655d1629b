"""What a run writes besides checkpoints: log.jsonl, sample PNGs, the tracker's flat config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torchvision.utils import make_grid

from flow import atomic_path
from vid2vid import checkpoint as ckpt
from vid2vid.config import Config, to_dict
from vid2vid.errors import writing
from vid2vid.imaging import label_colours
from vid2vid.video_io import write_image


def _logged_step(line: str) -> float:
    """The step of a log line; infinity for a line a crash cut short (dropped on resume)."""
    try:
        return json.loads(line).get("step", 0)
    except (json.JSONDecodeError, AttributeError):
        return math.inf


class JsonlLog:
    """`<out_dir>/log.jsonl`: one JSON object per logged step; a resume drops lines after its step."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        if resume_step is not None and path.is_file():
            keep = [line for line in path.read_text().splitlines() if _logged_step(line) <= resume_step]
            ckpt.atomic_write_text(path, "".join(line + "\n" for line in keep))
        elif resume_step is None and path.exists():
            path.unlink()

    def write(self, record: dict) -> None:
        with writing(self.path), self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def sample_grid(images: dict, fake: torch.Tensor, label_nc: int) -> torch.Tensor:
    """Rows of (labels, real, fake) -> one image [3, H', W'] in [0, 1]."""
    rows = torch.stack([label_colours(images["labels"], label_nc), images["frames"].float(), fake.float()], 1)
    return make_grid(rearrange(rows, "n r c h w -> (n r) c h w").cpu().clamp(-1, 1) * 0.5 + 0.5, nrow=3, padding=2)


def write_png(path: Path, image: torch.Tensor) -> None:
    """image [3,H,W] in [0,1] -> PNG, atomically."""
    with atomic_path(path) as tmp:
        write_image(tmp, (image.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))


def flat_config(cfg: Config) -> dict:
    out = {}

    def walk(tree, prefix):
        for k, v in tree.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}/")
            else:
                out[prefix + k] = v if isinstance(v, (int, float, str, bool)) else str(v)

    walk(to_dict(cfg), "")
    return out
