"""Whole inputs: render_video / render_all stream label maps through a VideoRenderer into an output.

RenderOptions holds every option of a render (what is read, the renderer's settings, what is written), from the
command line or a library caller. The output appears under its name only when complete: a failed write (full disk)
or an error leaves nothing behind, and so does SIGINT / SIGTERM unless keep_partial finishes the frames rendered so
far into a playable output (exit status 130 / 143 either way).
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vid2vid.config import Size, parse_size
from vid2vid.data.encoding import DONTCARE_ID
from vid2vid.errors import UserError
from vid2vid.imaging import label_palette
from vid2vid.landmarks.smoothing import OneEuro, parse_smoothing
from vid2vid.render.faces import FaceSource, iter_faces, open_face_input
from vid2vid.render.inputs import LabelInput, iter_labels, open_input, resolve_palette
from vid2vid.render.poses import PoseSource, iter_poses, open_pose_input
from vid2vid.render.renderer import VideoRenderer
from vid2vid.render.streaming import Encoder, FramesDirSink, Mp4Sink, Reader, check_output
from vid2vid.signals import StopSignals


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
    note: str = ""  # what else the summary line says (a pose input's frames without a person)

    def __str__(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else float("inf")
        note = f"; {self.note}" if self.note else ""
        return f"{self.output}: {self.frames} frames in {self.seconds:.1f} s ({rate:.2f} frames/s){note}"


@dataclass(frozen=True)
class RenderOptions:
    """Every option of a render (vid2vid render's flags; defaults: the export's render.* where None)."""

    # what is read
    palette: str | Path | None = None  # colour-coded label PNGs (default: the export's data.palette)
    labels: str | None = None  # a video input: edges or kmeans:K (a face model: face; a pose model: pose)
    landmarks: str | None = None  # a face model's video input: the landmark detector (dlib, the default; mediapipe)
    smooth: str | OneEuro | None = None  # a face model's video input: none, one-euro[:MIN_CUTOFF,BETA] or OneEuro
    centres: str | Path | None = None  # a video input: a prepared dataset's kmeans_centres.json
    pose_normalize: str | Path | None = None  # a pose model: the target dataset's root (Everybody Dance Now's
    # global pose normalisation of the source's keypoints to the target person; the input is read twice)
    instances: str | Path | None = None  # a folder of instance-id PNGs
    size: Size | str | None = None  # HxW: frames resized to it (a video's before labelling, as prepare video does;
    # a pose model's video: before detection and drawing, default the model's data.load_size)
    start: int = 0
    max_frames: int | None = None
    # the renderer (VideoRenderer's settings)
    first_frame: str | None = None  # image-model:PATH, real:DIR or zeros (default: the export's model.first_frame)
    device: str | None = None  # None: auto
    precision: str | None = None  # None: the export's render.precision
    feature_cluster: int | None = None
    style: str | Path | None = None
    seed: int | None = None
    channels_last: bool | None = None
    compile: bool | None = None
    # what is written
    fps: float | None = None  # None: the export's render.fps
    crf: int | None = None  # None: the export's render.crf
    frames_dir: bool = False  # PNG frames into the folder `output` instead of a video file
    side_by_side: bool = False  # labels | output (a pose model: source | drawn keypoints | output)
    overwrite: bool = False
    progress: bool | None = None  # a tqdm bar; None: on a terminal
    keep_partial: bool = False  # SIGINT / SIGTERM: finish the frames rendered so far into a playable output
    on_frame: Callable[[int], object] | None = None  # called after each frame with the number rendered so far

    @classmethod
    def of(cls, options: RenderOptions | None = None, **changes) -> RenderOptions:
        """options (default: all defaults) with keyword changes; an unknown option is a TypeError naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"render option {unknown[0]!r}: unknown; the options are {', '.join(sorted(known))}")
        return replace(options or cls(), **changes)

    def renderer(self, checkpoint: str | Path) -> VideoRenderer:
        """The VideoRenderer of these options (the export's render.precision unless precision is given)."""
        settings = {"device": self.device, "precision": self.precision, "feature_cluster": self.feature_cluster,
                    "style": self.style, "seed": self.seed, "channels_last": self.channels_last,
                    "compile": self.compile}
        return VideoRenderer(checkpoint, **{"precision": None,
                                            **{k: v for k, v in settings.items() if v is not None}})


