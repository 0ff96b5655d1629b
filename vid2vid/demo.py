"""`vid2vid demo` (what `make demo` runs): the product end to end, on the built-in synthetic street dataset or on
a user's own video (a talking head, or a person: with a motion transfer).

    vid2vid demo [--minutes 20] [--out runs/demo]
    vid2vid demo --task face --video talk.mp4 [--minutes 20] [--landmarks dlib|mediapipe] [--out runs/demo_face]
    vid2vid demo --task pose --video dance.mp4 [--minutes 20] [--transfer walk.mp4] [--size 256x320]
                 [--out runs/demo_pose]

The street demo's stages, each with its share of the budget (20 minutes: 6 + 11 + 2, plus about a minute to render
and measure):

  1. data       generate and check the synthetic street dataset (configs/demo*.yaml's data.root)
  2. per-frame  train pix2pixHD (configs/demo_image.yaml) for 30% of the minutes
  3. vid2vid    train the video model (configs/demo.yaml) for 55% of the minutes, its image branch started from
                the per-frame model (model.init_from, vid2vid.train.warm_start)
  4. segmenter  train the quality metric's segmentation network on the real training frames (500 steps,
                about 2 minutes on 2 idle cores; a fixed step count, so its ceiling does not depend on the
                machine's load; cached in the dataset folder)
  5. measure    render the held-out sequences with both models through the product's renderer (the video
                model's first frames made by the per-frame model) and make the two baselines from the per-frame
                frames (blurred to the video model's detail; flow-guided recursive filter), then PSNR,
                segmentation mIoU, detail, E_warp raw and at matched detail, and tOF against the real frames
                (tools/compare_models.py); the side-by-side mp4, a PNG strip and the flicker plot

The face demo (--task face) runs the same pipeline on the video given, with four stages (20 minutes: 7 + 12, plus
about a minute to prepare, render and measure):

  1. prepare    `vid2vid prepare video FILE <out>/data --labels face --landmarks B`: the original's face layout,
                split by time: train = the first 80% of the frames, test = the last 20% as one held-out sequence;
                B is mediapipe when it can be imported (fast), else dlib; the banner says which
  2. per-frame  train pix2pixHD on the face input (configs/demo_face_image.yaml, 64x64 face crops) for 35%
  3. vid2vid    train the video model (configs/demo_face.yaml), its image branch from the per-frame model, for 60%
  4. measure    as the street demo's stage 5 without the segmenter (no segmentation of faces): PSNR, detail, E_warp
                raw and at matched detail (on OpenCV DIS flow between the real frames: a video has no exact flow),
                both baselines, tOF and render speed against the face-cropped real frames; every row's "nme" (the
                landmark consistency: landmarks detected again on its frames, vid2vid.eval.face_quality); the
                side-by-side mp4 (landmark input drawn | per-frame | vid2vid | real), the strip and the flicker plot

The pose demo (--task pose) runs the face demo's pipeline on a video of one person (seen head to feet), with the
settings of README's manual motion transfer, and with --transfer a fifth stage:

  1. prepare    `vid2vid prepare video FILE <out>/data --labels pose --size 256x320` (the demo's --size): MediaPipe
                Holistic's keypoints (OpenPose JSON) and body masks, split by time as the face demo's
  2. per-frame  train pix2pixHD on the pose input (configs/demo_pose_image.yaml) for 35%
  3. vid2vid    train the video model (configs/demo_pose.yaml: the label flow prior and gate, the face D), its image
                branch from the per-frame model, for 60%; both at POSE_SETTINGS (128x160 frames, every column)
                before the user's --set
  4. measure    as the face demo's, with the keypoint consistency instead of the landmark NME (tools/eval_quality.py
                --task pose, vid2vid.eval.pose_quality: the body detected again on every row's frames; each row's
                "pck" (PCK@0.2 over the 25 BODY_25 points), "error" (mean distance / the torso size), "face_nme" and
                "found"); the side-by-side mp4 (pose input drawn | per-frame | vid2vid | real), strip, flicker plot
  5. transfer   (--transfer SOURCE) SOURCE's person rendered by the video model as `vid2vid render SOURCE
                <out>/<minutes>min/transfer.mp4 -m EXPORT --labels pose --size 256x320 --pose-normalize <out>/data
                --side-by-side` does (source | keypoints | generated); the poses as detected when either person never
                shows the neck and an ankle together (the normalisation's measure), and results.json says why

Training stops on time (train.max_minutes), so the table says how long and how many steps each model
trained. Every stage resumes or reuses what exists: a second run with the same minutes (and video) finishes in
seconds. Runs go to <out>/<minutes>min, so another budget never mixes with this one; the face and pose demos'
prepared video is <out>/data, shared by every budget (another video, or another --size, needs another --out).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import time
from argparse import Namespace
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from vid2vid.errors import UserError

# Imports inside functions are on purpose: the demo drives training and rendering in subprocesses, and its own
# process imports torch, the segmenter and tools/compare_models.py (heavy) only for the steps that need them.

REPO = Path(__file__).resolve().parent.parent
# of --minutes, per task (the segmenter's: an estimate); the stages between the data stage and the measurement
SHARES = {"street": {"per-frame": 0.30, "vid2vid": 0.55, "segmenter": 0.10},
          "face": {"per-frame": 0.35, "vid2vid": 0.60}, "pose": {"per-frame": 0.35, "vid2vid": 0.60}}
MEASURE_VERSION = "nme1"  # part of the fingerprint: a results.json of older measurements is measured again
MEASURE_MINUTES = 1.0  # the estimate for the last stage at the default size (2 sequences x 30 frames)
# the demos on a user's video (face, pose):
TEST_FRACTION = 0.2  # the held-out tail (the last 20% of the video's frames)
SEQ_LEN = 30  # frames per training sequence (prepare's --seq-len); the held-out tail is one sequence
MIN_FRAMES = 56  # the fewest that split into 2 training sequences (the per-frame model's batch of 2 takes one frame
#                 from each of 2 sequences) and a held-out tail of >= 4 frames (the video model's 2 seed frames and 2
#                 to measure): split_ok
VIDEO_OF = {"face": ("one talking face", "talk.mp4"), "pose": ("one person, seen head to feet", "dance.mp4")}
# the pose demo's prepared frames (prepare --size; the demo's --size): the models' 128x160 aspect (240x320 stretched
# people 7 % when resized to it)
POSE_SIZE = "256x320"
# the pose demo's model sizes, before the user's --set: the whole 128x160 frame (no central columns: a person who
# walks across the frame leaves the central half)
POSE_SETTINGS = ["data.load_size=128x160", "data.crop_size=128x160", "data.pose.central_columns=false"]


@dataclass
class Demo:
    minutes: float
    out: Path  # <out>/<minutes>min
    image_config: Path
    video_config: Path
    overrides: list[str]  # --set KEY=VALUE for both configs (tests shrink the demo with them)
    device: str  # auto | cpu | cuda
    segmenter_steps: int = 500  # the quality segmenter's training (vid2vid.eval.quality.SegmenterSettings.steps)
    task: str = "street"  # street (the synthetic dataset) | face (a user's talking-head video) | pose (of a person)
    video: Path | None = None  # face, pose: the user's video
    landmarks: str | None = None  # face: the landmark backend (None: mediapipe when importable, else dlib)
    size: str = POSE_SIZE  # pose: the prepared frames' size HxW (prepare --size)
    transfer: Path | None = None  # pose: a video of another person whose motion the trained person copies

    @property
    def own_video(self) -> bool:
        return self.task in VIDEO_OF

    @property
    def shares(self) -> dict[str, float]:
        return SHARES[self.task]

    @property
    def stages(self) -> int:
        return len(self.shares) + 2 + (self.transfer is not None)  # data, the trained ones, measurement, transfer

    def budget(self, stage: str) -> float:
        return self.shares[stage] * self.minutes

    @property
    def data(self) -> Path:
        """face, pose: the prepared video, shared by every budget (<out>/data)."""
        return self.out.parent / "data"

    @property
    def settings(self) -> list[str]:
        """--set for both configs: (pose) its sizes, the user's, then (face, pose) the prepared folder as the
        dataset."""
        if self.own_video:
            before = POSE_SETTINGS if self.task == "pose" else []
            return [*before, *self.overrides, f"data.root={self.data.resolve()}", "data.source=folder"]
        return self.overrides


def run_demo(demo: Demo) -> dict:
    """All stages of the task; returns the results (also in <out>/results.json) and prints the table."""
    started, clock = time.perf_counter(), Estimate(demo)
    if demo.own_video:
        frames = check_video(demo)  # bad input stops here, before anything is written
        announce_device(demo.device)
        result = video_stages(demo, clock, frames)
    else:
        demo.out.mkdir(parents=True, exist_ok=True)
        announce_device(demo.device)
        result = street_stages(demo, clock)
    result["this_run_minutes"] = (time.perf_counter() - started) / 60
    result.setdefault("wall_minutes", result["this_run_minutes"])  # a reused measurement keeps its demo's time
    (demo.out / "results.json").write_text(json.dumps(result, indent=1))
    print(format_report(result))
    return result


def street_stages(demo: Demo, clock: Estimate) -> dict:
    """The synthetic street dataset: data, both models, the segmenter, the measurement."""
    from vid2vid.config import load_config

    image_cfg = load_config(demo.image_config, demo.overrides)
    clock.stage(1, "data", "generate and check the synthetic street dataset")
    _vid2vid("check-data", "--config", str(demo.image_config), *_set(demo.overrides))
    trained = train_models(demo, clock)
    clock.stage(4, "segmenter", f"train the segmentation network for the quality metric ({demo.segmenter_steps} "
                f"steps, about {demo.budget('segmenter'):.3g} min on 2 idle cores; cached in {image_cfg.data.root})")
    segmenter = train_segmenter(image_cfg, demo.segmenter_steps)
    clock.stage(5, "measure", "render the held-out sequences with both models and measure them")
    return measure(demo, segmenter, trained)


def video_stages(demo: Demo, clock: Estimate, frames: int) -> dict:
    """A user's video (a talking head, a person): prepare it, both models, the measurement (no segmenter), and (pose
    with --transfer) the motion transfer."""
    n_test = int(round(frames * TEST_FRACTION))
    clock.stage(1, "prepare", f"prepare {demo.video} -> {demo.data}: {labelling(demo)}; train = its first "
                f"{frames - n_test} frames, test = the last {n_test} (one held-out sequence)")
    prepare_data(demo)
    demo.out.mkdir(parents=True, exist_ok=True)
    trained = train_models(demo, clock)
    clock.stage(4, "measure", "render the held-out sequence with both models and measure it")
    result = measure_video(demo, trained)
    before = result.pop("transfer", None)
    if demo.transfer is not None:
        clock.stage(5, "transfer", f"render the poses of {demo.transfer} with the video model -> "
                    f"{demo.out / 'transfer.mp4'}")
        result["transfer"] = transfer(demo, trained, before)
    return result


def train_models(demo: Demo, clock: Estimate) -> dict:
    """Stages 2 and 3: the per-frame model, then the video model with its image branch from it (both on time)."""
    trained = {}
    image_export = demo.out / "per_frame" / "export"
    for n, (name, config, out, extra) in enumerate((
            ("per-frame", demo.image_config, demo.out / "per_frame", []),
            ("vid2vid", demo.video_config, demo.out / "vid2vid", [f"model.init_from={image_export}"])), start=2):
        clock.stage(n, name, f"train {name} for {demo.budget(name):.3g} min -> {out}")
        trained[name] = train_for(config, demo.settings + extra + [f"train.out_dir={out}"], demo.budget(name), out)
    return trained


class Estimate:
    """Stage banners with the remaining time of the whole demo (the stages' budgets still ahead)."""

    def __init__(self, demo: Demo):
        self.demo, self.start = demo, time.perf_counter()

    def stage(self, n: int, name: str, what: str) -> None:
        ahead = sum(self.demo.budget(s) for s in list(self.demo.shares)[max(0, n - 2):]) + MEASURE_MINUTES
        spent = (time.perf_counter() - self.start) / 60
        print(f"\n[demo {n}/{self.demo.stages}] {what}  (demo: {spent:.1f} min spent, at most ~{ahead:.0f} min left)",
              flush=True)


def announce_device(device: str) -> None:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        print(f"demo: using the GPU {torch.cuda.get_device_name(0)} for training and rendering")
    else:
        print(f"demo: running on the CPU ({torch.get_num_threads()} threads); a machine with a GPU uses it")


def _vid2vid(*args: str) -> None:
    """`python -m vid2vid ARGS` in a child process (its own progress bars); its failure stops the demo."""
    cmd = [sys.executable, "-m", "vid2vid", *args]
    code = subprocess.run(cmd, cwd=REPO).returncode
    if code != 0:
        raise UserError(f"demo: `{' '.join(cmd[2:])}` exited with {code} (its message is above); fix that and run "
                        "the demo again: it resumes")


def _set(overrides: list[str]) -> list[str]:
    return ["--set", *overrides] if overrides else []


def train_for(config: Path, overrides: list[str], minutes: float, out: Path) -> dict:
    """Train (or resume) until `minutes` of training time are spent; {'minutes', 'steps', 'export'}."""
    _vid2vid("train", "--config", str(config), "--resume", "latest",
             *_set([*overrides, f"train.max_minutes={minutes}", "train.max_steps=1000000000"]))
    from vid2vid.checkpoint import read_trainer_state

    last = sorted((out / "checkpoints").glob("step_*"))[-1]
    state = read_trainer_state(last)
    return {"minutes": state["elapsed_s"] / 60, "steps": state["step"], "export": str(out / "export")}


def train_segmenter(cfg, steps: int):
    """The quality metric's segmenter (vid2vid.eval.quality), trained for a fixed number of steps (not minutes: the
    ceiling must not depend on the machine's load) and cached in the dataset folder."""
    from vid2vid.eval.segmenter import SegmenterSettings
    from vid2vid.eval.segmenter import train_segmenter as train

    segmenter = train(cfg.data, SegmenterSettings(steps=steps), log=print)
    meta = segmenter.meta
    print(f"demo: segmenter {'loaded from' if meta.get('from_cache') else 'trained into'} {meta.get('cache')}")
    return segmenter


def _fingerprint(*folders: Path) -> str:
    """Changes when any exported weight file changes (then stage 5 measures again)."""
    h = hashlib.sha256()
    for folder in folders:
        for f in sorted(folder.glob("*")):
            h.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def measured_before(demo: Demo, trained: dict) -> tuple[str, dict | None]:
    """(the fingerprint of both exports and of the measurement, the results.json measured with it or None)."""
    key = f"{_fingerprint(Path(trained['per-frame']['export']), Path(trained['vid2vid']['export']))}-{MEASURE_VERSION}"
    cached = demo.out / "results.json"
    if cached.is_file() and json.loads(cached.read_text()).get("fingerprint") == key:
        print(f"demo: both models unchanged since the last measurement; reusing {cached}")
        return key, json.loads(cached.read_text())
    return key, None


def compare(demo: Demo, trained: dict) -> dict:
    """Both models on the held-out sequences through tools/compare_models.py's comparison (frames and mp4s in
    <out>/videos, the flicker plots beside them)."""
    sys.path.insert(0, str(REPO / "tools"))
    import compare_models

    from vid2vid.eval.postprocess import DEFAULT_WEIGHT

    args = Namespace(image=trained["per-frame"]["export"], video=trained["vid2vid"]["export"], data=None,
                     phase="test", out=str(demo.out / "videos"), max_frames=0, json=None, device=demo.device,
                     plot=True, skip=None, blend=DEFAULT_WEIGHT)
    return compare_models.compare(args)


def measure(demo: Demo, segmenter, trained: dict) -> dict:
    """Stage 5: render through tools/compare_models.py's comparison, add segmentation scores, write the pictures."""
    from vid2vid.eval.quality import evaluate_quality

    key, cached = measured_before(demo, trained)
    if cached is not None:
        return cached
    result = compare(demo, trained)
    made = {label: [Path(r["mp4"]).with_suffix("") for r in rows]  # the lossless PNG folders beside each mp4
            for label, rows in result["rows"].items() if label != "real frames"}
    quality = evaluate_quality(result["data"], result["phase"], made, segmenter=segmenter, device="cpu")
    result["quality"] = {label: {k: row[k] for k in ("miou", "pixel_accuracy", "psnr", "l1")}
                         for label, row in quality["rows"].items()}
    result["segmenter"] = {k: quality["segmenter"].get(k) for k in ("steps_done", "train_seconds", "cache",
                                                                     "prior_only_miou")}
    from vid2vid.imaging import label_palette

    name, clip, cfg = first_sequence(demo, result)
    colours = label_palette(cfg.data.label_nc)[clip["labels"].numpy()]  # [T,H,W,3]
    result.update(fingerprint=key, trained=trained, minutes=demo.minutes,
                  pictures=write_pictures(demo, result, name, colours, PANELS, cfg.render.fps))
    return result


STRIP_FRAMES = (0, 10, 20, 29)  # the PNG strip's rows (clamped to the sequence's length)
PANELS = ("per-frame", "per-frame filtered", "vid2vid", "real frames")  # after the label colours
INPUT_PANELS = ("per-frame", "vid2vid", "real frames")  # the face and pose demos': after the landmark or pose input
LEGEND = {"street": "labels | per-frame | per-frame filtered | vid2vid | real",
          "face": "landmark input | per-frame | vid2vid | real", "pose": "pose input | per-frame | vid2vid | real"}


def first_sequence(demo: Demo, result: dict) -> tuple[str, dict, object]:
    """The first held-out sequence as the comparison loaded it (whole frames at data.load_size), and the video
    model's config: (name, item, config)."""
    from vid2vid.config import load_config
    from vid2vid.data.sequences import whole_sequences

    cfg = load_config(demo.video_config, demo.settings)
    return *whole_sequences(replace(cfg.data, root=result["data"]), result["phase"])[0], cfg


def write_pictures(demo: Demo, result: dict, name: str, first: np.ndarray, panels: tuple[str, ...], fps: float
                   ) -> dict:
    """The first sequence side by side (first [T,H,W,3], the input as a picture | the rows `panels` of the
    comparison) as an mp4 and a PNG strip of frames STRIP_FRAMES."""
    from vid2vid.video_io import VideoWriter, iter_frames

    folders = {label: Path(rows[0]["mp4"]).with_suffix("") for label, rows in result["rows"].items()}  # PNG folders
    streams = [iter(first)] + [iter_frames(folders[k]) for k in panels]
    side_by_side, strip_rows = demo.out / "side_by_side.mp4", []
    picks = {min(t, len(first) - 1) for t in STRIP_FRAMES}
    with VideoWriter(side_by_side, fps=fps) as writer:
        for t, frames in enumerate(zip(*streams, strict=False)):
            row = np.concatenate([np.asarray(f)[..., :3] for f in frames], axis=1)  # [H,(1+panels)W,3]
            writer.write(row)
            if t in picks:
                strip_rows.append(row)
    strip = demo.out / "strip.png"
    cv2.imwrite(str(strip), cv2.cvtColor(np.concatenate(strip_rows, axis=0), cv2.COLOR_RGB2BGR))
    plot = Path(result["rows"]["vid2vid"][0]["mp4"]).parent / "flicker.png"
    return {"side_by_side": str(side_by_side), "strip": str(strip), "flicker_plot": str(plot),
            "sequence": name, "strip_frames": sorted(picks)}


# ---- the face and pose demos: the user's video ----

def check_video(demo: Demo) -> int:
    """The video's frame count; a UserError naming the file and the fix when it cannot make a face or pose demo
    (missing, not a video, too short for the split, prepared before from another video under this --out; a missing
    --transfer video)."""
    from vid2vid.config import parse_size
    from vid2vid.video_io import probe

    video, (what, example) = demo.video, VIDEO_OF[demo.task]
    if video is None:
        raise UserError(f"demo --task {demo.task}: give the video of {what} with --video FILE, e.g. --video {example}")
    if not video.is_file():
        raise UserError(f"--video {video}: no such file; give a video of {what} (any container PyAV reads, e.g. "
                        f"{example})")
    if demo.transfer is not None and not demo.transfer.is_file():
        raise UserError(f"--transfer {demo.transfer}: no such file; give a video of another person (seen head to "
                        "feet) whose motion the trained person should copy, e.g. --transfer walk.mp4")
    parse_size(demo.size, "--size")
    if demo.transfer is not None:
        probe(demo.transfer)  # not a video: its one-line error now, not after the training
    frames = probe(video).n_frames
    if not split_ok(frames):
        raise UserError(f"--video {video}: {frames} frames; the {demo.task} demo needs at least {MIN_FRAMES} (its "
                        f"first {1 - TEST_FRACTION:.0%} make at least 2 training sequences of {SEQ_LEN} frames, its "
                        f"last {TEST_FRACTION:.0%} the held-out one, of at least 4 frames); use a longer video (a few "
                        "seconds)")
    check_prepared(demo)
    return frames


def check_prepared(demo: Demo) -> None:
    """A UserError when <out>/data was prepared from another video or with other settings (or not by the demo)."""
    stamp = demo.data / STAMP
    if not demo.data.exists():
        return
    before = json.loads(stamp.read_text()) if stamp.is_file() else None
    wanted = data_stamp(demo)
    if before != wanted:
        what = (f"from {before['video']} with {_prepared_with(before)}" if before else
                f"without {STAMP} (not by the demo, or interrupted)")
        raise UserError(f"{demo.data} was prepared {what}; this run asks for {demo.video.resolve()} with "
                        f"{_prepared_with(wanted)}: pass another --out for another video (or settings), or remove "
                        f"{demo.out.parent} to start over")


def _prepared_with(stamp: dict) -> str:
    return ", ".join(f"--{k} {stamp[k]}" for k in ("landmarks", "size") if k in stamp)


def split_ok(frames: int) -> bool:
    """Whether the demo's split of `frames` has 2 training sequences and a held-out one of >= 4 frames."""
    from vid2vid.data.prepare import split_sequences

    plan = split_sequences(frames, SEQ_LEN, TEST_FRACTION, 0)
    return (sum(phase == "train" for phase, _, _ in plan) >= 2
            and sum(count for phase, _, count in plan if phase == "test") >= 4)


STAMP = "demo_source.json"  # in the prepared folder: which video and settings made it


def data_stamp(demo: Demo) -> dict:
    from vid2vid.config import parse_size

    stat = demo.video.stat()
    setting = {"landmarks": detector(demo)} if demo.task == "face" else {"size": str(parse_size(demo.size, "--size"))}
    return {"video": str(demo.video.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, **setting,
            "seq_len": SEQ_LEN, "test_fraction": TEST_FRACTION, "test_seq_len": 0}


def detector(demo: Demo) -> str:
    """The keypoint detector of the task: the face demo's landmark backend, the pose demo's MediaPipe Holistic."""
    return landmark_backend(demo.landmarks)[0] if demo.task == "face" else "mediapipe holistic"


def labelling(demo: Demo) -> str:
    """What the prepare stage detects, by what (for its banner)."""
    if demo.task == "face":
        backend, why = landmark_backend(demo.landmarks)
        return f"face landmarks by {backend} ({why})"
    return f"body keypoints and masks by MediaPipe Holistic on the frames resized to {demo.size}"


def landmark_backend(asked: str | None) -> tuple[str, str]:
    """(the landmark backend, why): the one asked for, else mediapipe when it can be imported, else dlib."""
    if asked is not None:
        return asked, "--landmarks"
    try:
        import mediapipe  # noqa: F401
    except Exception:  # not installed (Python 3.13+), or its native libraries missing
        return "dlib", "the default: mediapipe cannot be imported here; dlib is slower (~0.2 s a frame)"
    return "mediapipe", "the default: importable here, fast; --landmarks dlib for the original's detector"


def prepare_data(demo: Demo) -> None:
    """Stage 1: `vid2vid prepare video FILE <out>/data --test-seq-len 0` with --labels face --landmarks B, or
    --labels pose --size HxW (in this process, so that its errors are the demo's), or the folder a run before
    prepared from the same video. A failure leaves nothing behind: prepare writes atomically, and an --out folder
    made for it is removed."""
    from vid2vid.config import parse_size
    from vid2vid.data.prepare_face import prepare_face_video
    from vid2vid.data.prepare_pose import prepare_pose_video

    if demo.data.exists():  # check_prepared made sure it is this video's
        print(f"demo: reusing {demo.data} (prepared from {demo.video} with {_prepared_with(data_stamp(demo))})")
        return
    made = [p for p in (demo.data.parent, *demo.data.parent.parents) if not p.exists()]
    split = {"seq_len": SEQ_LEN, "test_fraction": TEST_FRACTION, "test_seq_len": 0}
    try:
        if demo.task == "face":
            print(prepare_face_video(demo.video, demo.data, landmarks=detector(demo), **split), flush=True)
        else:
            print(prepare_pose_video(demo.video, demo.data, size=parse_size(demo.size, "--size"), **split),
                  flush=True)
        (demo.data / STAMP).write_text(json.dumps(data_stamp(demo), indent=1))
    except BaseException:
        shutil.rmtree(demo.data, ignore_errors=True)
        for folder in made:  # innermost first; only the empty ones this run made
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def measure_video(demo: Demo, trained: dict) -> dict:
    """Stage 4: tools/compare_models.py's comparison on the held-out tail (no segmenter), the keypoint consistency
    (face: landmark NME; pose: PCK, body error, face NME), the pictures."""
    key, cached = measured_before(demo, trained)
    if cached is not None:
        return cached
    result = compare(demo, trained)
    name, clip, cfg = first_sequence(demo, result)
    if demo.task == "face":
        landmark_nme(result, detector(demo), cfg)
        first = face_input_pictures(clip, cfg.data.label_nc)
    else:
        keypoint_scores(result, cfg)
        first = pose_input_pictures(clip, cfg.data.pose)
    pictures = write_pictures(demo, result, name, first, INPUT_PANELS, cfg.render.fps)
    result.update(fingerprint=key, trained=trained, minutes=demo.minutes, task=demo.task, video=str(demo.video),
                  pictures=pictures, **({"landmarks": detector(demo)} if demo.task == "face" else {"size": demo.size}))
    return result


def _made(result: dict) -> dict[str, list[Path]]:
    """The generated rows' lossless PNG folders (beside each mp4), per held-out sequence."""
    return {label: [Path(r["mp4"]).with_suffix("") for r in rows]
            for label, rows in result["rows"].items() if label != "real frames"}


def _set_scores(result: dict, quality: dict, pick) -> None:
    """Each sequence row of the comparison updated with pick(the quality tool's record of that sequence)."""
    for label, rows in result["rows"].items():
        for row, measured in zip(rows, quality["rows"][label]["sequences"], strict=True):
            row.update(pick(measured))


def landmark_nme(result: dict, backend: str, cfg) -> None:
    """Every row's landmark consistency: landmarks detected again (the `backend` the input was prepared with) on
    its frames of each held-out sequence, against the input's, mean distance / the inter-ocular distance
    (vid2vid.eval.face_quality; the real frames' row is the detector's own error, the floor). Sets each
    sequence row's "nme" and "found"."""
    from vid2vid.eval.face_quality import evaluate_face_quality

    print(f"demo: detecting landmarks ({backend}) on every row's frames", flush=True)
    quality = evaluate_face_quality(result["data"], result["phase"], _made(result), landmarks=backend,
                                    load_size=cfg.data.load_size, crop_size=cfg.data.crop_size)
    _set_scores(result, quality, lambda m: {"nme": m["nme"], "found": m["found"]})


def keypoint_scores(result: dict, cfg) -> None:
    """Every row's keypoint consistency (tools/eval_quality.py --task pose, vid2vid.eval.pose_quality): the body
    detected again by MediaPipe Holistic on its frames of each held-out sequence, against the input's keypoints; the
    real frames' row is the detector's own error, the floor. Sets each sequence row's "pck" (PCK@0.2 over all 25
    BODY_25 points), "error" (mean distance / the torso size), "face_nme" and "found" (frames with a person)."""
    from vid2vid.eval.pose_quality import evaluate_pose_quality

    print("demo: detecting body keypoints (MediaPipe Holistic) on every row's frames", flush=True)
    quality = evaluate_pose_quality(result["data"], result["phase"], _made(result), load_size=cfg.data.load_size,
                                    crop_size=cfg.data.crop_size, central=cfg.data.pose.central_columns)
    _set_scores(result, quality, lambda m: {"pck": m["pck"]["overall"], "error": m["error"],
                                            "face_nme": m["face_nme"], "found": m["found"]})


def face_input_pictures(clip: dict, n_parts: int) -> np.ndarray:
    """The landmark input as a picture: the edge map (channel 0 of the face input; brightened, as thin lines drawn
    at a large frame's size fade when resized to the crop) in white over the part labels' colours, darkened ->
    uint8 [T,H,W,3]."""
    from vid2vid.imaging import label_palette

    parts = label_palette(n_parts)[clip["labels"].numpy()].astype(np.float32) * 0.4  # [T,H,W,3]
    edges = clip["cond"][:, 0].numpy().clip(0, 1)[..., None]  # [T,H,W,1]
    edges = np.sqrt(edges / max(float(edges.max()), 1e-3)) * 255
    return np.maximum(parts, edges).round().astype(np.uint8)


def pose_input_pictures(clip: dict, pose) -> np.ndarray:
    """The pose input as a picture: the OpenPose rendering (channels 0-2 of the input, after DensePose's 3 unless
    data.pose.openpose_only) over the body mask (its last channel, with data.pose.mask) in dark grey -> uint8
    [T,H,W,3]."""
    cond = clip["cond"].numpy()  # [T,C,H,W] in [-1,1]
    first = 0 if pose.openpose_only else 3
    skeleton = (np.moveaxis(cond[:, first: first + 3], 1, -1) + 1) * 127.5  # [T,H,W,3]
    if pose.mask:
        skeleton = np.maximum(skeleton, (cond[:, -1, ..., None] > 0) * 60.0)
    return skeleton.round().clip(0, 255).astype(np.uint8)


def transfer(demo: Demo, trained: dict, before: dict | None) -> dict:
    """Stage 5 (--transfer SOURCE): the person of SOURCE detected while streaming, normalised to the trained person
    (--pose-normalize <out>/data) and rendered by the video model through the product's renderer, as `vid2vid render
    SOURCE <out>/<minutes>min/transfer.mp4 -m EXPORT --labels pose --size S --pose-normalize <out>/data
    --side-by-side` does (source | keypoints | generated); reused while the model and the source are unchanged. The
    normalisation needs the whole body (neck and an ankle) in both people; when one lacks it the poses are rendered
    as detected and the result says why."""
    from vid2vid.render import RenderOptions, render_video
    from vid2vid.render.poses import NormalizeError
    from vid2vid.video_io import probe

    export, out, source = Path(trained["vid2vid"]["export"]), demo.out / "transfer.mp4", demo.transfer
    key = f"{_fingerprint(export)}-{source.resolve()}:{source.stat().st_size}:{source.stat().st_mtime_ns}"
    if before is not None and before.get("key") == key and out.is_file():
        print(f"demo: the video model and {source} unchanged since the last transfer; reusing {out}")
        return before
    options = RenderOptions(labels="pose", size=demo.size, pose_normalize=demo.data, side_by_side=True,
                            overwrite=True, device=demo.device, fps=probe(source).fps)
    why = None
    try:
        summary = render_video(export, source, out, options)
    except NormalizeError as e:
        why = str(e)
        print(f"demo: rendering the poses as detected, not normalised: {why}", flush=True)
        summary = render_video(export, source, out, replace(options, pose_normalize=None))
    print(f"demo: wrote {summary}", flush=True)
    return {"key": key, "source": str(source), "mp4": str(out), "frames": summary.frames,
            "fps": summary.frames / summary.seconds, "normalized": why is None, "not_normalized_because": why,
            "missing": summary.note}


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None


NAMES = {"real frames": "real frames", "per-frame": "per-frame pix2pixHD", "per-frame + blur": "per-frame + blur",
         "per-frame filtered": "per-frame filtered", "vid2vid": "vid2vid"}


def _vs_vid2vid(rows: list[dict]) -> tuple[float, float] | tuple[None, None]:
    """E_warp(vid2vid) / E_warp(row), raw and at matched detail, from the means over sequences."""
    if "vs_vid2vid" not in rows[0]:
        return None, None
    m = [r["vs_vid2vid"] for r in rows]
    return (_mean(m, "e_warp_a") / _mean(m, "e_warp_b"), _mean(m, "matched_e_warp_a") / _mean(m, "matched_e_warp_b"))


def _cell(v, fmt) -> str:
    return "-" if v is None else format(v, fmt)


def _pct(v, fmt: str = ".0f") -> str:
    return _cell(None if v is None else 100 * v, fmt)


SCORE_COLUMNS = {"street": ["seg. mIoU % (pixel acc. %)"], "face": ["landmark NME (face found %)"],
                 "pose": ["PCK@0.2 % (person found %)", "keypoint error", "face NME"]}


def _score_cells(result: dict, label: str, rows: list[dict]) -> list[str]:
    """A row's cells of its task's SCORE_COLUMNS."""
    task = result.get("task", "street")
    if task == "face":
        return [f"{_cell(_mean(rows, 'nme'), '.3f')} ({_pct(_mean(rows, 'found'))})"]
    if task == "pose":
        return [f"{_pct(_mean(rows, 'pck'), '.1f')} ({_pct(_mean(rows, 'found'))})",
                _cell(_mean(rows, "error"), ".3f"), _cell(_mean(rows, "face_nme"), ".3f")]
    quality = result["quality"].get(label, {})  # one confusion matrix over all frames
    return [f"{_pct(quality.get('miou'), '.1f')} ({_pct(quality.get('pixel_accuracy'), '.1f')})"]


def table_rows(result: dict) -> list[str]:
    """The table's header and one line per row (means over the held-out sequences). The street demo has a
    segmentation column; the face demo a landmark NME column instead (each row's "nme" and "found"); the pose demo
    PCK@0.2, the body keypoint error and the face NME (each row's "pck", "found", "error", "face_nme")."""
    columns = ["model", "trained", "PSNR dB", *SCORE_COLUMNS[result.get("task", "street")], "detail (aligned)",
               "E_warp x1e3", "vid2vid/this E_warp: raw, matched", "tOF px", "render frames/s"]
    lines = [" | ".join(columns), "|".join(["---"] * len(columns))]
    for label, rows in result["rows"].items():
        t = result["trained"].get(label)
        run = f"{t['minutes']:.1f} min, {t['steps']} steps" if t else "-"
        e_warp = _mean(rows, "e_warp")
        raw, matched = _vs_vid2vid(rows)
        lines.append(" | ".join([
            NAMES.get(label, label), run, _cell(_mean(rows, "psnr"), ".2f"), *_score_cells(result, label, rows),
            f"{_cell(_mean(rows, 'detail'), '.2f')} ({_cell(_mean(rows, 'detail_aligned'), '.2f')})",
            _cell(e_warp and 1e3 * e_warp, ".3f"), f"{_cell(raw, '.2f')}, {_cell(matched, '.2f')}",
            _cell(_mean(rows, "tof"), ".3f"), _cell(_mean(rows, "fps"), ".1f")]))
    return lines


KEYPOINT_BAR = {"face": ("nme", "landmark NME"), "pose": ("error", "keypoint error")}  # the row key, its name


def verdict(result: dict) -> list[str]:
    """The comparison against issue 25's bar: detail, E_warp at matched detail against the per-frame model and
    both baselines, PSNR and mIoU. The face demo: issue 28's bar (E_warp, detail, PSNR and landmark NME); the pose
    demo: issue 30's (the same with the body keypoint error)."""
    rows = result["rows"]
    raw, matched = _vs_vid2vid(rows["per-frame"])
    blur, filtered = _vs_vid2vid(rows["per-frame + blur"])[1], _vs_vid2vid(rows["per-frame filtered"])[1]
    detail = _mean(rows["vid2vid"], "detail")
    d_psnr = _mean(rows["vid2vid"], "psnr") - _mean(rows["per-frame"], "psnr")
    task = result.get("task", "street")
    if task in KEYPOINT_BAR:
        key, name = KEYPOINT_BAR[task]
        error, per_frame_error = _mean(rows["vid2vid"], key), _mean(rows["per-frame"], key)
        error_ok = error is not None and per_frame_error is not None and error <= 1.1 * per_frame_error
        ok = detail >= 0.9 and matched <= 0.6 and d_psnr >= -1 and error_ok
        return [f"vid2vid vs per-frame: E_warp x{raw:.2f} raw, x{matched:.2f} at matched detail (bar: <= 0.6); at "
                f"matched detail vs per-frame + blur x{blur:.2f}, vs per-frame filtered x{filtered:.2f}; detail "
                f"{detail:.2f} of the real frames' (bar: >= 0.9); PSNR {d_psnr:+.2f} dB (bar: >= -1); {name} "
                f"{_cell(error, '.3f')} vs {_cell(per_frame_error, '.3f')} (bar: <= the per-frame model's + 10%): "
                f"{'met' if ok else 'NOT met'}"]
    quality = result["quality"]
    d_miou = 100 * (quality["vid2vid"]["miou"] - quality["per-frame"]["miou"])
    ok = detail >= 0.9 and matched <= 0.6 and blur < 1 and filtered < 1 and d_psnr >= -1 and d_miou >= -3
    return [f"vid2vid vs per-frame: E_warp x{raw:.2f} raw, x{matched:.2f} at matched detail (bar: <= 0.6); "
            f"at matched detail vs per-frame + blur x{blur:.2f}, vs per-frame filtered x{filtered:.2f} (bar: < 1 "
            f"both); detail {detail:.2f} of the real frames' (bar: >= 0.9); PSNR {d_psnr:+.2f} dB (bar: >= -1), "
            f"mIoU {d_miou:+.1f} points (bar: >= -3): {'met' if ok else 'NOT met'}"]


def scores_note(result: dict) -> str:
    """The line that says how the task's score columns were measured."""
    task = result.get("task", "street")
    flow = f"E_warp on OpenCV DIS flow between the real frames; the video {result.get('video')}"
    if task == "face":
        return (f"landmark NME: landmarks detected again ({result['landmarks']}) on each row's frames, mean distance "
                f"to the input's / the inter-ocular distance ('real frames': the detector's own error, the floor); "
                f"{flow}")
    if task == "pose":
        return ("keypoints detected again (MediaPipe Holistic) on each row's frames against the input's: PCK@0.2 = "
                "share of the 25 BODY_25 points within 0.2 x the torso size, keypoint error = mean distance / the "
                "torso size, face NME = face points' distance / the outer-eye-corner distance, found = frames with a "
                f"person ('real frames': the detector's own error, the floor); {flow}")
    segmenter = result.get("segmenter", {})
    return (f"mIoU: the segmenter of tools/eval_quality.py trained {segmenter.get('steps_done')} steps on the real "
            f"training frames ({segmenter.get('cache')}); 'real frames' is its ceiling")


def transfer_lines(result: dict) -> list[str]:
    """The motion transfer's lines of the report (none without --transfer)."""
    t = result.get("transfer")
    if t is None:
        return []
    how = ("normalised to the trained person (--pose-normalize)" if t["normalized"] else
           f"as detected, not normalised ({t['not_normalized_because']})")
    return [f"motion transfer (source | keypoints | vid2vid): {t['mp4']}: {t['frames']} frames of {t['source']}, "
            f"poses {how}, {t['fps']:.1f} frames/s" + (f"; {t['missing']}" if t["missing"] else "")]


def format_report(result: dict) -> str:
    """The table (means over the held-out sequences), the checks against the issue's bar, and the paths."""
    per = result["rows"]["per-frame"]
    task = result.get("task", "street")
    lines = table_rows(result) + [""] + verdict(result) + [
        f"{len(per)} held-out sequences of {result['data']}, frames t >= {result.get('skip', 0)} (the video model's "
        f"seed frames left out); demo wall time {result.get('wall_minutes', 0):.1f} min (this run: "
        f"{result.get('this_run_minutes', 0):.1f} min)",
        "detail: high-frequency energy (mean |Y - Gaussian(Y, 1.5)|) / the real frames'; aligned: in-place gain on "
        "the real frames' high-pass; matched: the sharper of vid2vid and the row blurred to the other's detail",
        scores_note(result), ""]
    for label, rows in result["rows"].items():
        lines.append(f"{NAMES.get(label, label)}: {', '.join(r['mp4'] for r in rows)}")
    pictures = result["pictures"]
    lines += [f"side by side ({LEGEND[task]}): {pictures['side_by_side']}",
              f"PNG strip (frames {pictures['strip_frames']}): {pictures['strip']}",
              f"per-frame flicker of both models: {pictures['flicker_plot']}", *transfer_lines(result)]
    return "\n".join(lines)
