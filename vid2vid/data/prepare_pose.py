"""`vid2vid prepare video IN OUT --labels pose [--openpose DIR [--mask]]`: the original vid2vid's pose layout from one
video of a person.

    OUT/<phase>_img/<seq>/00000.png        the frames (at --size when given)
    OUT/<phase>_openpose/<seq>/00000.json  OpenPose's JSON of that frame (BODY_25 body, 70-point face, 21-point hands)
    OUT/<phase>_mask/<seq>/00000.png       the body mask, uint8 0/255 (255: the person)

The split into train/test sequences is the one of `prepare video` (split_sequences: by time, the test phase the
video's last frames). The keypoints and the mask come from MediaPipe Holistic (vid2vid.data.pose_keypoints: one
person, the most prominent), detected on the frames as written (after --size). One person is followed through the
video (vid2vid.data.pose_tracking: the largest at the first frame with a person, then the nearest; anyone else is
left out) and a gap of at most GAP_SECONDS between two frames with them is filled: the points interpolated, the mask
the nearest frame's moved with the body. A frame still without the person is kept, its JSON written as OpenPose
writes a frame without people (`"people": []`: the original's reader draws nothing for it) and its mask all 0; the
summary says how many frames were filled and how many stayed empty. A video with no person in any frame is a
DataError naming it, and nothing is written.

With --openpose DIR the keypoints are OpenPose's own output instead (one JSON file per frame of the video, matched
by their sorted names; with --size their points are scaled to the written frames), the person followed and gaps
filled the same way; --all-people keeps every person as OpenPose found them (no following, no filling). No mask is
written unless --mask asks for Holistic's (MediaPipe then runs for the mask only).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from flow import atomic_dir
from vid2vid.config import Size
from vid2vid.data.openpose import Person, has_person, read_openpose, write_openpose
from vid2vid.data.pose_keypoints import HolisticBackend
from vid2vid.data.pose_tracking import fill_gaps, follow_person, mean_shift
from vid2vid.data.prepare import frame_places, plan_sequences, resized
from vid2vid.errors import DataError, UserError
from vid2vid.video_io import iter_frames, probe, read_image, write_image

MANY_MISSING = 0.2  # the share of frames without a person above which the summary warns
GAP_SECONDS = 0.5  # the longest gap without the followed person that is filled (frames without a frame rate: 15)


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
                       mask: bool = False, all_people: bool = False) -> str:
    """Write the pose layout (<phase>_img, <phase>_openpose, <phase>_mask) of one video. Returns a summary."""
    input, out = Path(input), Path(out)
    if mask and openpose is None:
        raise UserError("--mask: only with --openpose DIR (without it the body mask is always written)")
    if all_people and openpose is None:
        raise UserError("--all-people: only with --openpose DIR (MediaPipe Holistic finds one person)")
    n, plan = plan_sequences(input, out, seq_len, test_fraction, max_frames, test_seq_len)
    info = probe(input)
    files = None if openpose is None else openpose_files(openpose, input, info.n_frames)
    where, counters = frame_places(plan)
    backend = HolisticBackend() if openpose is None or mask else None
    max_gap = round(GAP_SECONDS * info.fps) if info.fps else 15
    try:
        with atomic_dir(out) as tmp:
            shape, people = _write_frames(input, n, size, where, backend, files, tmp)
            if not any(has_person(p) for p in people):
                source = f"the OpenPose files of {openpose}" if files else "MediaPipe Holistic"
                raise DataError(f"{input}: {source} found no person in any of the {len(people)} frames; use a video "
                                "with a visible person (head and shoulders at least)")
            places = [where[i] for i in sorted(where)]
            if all_people:
                _write_keypoints(people, places, tmp)
                without, filled = sum(not has_person(p) for p in people), 0
            else:
                without, filled = _write_followed(people, places, max_gap, tmp)
    finally:
        if backend is not None:
            backend.close()
    return _summary(out, plan, counters, shape, (len(people), without, filled), openpose if files else None, backend,
                    all_people)


def _summary(out: Path, plan, counters: dict, shape: tuple[int, int], counts: tuple[int, int, int], openpose,
             backend, all_people: bool) -> str:
    """counts: (frames written, frames without the person (anyone with all_people), frames of those filled)."""
    frames = {p: sum(c for ph, _, c in plan if ph == p) for p in counters}
    total, without, filled = counts
    empty = without - filled
    source = f"OpenPose's JSON from {openpose}" if openpose else "MediaPipe Holistic"
    written_mask = "no body masks" if backend is None else "body masks by MediaPipe Holistic"
    followed = "every person as found" if all_people else "one person followed"
    summary = (f"wrote {out}: {counters['train']} train sequences ({frames['train']} frames), {counters['test']} test "
               f"sequences ({frames['test']} frames), {shape[0]}x{shape[1]}, pose keypoints by {source} ({followed}), "
               f"{written_mask}\n"
               f"{without} of {total} frames had no person: {filled} filled between the frames "
               f"around them, {empty} written as OpenPose writes them (\"people\": [])")
    if empty >= MANY_MISSING * total:
        summary += (f"\nwarning: {empty / total:.0%} of the frames have no person: the pose input of those "
                    "frames is empty")
    return summary


def _write_frames(input: Path, n: int, size: Size | None, where: dict, backend: HolisticBackend | None,
                  files: list[Path] | None, tmp: Path) -> tuple[tuple[int, int], list[list[Person]]]:
    """Decode the first n frames; for those of the plan write the frame and (with a backend) its mask -> (frame
    shape, each written frame's people as detected or read)."""
    shape, decoded, people = None, 0, []
    for i, frame in zip(range(n), iter_frames(input)):
        decoded += 1
        if i not in where:
            continue
        source = frame.shape[:2]
        frame = resized(frame, size)
        shape = frame.shape[:2]
        detected = None if backend is None else backend.detect(frame)
        people.append(detected.people if files is None else scaled(read_openpose(files[i]), source, shape))
        phase, name, j = where[i]
        _write(tmp / f"{phase}_img" / name / f"{j:05d}.png", frame)
        if detected is not None and detected.mask is not None:
            _write(_mask_path(tmp, where[i]), detected.mask)
    if decoded < n:
        raise DataError(f"{input}: decoded {decoded} frames but the container says {n}; the video is truncated or "
                        "damaged; re-encode it")
    return shape, people


def _write_keypoints(people: list[list[Person]], places: list[tuple[str, str, int]], tmp: Path) -> None:
    """Each written frame's people as OpenPose JSON (places: (phase, sequence, frame) of each)."""
    for (phase, name, j), found in zip(places, people):
        write_openpose(tmp / f"{phase}_openpose" / name / f"{j:05d}.json", found)


def _write_followed(people: list[list[Person]], places: list[tuple[str, str, int]], max_gap: int, tmp: Path
                    ) -> tuple[int, int]:
    """Follow one person through the written frames (in time order), fill the short gaps within each phase (keypoints
    interpolated, the mask the nearest frame's moved by the body's shift) and write the keypoints -> (frames without
    the person, how many of those were filled)."""
    followed = follow_person(people)
    track, nearest = list(followed), []
    for phase in ("train", "test"):  # filled within a phase: nothing of the held-out frames reaches training's
        rows = [k for k, place in enumerate(places) if place[0] == phase]
        filled, pairs = fill_gaps([followed[k] for k in rows], max_gap)
        for k, person in zip(rows, filled):
            track[k] = person
        nearest += [(rows[t], rows[s]) for t, s in pairs]
    for t, s in nearest:
        _move_mask(tmp, places[s], places[t], track[s], track[t])
    for place, person, found in zip(places, track, people):
        if person is None and has_person(found):  # someone else: their mask goes too
            _clear_mask(tmp, place)
    _write_keypoints([[] if person is None else [person] for person in track], places, tmp)
    return sum(person is None for person in followed), len(nearest)


def _mask_path(tmp: Path, place: tuple[str, str, int]) -> Path:
    """The body mask file of a written frame: <phase>_mask/<seq>/<frame>.png."""
    phase, name, j = place
    return tmp / f"{phase}_mask" / name / f"{j:05d}.png"


def _clear_mask(tmp: Path, place: tuple[str, str, int]) -> None:
    path = _mask_path(tmp, place)
    if path.is_file():
        _write(path, np.zeros_like(read_image(path, cv2.IMREAD_GRAYSCALE)))


def _move_mask(tmp: Path, source: tuple[str, str, int], target: tuple[str, str, int], seen: Person,
               filled: Person) -> None:
    """A filled frame's body mask: the nearest frame's, shifted by the mean move of the body's points from it (whole
    pixels; uncovered pixels 0). Nothing when no mask was written."""
    path = _mask_path(tmp, source)
    if not path.is_file():
        return
    mask = read_image(path, cv2.IMREAD_GRAYSCALE)
    dx, dy = np.round(mean_shift(seen, filled)).astype(int)
    h, w = mask.shape
    moved = np.zeros_like(mask)
    moved[max(dy, 0): h + min(dy, 0), max(dx, 0): w + min(dx, 0)] = mask[max(-dy, 0): h - max(dy, 0),
                                                                         max(-dx, 0): w - max(dx, 0)]
    _write(_mask_path(tmp, target), moved)


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, image)