def render_video(checkpoint: str | Path, inputs: str | Path, output: str | Path,
                 options: RenderOptions | None = None, **changes) -> RenderSummary:
    """Render one input (a folder of label PNGs, a dataset sequence folder or a video file) into `output`, with
    RenderOptions (or its fields as keywords: render_video(ckpt, inputs, "out.mp4", fps=25, device="cpu"))."""
    o = RenderOptions.of(options, **changes)
    output = check_output(output, frames_dir=o.frames_dir, overwrite=o.overwrite)
    if o.palette is not None and Path(inputs).is_file():
        raise UserError(f"--palette {o.palette}: maps colour-coded label PNGs; {inputs} is a video file "
                        "(its labels come from --labels), so leave --palette out")
    renderer = o.renderer(checkpoint)
    if renderer.pose is not None:
        return render_input(renderer, open_pose_source(inputs, o, renderer), output, o)
    if o.pose_normalize is not None:
        raise UserError(f"--pose-normalize {o.pose_normalize}: normalises a pose model's keypoints; this model takes "
                        f"{'landmarks' if renderer.face is not None else 'label maps'}, so leave it out")
    if renderer.face is not None:
        return render_input(renderer, open_face_source(inputs, o), output, o)
    if _smoothing(o) is not None:
        raise UserError(f"--smooth {o.smooth}: smooths a face model's detected landmarks; this model takes label "
                        "maps, so leave it out")
    size = parse_size(o.size, "--size") if o.size is not None else None
    source = open_input(inputs, instances=o.instances, use_instance=renderer.uses_instances,
                        palette=resolve_palette(o.palette, renderer), labels=o.labels, centres=o.centres, size=size,
                        label_nc=renderer.label_nc)
    return render_input(renderer, source, output, o)


