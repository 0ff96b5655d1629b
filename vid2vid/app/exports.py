"""The exported models `vid2vid app` offers: found under the export folders, addressed by an id, never by a path.

An export is a folder with config.yaml and generator.safetensors (what `vid2vid train` writes into
<train.out_dir>/export). Its id is its path under the export folder it was found in, with every character other than
letters, digits, `_` and `.` made `-` (runs/demo/20min/vid2vid/export -> demo-20min-vid2vid-export); a request names
an id, and only ids of this list resolve to a folder.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from vid2vid.checkpoint import EXPORT_CONFIG, EXPORT_WEIGHTS, list_checkpoints
from vid2vid.config import Config, from_dict
from vid2vid.data.prepare import CENTRES_FILE
from vid2vid.errors import UserError
from vid2vid.families import is_sequential
from vid2vid.imaging import label_palette

log = logging.getLogger("vid2vid")


@dataclass(frozen=True)
class ExportInfo:
    id: str
    path: Path
    cfg: Config
    steps: int | None  # the training steps of the run's newest checkpoint; None when the run folder has none

    @property
    def kind(self) -> str:
        """video (the sequential vid2vid model) or image (a per-frame model)."""
        return "video" if is_sequential(self.cfg) else "image"

    @property
    def centres(self) -> Path | None:
        """The k-means centres of the dataset the model was trained on, when its data.root has them."""
        path = Path(self.cfg.data.root) / CENTRES_FILE
        return path if path.is_file() else None

    @property
    def input_kind(self) -> str:
        """What the model takes: face, pose, kmeans (a prepared video's colour clusters), edges, or labels."""
        d = self.cfg.data
        if d.condition != "labels":
            return d.condition
        return "kmeans" if self.centres is not None else "edges" if d.label_nc == 2 else "labels"

    @property
    def default_labels(self) -> str:
        """How a video becomes this model's input, as `vid2vid render --labels` takes it."""
        kind, nc = self.input_kind, self.cfg.data.label_nc
        return {"kmeans": f"kmeans:{nc}", "labels": f"kmeans:{min(nc, 8)}"}.get(kind, kind)

    @property
    def first_frame_without_real(self) -> str | None:
        """The first-frame source for an input without real frames (a painting, a camera): the model's own default
        (None), except zeros where that default is its input's real frames."""
        return "zeros" if self.kind == "video" and self.cfg.model.first_frame == "real" else None

    def sequences(self) -> list[str]:
        """The test (else train) sequences of the model's dataset, as <phase>_A/<name> (label models only)."""
        if self.cfg.data.condition != "labels":
            return []
        root = Path(self.cfg.data.root)
        for phase in ("test", "train"):
            folder = root / f"{phase}_A"
            if folder.is_dir():
                return sorted(f"{folder.name}/{p.name}" for p in folder.iterdir() if p.is_dir())
        return []

    def sequence_path(self, name: str) -> Path:
        """A sequence named as sequences() lists it -> its folder; any other name is a UserError."""
        if name not in self.sequences():
            raise UserError(f"sequence {name!r}: not a sequence of {self.id}'s dataset; pick one GET /api/exports "
                            "lists")
        return Path(self.cfg.data.root) / name

    def describe(self) -> dict:
        d = self.cfg.data
        return {"id": self.id, "kind": self.kind, "model": self.cfg.model.name, "input": self.input_kind,
                "labels": d.label_nc, "steps": self.steps, "default_labels": self.default_labels,
                "size": f"{d.load_size[0]}x{d.load_size[1]}", "palette": _palette(self.cfg),
                "sequences": self.sequences()}


def _palette(cfg: Config) -> list[list[int]]:
    """The [R, G, B] of each label id: data.palette where the config has one, else the colours renders use."""
    if cfg.data.palette:
        return [list(c) for c in cfg.data.palette]
    return label_palette(cfg.data.label_nc).tolist()


def _steps(export: Path) -> int | None:
    found = list_checkpoints(export.parent / "checkpoints")
    return int(found[-1].name.removeprefix("step_")) if found else None


def _read(export: Path) -> Config | None:
    try:
        return from_dict(yaml.safe_load((export / EXPORT_CONFIG).read_text()))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, UserError) as e:
        log.warning("%s: skipped, its %s is not a valid config (%s)", export, EXPORT_CONFIG, e)
        return None


def find_exports(folders: list[Path]) -> dict[str, ExportInfo]:
    """Every export under the folders (a folder may itself be an export), by id."""
    found: dict[str, ExportInfo] = {}
    for folder in folders:
        for config in sorted(folder.rglob(EXPORT_CONFIG)):
            export = config.parent
            if not (export / EXPORT_WEIGHTS).is_file() or (cfg := _read(export)) is None:
                continue
            relative = export.relative_to(folder).as_posix()
            base = re.sub(r"[^A-Za-z0-9_.]+", "-", relative if relative != "." else folder.name).strip("-.") or "export"
            key, n = base, 2
            while key in found:
                key, n = f"{base}-{n}", n + 1
            found[key] = ExportInfo(key, export.resolve(), cfg, _steps(export))
    return found
