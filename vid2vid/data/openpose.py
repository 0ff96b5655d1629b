"""OpenPose's JSON keypoint files, one per frame (`<phase>_openpose/<seq>/<frame>.json` in the original vid2vid pose
layout): `{"version": 1.3, "people": [{"pose_keypoints_2d": [x, y, c, ...], ...}, ...]}`, every part a flat list of
(x, y, confidence) triples in frame pixels (x to the right, y down), confidence 0 where OpenPose found nothing:

    pose_keypoints_2d        25 points (BODY_25)
    face_keypoints_2d        70 points (dlib's 68 + the two pupils)
    hand_left_keypoints_2d   21 points (wrist, then 4 per finger from the thumb)
    hand_right_keypoints_2d  21 points

A part that is missing or an empty list (OpenPose run without --face or --hand) reads as zeros. We write the same
layout with OpenPose's own field names, so either program's files serve the other (every part written in full, as
the original vid2vid's reader needs). A malformed file is a DataError naming the file, the value and the fix."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vid2vid.errors import DataError, writing

PARTS = {"pose": 25, "face": 70, "hand_left": 21, "hand_right": 21}  # Person field -> points
VERSION = 1.3  # what OpenPose 1.5 and later write


def _zeros(n: int):
    return field(default_factory=lambda: np.zeros((n, 3)))


@dataclass
class Person:
    """One person's keypoints, float64 [K,3] (x, y, confidence) per part."""

    pose: np.ndarray = _zeros(PARTS["pose"])  # [25,3] BODY_25
    face: np.ndarray = _zeros(PARTS["face"])  # [70,3]
    hand_left: np.ndarray = _zeros(PARTS["hand_left"])  # [21,3]
    hand_right: np.ndarray = _zeros(PARTS["hand_right"])  # [21,3]

    def seen(self) -> bool:
        """Whether any point of any part was found (confidence > 0)."""
        return any((getattr(self, part)[:, 2] > 0).any() for part in PARTS)

    def map_parts(self, fn) -> Person:
        """A new Person with fn(points [K,3]) -> [K,3] applied to every part."""
        return Person(**{part: fn(getattr(self, part)) for part in PARTS})


def has_person(people: list[Person]) -> bool:
    """Whether any of the people has any point found (confidence > 0)."""
    return any(person.seen() for person in people)


def move_people(people: list[Person], move, bounds: tuple[int, int]) -> list[Person]:
    """Every found point (confidence > 0) of every part moved by `move` (xy float64 [N,2] -> [N,2]); a point that lands
    outside [0, W) x [0, H) of bounds (H, W), and every point not found, becomes zeros (as a point not found is
    written). People with no point left stay in the list (as Persons of zeros)."""
    h, w = bounds

    def part(points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, np.float64)
        out = np.zeros_like(points)
        rows = np.flatnonzero(points[:, 2] > 0)
        xy = move(points[rows, :2])
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        out[rows[inside], :2], out[rows[inside], 2] = xy[inside], points[rows[inside], 2]
        return out

    return [person.map_parts(part) for person in people]


def _key(part: str) -> str:
    return f"{part}_keypoints_2d"


def read_openpose(path: str | os.PathLike) -> list[Person]:
    """The people of one OpenPose JSON file (none: an empty list)."""
    path = Path(path)
    fix = "expected OpenPose's JSON: {\"people\": [{\"pose_keypoints_2d\": [x, y, confidence, ...], ...}]}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise DataError(f"{path}: cannot read the OpenPose file ({reason}); {fix}") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not JSON ({error}); {fix}") from None
    people = data.get("people") if isinstance(data, dict) else None
    if not isinstance(people, list):
        raise DataError(f"{path}: no \"people\" list; {fix}")
    return [_person(path, i, entry, fix) for i, entry in enumerate(people)]


def _person(path: Path, index: int, entry: object, fix: str) -> Person:
    if not isinstance(entry, dict):
        raise DataError(f"{path}: people[{index}] is {type(entry).__name__}, not an object; {fix}")
    parts = {}
    for part, n in PARTS.items():
        values = entry.get(_key(part), [])
        where = f"{path}: people[{index}].{_key(part)}"
        if not isinstance(values, list) or len(values) not in (0, 3 * n):
            count = len(values) if isinstance(values, list) else type(values).__name__
            model = ": OpenPose's BODY_25 model, its default --model_pose" if part == "pose" else ""
            raise DataError(f"{where} has {count} values, expected {3 * n} ({n} points of x, y, confidence{model}) "
                            "or none")
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))]
        if bad:
            raise DataError(f"{where} holds {bad[0]!r}, not a number; write {3 * n} numbers")
        array = np.array(values, np.float64).reshape(-1, 3) if values else np.zeros((n, 3))
        if not np.isfinite(array).all():
            raise DataError(f"{where} holds a value that is not finite; write {3 * n} finite numbers")
        parts[part] = array
    return Person(**parts)


def write_openpose(path: str | os.PathLike, people: list[Person]) -> None:
    """Write people as OpenPose writes them (the folder is made); a part's missing points are zeros."""
    body = []
    for person in people:
        entry = {"person_id": [-1]}
        for part, n in PARTS.items():
            array = np.asarray(getattr(person, part), np.float64)
            if array.shape != (n, 3) or not np.isfinite(array).all():
                raise ValueError(f"Person.{part} must be a finite [{n},3] array, got shape {array.shape}")
            entry[_key(part)] = array.ravel().tolist()
        entry.update({_key(part).replace("2d", "3d"): [] for part in PARTS})
        body.append(entry)
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"version": VERSION, "people": body}))