def render_all(checkpoint: str | Path, phase_dir: str | Path, out_dir: str | Path,
               options: RenderOptions | None = None, **changes) -> list[RenderSummary]:
    """Render every sequence of a split (<root>/<phase>_A) into out_dir/<seq>.mp4 (or out_dir/<seq>/ frames)."""
    o = RenderOptions.of(options, **changes)
    phase_dir, out_dir = Path(phase_dir), Path(out_dir)
    if not phase_dir.is_dir():
        raise UserError(f"--all {phase_dir}: no such folder; pass a split folder such as data/x/test_A")
    sequences = sorted(p for p in phase_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not sequences:
        raise UserError(f"--all {phase_dir}: no sequence folders inside; pass a split folder such as data/x/test_A")
    if not out_dir.parent.is_dir():
        raise UserError(f"{out_dir}: the folder {out_dir.parent} does not exist; create it or choose another output")
    if o.labels is not None or o.centres is not None:
        raise UserError("--all renders the label-map folders of a split; --labels and --centres are for a video "
                        "file INPUT")
    renderer = o.renderer(checkpoint)  # before creating out_dir: a bad checkpoint leaves nothing behind
    if o.pose_normalize is not None and renderer.pose is None:
        raise UserError(f"--pose-normalize {o.pose_normalize}: normalises a pose model's keypoints; leave it out")
    palette = resolve_palette(o.palette, renderer)
    out_dir.mkdir(exist_ok=True)
    suffix = "" if o.frames_dir else ".mp4"
    outputs = [check_output(out_dir / f"{seq.name}{suffix}", frames_dir=o.frames_dir, overwrite=o.overwrite)
               for seq in sequences]
    sources = [open_face_source(seq, o) if renderer.face is not None else
               open_pose_source(seq, o, renderer) if renderer.pose is not None else
               open_input(seq, instances=None, use_instance=renderer.uses_instances, palette=palette)
               for seq in sequences]
    return [render_input(renderer, source, output, o) for source, output in zip(sources, outputs)]


def open_face_source(inputs: str | Path, o: RenderOptions) -> FaceSource:
    """A face model's input: a keypoint sequence folder with its frames, or a video file whose landmarks are
    detected (--labels face, --landmarks); options for label inputs refused."""
    if o.labels not in (None, "face"):
        raise UserError(f"--labels {o.labels}: this is a face model; its video input takes --labels face (landmarks "
                        "detected with --landmarks dlib|mediapipe)")
    given = [flag for flag, value in (("--palette", o.palette), ("--centres", o.centres),
                                      ("--instances", o.instances), ("--size", o.size)) if value is not None]
    if given:
        raise UserError(f"{given[0]}: not for a face model, which draws its input from the landmarks of "
                        f"{inputs} and its frames; leave it out")
    return open_face_input(inputs, o.landmarks, _smoothing(o))


def open_pose_source(inputs: str | Path, o: RenderOptions, renderer: VideoRenderer) -> PoseSource:
    """A pose model's input: a prepared pose sequence folder, or a video file whose person is detected (--labels
    pose; its frames resized to --size, default the model's data.load_size); options for other inputs refused."""
    if o.labels not in (None, "pose"):
        raise UserError(f"--labels {o.labels}: this is a pose model; its video input takes --labels pose (the person's "
                        "keypoints detected per frame by MediaPipe Holistic)")
    given = [flag for flag, value in (("--palette", o.palette), ("--centres", o.centres), ("--instances", o.instances),
                                      ("--landmarks", o.landmarks), ("--smooth", o.smooth)) if value is not None]
    if given:
        raise UserError(f"{given[0]}: not for a pose model, which draws its input from the keypoints of the person in "
                        f"{inputs}; leave it out")
    size = parse_size(o.size, "--size") if o.size is not None else None
    if size is None and Path(inputs).is_file():
        size = renderer.cfg.data.load_size
    return open_pose_input(inputs, renderer.cfg.data.pose, size=size, normalize=o.pose_normalize)


def _smoothing(o: RenderOptions) -> OneEuro | None:
    """RenderOptions.smooth as text (--smooth's forms) or OneEuro -> OneEuro, or None for no smoothing."""
    return parse_smoothing(o.smooth) if isinstance(o.smooth, str) else o.smooth


def render_input(renderer: VideoRenderer, source: LabelInput | FaceSource | PoseSource, output: Path,
                 options: RenderOptions | None = None) -> RenderSummary:
    """Stream one LabelInput through a renderer into `output` (checked by check_output).

    SIGINT / SIGTERM (from the main thread) stop after the frame in progress: the output is removed, or, with
    keep_partial, finished with the frames rendered so far (a playable video); one line on stderr says which and
    RenderStopped (exit status 130 / 143) is raised. A second signal acts at once (no output)."""
    o = options or RenderOptions()
    size = parse_size(o.size, "--size") if o.size is not None and not isinstance(source, PoseSource) else None
    n = _frame_count(source, o.start, o.max_frames)
    _check_encoding(o)
    _reset(renderer, source, o.first_frame, o.start)
    sink = _sink(renderer, output, o)
    reader = Reader(iter_faces(source, o.start, n) if isinstance(source, FaceSource) else
                    iter_poses(source, o.start, n) if isinstance(source, PoseSource) else
                    iter_labels(source, renderer.label_nc, size=size, start=o.start, count=n,
                                dontcare=renderer.dontcare))
    encoder = Encoder(sink)
    disable = None if o.progress is None else not o.progress  # None: a bar only on a terminal
    bar = tqdm(total=n, unit="frame", desc=source.name, disable=disable, leave=False)
    n_colours = max(renderer.label_nc, DONTCARE_ID + 1) if renderer.dontcare else renderer.label_nc
    palette = label_palette(n_colours) if o.side_by_side else None
    began = time.perf_counter()
    reader.start()
    encoder.start()
    done, stopped = _stream(renderer, reader, encoder, bar, n, palette, o)
    if stopped:
        _stopped(stopped, done, n, output if o.keep_partial and done else None)
    note = (f"{source.missing} of {n} frames had no person (drawn empty, as OpenPose's \"people\": [])"
            if isinstance(source, PoseSource) else "")
    return RenderSummary(output, n, time.perf_counter() - began, note)


def _check_encoding(o: RenderOptions) -> None:
    if o.fps is not None and not o.fps > 0:
        raise UserError(f"--fps {o.fps}: the frame rate must be > 0")
    if o.crf is not None and not 0 <= o.crf <= 51:
        raise UserError(f"--crf {o.crf}: H.264 quality is 0..51 (0 lossless, 18 nearly so, 23 x264's default)")


def _sink(renderer: VideoRenderer, output: Path, o: RenderOptions):
    """PNG frames into a folder, or H.264 at --fps / --crf (default: the export's render.fps / render.crf)."""
    cfg = renderer.cfg.render
    if o.frames_dir:
        return FramesDirSink(output, o.overwrite)
    return Mp4Sink(output, fps=cfg.fps if o.fps is None else o.fps, crf=cfg.crf if o.crf is None else o.crf)


def _stream(renderer: VideoRenderer, reader: Reader, encoder: Encoder, bar, n: int, palette, o: RenderOptions
            ) -> tuple[int, int]:
    """Frames from the reader through the renderer into the encoder until the input ends or a signal stops it;
    (frames done, the signal that stopped it or 0). The encoder finishes (or aborts: nothing written)."""
    done = 0
    with StopSignals() as stop:
        try:
            for item in reader:  # (labels, inst), or a face model's {"landmarks", "frame"}, a pose model's
                # {"people", "frame", "mask", "iuv"}
                frame = renderer.step(**item) if isinstance(item, dict) else renderer.step(*item)  # uint8 [H,W,3]
                if palette is not None:
                    frame = np.concatenate([_input_picture(renderer, item, palette), frame], axis=1)
                encoder.put(frame)
                done += 1
                bar.update()
                if o.on_frame is not None:
                    o.on_frame(done)
                if stop.signum and done < n:
                    break
            stopped = stop.signum if done < n else 0  # (a signal during the last frame: the render just ends)
            if stopped and not (o.keep_partial and done):
                encoder.abort()
            else:
                encoder.finish()
        except BaseException:
            encoder.abort()
            raise
        finally:
            reader.close()
            bar.close()
    return done, stopped


def _input_picture(renderer: VideoRenderer, item, palette: np.ndarray) -> np.ndarray:
    """What --side-by-side shows of the input: the labels in colour, a face model's edge map (grey), or a pose model's
    source frame and drawn keypoints (both as the model sees them: resized, cropped)."""
    if isinstance(item, dict) and renderer.pose is not None:
        return np.concatenate(renderer.pose_input.pictures(), axis=1)
    if isinstance(item, dict):
        edges = np.round(renderer.face_input.cond[0] * 255).astype(np.uint8)  # [h,w]
        return np.repeat(edges[..., None], 3, axis=2)
    return palette[item[0]]


def _stopped(signum: int, done: int, n: int, kept: Path | None) -> None:
    """One line on stderr saying where the render stopped and what it left, then RenderStopped."""
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
