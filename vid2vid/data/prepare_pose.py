"""`vid2vid prepare video IN OUT --labels pose [--openpose DIR [--mask]]`: the original vid2vid's pose layout from one
video of a person.

    OUT/<phase>_img/<seq>/00000.png        the frames (at --size when given)
    OUT/<phase>_openpose/<seq>/00000.json  OpenPose's JSON of that frame (BODY_25 body, 70-point face, 21-point hands)
    OUT/<phase>_mask/<seq>/00000.png       the body mask, uint8 0/255 (255: the person)

The split into train/test sequences is the one of `prepare video` (split_sequences: by time, the test phase the
video's last frames). The keypoints and the mask come from MediaPipe Holistic (vid2vid.data.pose_keypoints: one
person, the most prominent, followed from frame to frame), detected on the frames as written (after --size). A frame
where no person is found is kept, its JSON written as OpenPose writes a frame without people (`"people": []`: the
original's reader draws nothing for it) and its mask all 0; the summary says how many there were. A video with no
person in any frame is a DataError naming it, and nothing is written.

With --openpose DIR the keypoints are OpenPose's own output instead (one JSON file per frame of the video, matched
by their sorted names, every person as OpenPose found them; with --size their points are scaled to the written
frames); no mask is written unless --mask asks for Holistic's (MediaPipe then runs for the mask only).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from flow import atomic_dir
from vid2vid.config import Size
from vid2vid.data.openpose import Person, has_person, read_openpose, write_openpose
from vid2vid.data.pose_keypoints import HolisticBackend
from vid2vid.data.prepare import frame_places, plan_sequences, resized
from vid2vid.errors import DataError, UserError
from vid2vid.video_io import iter_frames, probe, write_image

MANY_MISSING = 0.2  # the share of frames without a person above which the summary warns


def openpose_files(folder: str | os.PathLike, input: Path, n_video: int) -> list[Path]:
    """The .json files of OpenPose's output folder, sorted by name: one per frame of the video (n_video frames)."""
    folder = Path(folder)
    where = f"--openpose {folder}"
    if not folder.is_dir():
        raise UserError(f"{where}: no such folder; give the folder OpenPose wrote with --write_json")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".json" and p.is_file())
    if len(files) != n_video:
        raise DataError(f"{where}: {len(files)} JSON files, but {input} has {n_video} frames; give OpenPose's "
                        "output for exactly this video (one file per frame, --write_json)")
    return files


def scaled(people: list[Person], source: tuple[int, int], size: tuple[int, int]) -> list[Person]:
    """People with points in a frame of `source` (H, W) pixels -> in the frame resized to `size` (H, W) (pixel
    centres map onto pixel centres); points with confidence 0 stay zeros."""
    if source == size:
        return people
    scale = np.array([size[1] / source[1], size[0] / source[0]])  # x, y

    def part(points: np.ndarray) -> np.ndarray:
        out = points.copy()
        found = points[:, 2] > 0
        out[found, :2] = (points[found, :2] + 0.5) * scale - 0.5
        return out

    return [p.map_parts(part) for p in people]


def prepare_pose_video(input: str | os.PathLike, out: str | os.PathLike, *, size: Size | None = None,
                       seq_len: int = 30, test_fraction: float = 0.2, max_frames: int | None = None,
                       test_seq_len: int | None = None, openpose: str | os.PathLike | None = None,
                       mask: bool = False) -> str:
    """Write the pose layout (<phase>_img, <phase>_openpose, <phase>_mask) of one video. Returns a summary."""
    input, out = Path(input), Path(out)
    if mask and openpose is None:
        raise UserError("--mask: only with --openpose DIR (without it the body mask is always written)")
    n, plan = plan_sequences(input, out, seq_len, test_fraction, max_frames, test_seq_len)
    files = None if openpose is None else openpose_files(openpose, input, probe(input).n_frames)
    where, counters = frame_places(plan)
    backend = HolisticBackend() if openpose is None or mask else None
    try:
        with atomic_dir(out) as tmp:
            shape, found = _write_frames(input, n, size, where, backend, files, tmp)
            if not any(found):
                source = f"the OpenPose files of {openpose}" if files else "MediaPipe Holistic"
                raise DataError(f"{input}: {source} found no person in any of the {len(found)} frames; use a video "
                                "with a visible person (head and shoulders at least)")
    finally:
        if backend is not None:
            backend.close()
    frames = {p: sum(c for ph, _, c in plan if ph == p) for p in counters}
    missing = len(found) - sum(found)
    source = f"OpenPose's JSON from {openpose}" if files else "MediaPipe Holistic"
    written_mask = "no body masks" if backend is None else "body masks by MediaPipe Holistic"
    summary = (f"wrote {out}: {counters['train']} train sequences ({frames['train']} frames), {counters['test']} test "
               f"sequences ({frames['test']} frames), {shape[0]}x{shape[1]}, pose keypoints by {source}, "
               f"{written_mask}\n"
               f"{missing} of {len(found)} frames had no person (written as OpenPose writes them: \"people\": [])")
    if missing >= MANY_MISSING * len(found):
        summary += (f"\nwarning: {missing / len(found):.0%} of the frames had no person: the pose input of those "
                    "frames is empty")
    return summary


def _write_frames(input: Path, n: int, size: Size | None, where: dict, backend: HolisticBackend | None,
                  files: list[Path] | None, tmp: Path) -> tuple[tuple[int, int], list[bool]]:
    """Decode the first n frames; for those of the plan write the frame, its people and (with a backend) its mask
    -> (frame shape, whether each written frame had a person)."""
    shape, decoded, found = None, 0, []
    for i, frame in zip(range(n), iter_frames(input)):
        decoded += 1
        if i not in where:
            continue
        source = frame.shape[:2]
        frame = resized(frame, size)
        shape = frame.shape[:2]
        detected = None if backend is None else backend.detect(frame)
        people = detected.people if files is None else scaled(read_openpose(files[i]), source, shape)
        phase, name, j = where[i]
        _write(tmp / f"{phase}_img" / name / f"{j:05d}.png", frame)
        write_openpose(tmp / f"{phase}_openpose" / name / f"{j:05d}.json", people)
        if detected is not None and detected.mask is not None:
            _write(tmp / f"{phase}_mask" / name / f"{j:05d}.png", detected.mask)
        found.append(has_person(people))
    if decoded < n:
        raise DataError(f"{input}: decoded {decoded} frames but the container says {n}; the video is truncated or "
                        "damaged; re-encode it")
    return shape, found


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, image)
