"""Render inputs: a folder of label-id PNGs or a dataset sequence; colour-coded label PNGs with a palette (--palette
FILE or the export's data.palette: one [R, G, B] per id; single-channel PNGs stay ids); or a video file, converted to
labels by vid2vid.data.prepare.FrameLabeller exactly as `vid2vid prepare video` does (--labels edges or kmeans:K,
with --centres <dataset>/kmeans_centres.json for the dataset's colour clusters). open_input opens one, iter_labels
reads its frames, checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import yaml

from vid2vid.config import Size, palette_problem
from vid2vid.data.encoding import DONTCARE_ID
from vid2vid.data.prepare import CENTRES_FILE, fit_labeller, load_labeller, parse_labels
from vid2vid.errors import DataError, UserError
from vid2vid.render.renderer import VideoRenderer, label_range, log
from vid2vid.video_io import IMAGE_EXTENSIONS, iter_frames, probe, read_image


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
