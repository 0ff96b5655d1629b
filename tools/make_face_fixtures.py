"""Make the face-input fixtures: run the original vid2vid's FaceDataset (data/face_dataset.py) on keypoint files and
frames made here, and save what it gives, for tests/test_face_input.py.

    python tools/make_face_fixtures.py --originals /tmp/orig --out tests/fixtures/originals [--only NAME ...]

--originals holds a checkout of NVIDIA/vid2vid as vid2vid/ (as for tools/make_original_fixtures.py, whose import
helpers this reuses). Each case is a dataset folder in the original's layout (test_keypoints/seq/*.txt,
test_img/seq/*.png: two frames of one synthetic face, the second moved, so the crop from the first frame is kept),
read by the original's own FaceDataset in test mode with TestOptions (--dataset_mode face, --loadSize, and
--no_dist_map / --no_canny_edge as the case says). The original's np.linspace(x0, x1, x1 - x0) takes a float count,
which numpy >= 1.18 refuses; numpy < 1.18 truncated it to an integer, and that is what the shim here does.

Output: <out>/face_<case>.npz (format "original-face-input-fixture-v1"): points [T,68,2] float64 (as written to the
keypoint files), frames [T,H,W,3] uint8, input [T,C,S,S] uint8 (the original's input tensor x 255, exact: its values
are k/255), parts [T,S,S] uint8 (its part label tensor), and meta (JSON: argv, options, commit, notes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.make_original_fixtures import git_commit, original_code, patched  # noqa: E402
from vid2vid.config import Size  # noqa: E402
from vid2vid.data.keypoint_files import write_keypoints  # noqa: E402
from vid2vid.data.synthetic_faces import background, draw_frame, place, template_face  # noqa: E402
from vid2vid.video_io import write_image  # noqa: E402

FORMAT = "original-face-input-fixture-v1"
FRAME = Size(96, 128)
LOAD_SIZE = 64


@dataclass(frozen=True)
class Case:
    centre: tuple[float, float]  # face centre (x, y) of the first frame, pixels
    scale: float  # pixels per face unit (the jaw is 2 units wide)
    roll: float  # radians
    step: float  # keypoint grid: 1 = whole pixels (as dlib writes them), 1/8 = fractional
    options: tuple[str, ...] = ()
    notes: str = ""


CASES = {
    "frontal": Case((64, 46), 16, 0.0, 1, notes="a frontal face in the middle of the frame, whole-pixel keypoints"),
    "edge": Case((26, 40), 16, 0.05, 1, notes="near the left edge: the crop square is shifted to start at x = 0"),
    "rotated": Case((70, 50), 17, 0.35, 1 / 8, notes="rolled 0.35 rad, keypoints on a 1/8 pixel grid"),
    "rotated_no_canny": Case((70, 50), 17, -0.3, 1 / 8, ("--no_canny_edge",), "no Canny edges of the background"),
    "frontal_no_dist": Case((64, 46), 16, 0.0, 1, ("--no_dist_map",), "the edge map only (1 channel)"),
}


def case_points(case: Case) -> np.ndarray:
    """Two frames of keypoints [2,68,2]: the second moved by (3, 2) px with the mouth more open."""
    frames = []
    for t in range(2):
        cx, cy = case.centre[0] + 3 * t, case.centre[1] + 2 * t
        points = place(template_face(0.05 + 0.1 * t), cx, cy, case.scale, case.roll)
        frames.append(np.round(points / case.step) * case.step)
    return np.stack(frames)


def write_case(root: Path, points: np.ndarray, seed: int) -> np.ndarray:
    """The case's dataset in the original layout -> its frames [T,H,W,3]."""
    back = background(np.random.default_rng(seed), FRAME)
    frames = np.stack([draw_frame(p, back, (220, 170, 140)) for p in points])
    (root / "test_img" / "seq").mkdir(parents=True)
    for t, (p, frame) in enumerate(zip(points, frames)):
        write_keypoints(root / "test_keypoints" / "seq" / f"{t:05d}.txt", p)
        write_image(root / "test_img" / "seq" / f"{t:05d}.png", frame)
    return frames


def old_numpy_linspace():
    """np.linspace as numpy < 1.18 had it: a float count is truncated to an integer."""
    linspace = np.linspace

    def truncating(start, stop, num=50, *args, **kwargs):
        return linspace(start, stop, int(num), *args, **kwargs)

    return truncating


def run_original(vid2vid_root: Path, data_root: Path, case: Case) -> tuple[list[str], dict, np.ndarray, np.ndarray]:
    """The original FaceDataset, test mode, over the case's frames -> (argv, options, input, parts)."""
    argv = ["test.py", "--name", "face_fixture", "--dataroot", str(data_root), "--dataset_mode", "face",
            "--input_nc", "1" if "--no_dist_map" in case.options else "15", "--loadSize", str(LOAD_SIZE),
            "--n_frames_G", "1", "--gpu_ids", "-1", *case.options]
    with original_code(vid2vid_root, argv), patched([(np, "linspace", old_numpy_linspace())]):
        from data.face_dataset import FaceDataset
        from options.test_options import TestOptions

        opt = TestOptions().parse(save=False)
        dataset = FaceDataset()
        dataset.initialize(opt)
        items = [dataset[i] for i in range(2)]
    inputs = np.stack([np.round(item["A"].numpy() * 255) for item in items]).astype(np.uint8)
    parts = np.stack([item["inst"].numpy()[0] for item in items]).astype(np.uint8)
    options = {k: v for k, v in vars(opt).items() if isinstance(v, (str, int, float, bool, type(None), list))}
    return argv, options, inputs, parts


def make_one(name: str, originals: Path, out: Path, commit: str | None) -> Path:
    case = CASES[name]
    points = case_points(case)
    root = originals / "vid2vid"
    with tempfile.TemporaryDirectory() as tmp:
        frames = write_case(Path(tmp), points, seed=sorted(CASES).index(name))
        argv, options, inputs, parts = run_original(root, Path(tmp), case)
    meta = {"format": FORMAT, "project": "vid2vid", "repo": "https://github.com/NVIDIA/vid2vid",
            "commit": git_commit(root, commit), "argv": argv, "options": options, "notes": case.notes,
            "made_by": f"tools/make_face_fixtures.py --only {name} (vid2vid project): the original FaceDataset in "
                       "test mode; shim: numpy < 1.18's linspace (a float count truncated)"}
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"face_{name}.npz"
    np.savez_compressed(path, points=points, frames=frames, input=inputs, parts=parts,
                        meta=np.array(json.dumps(meta)))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--originals", type=Path, required=True, help="folder with the vid2vid/ checkout")
    parser.add_argument("--out", type=Path, required=True, help="where the .npz files go")
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), help="make only these (default: all)")
    parser.add_argument("--commit", default=None, help="the checkout's commit when it has no .git")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = args.only or sorted(CASES)
    if args.in_process:
        for name in names:
            print(f"wrote {make_one(name, args.originals.resolve(), args.out.resolve(), args.commit)}")
        return 0
    for name in names:  # one process per case: the original's modules are imported fresh each time
        cmd = [sys.executable, __file__, "--originals", str(args.originals), "--out", str(args.out), "--only", name,
               "--in-process", *([f"--commit={args.commit}"] if args.commit else [])]
        if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
            print(f"make_face_fixtures.py: error: {name} failed; rerun it with --only {name} --in-process",
                  file=sys.stderr)
            return 1
        print(f"wrote {args.out / f'face_{name}.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
