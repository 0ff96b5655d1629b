"""Keypoint consistency for bodies: the pose analogue of landmark consistency (vid2vid.landmarks.consistency). Body
keypoints are detected again on generated frames and compared with the OpenPose keypoints (vid2vid.data.openpose.Person)
the frames were generated from, both in the generated frames' pixels.

Definitions (BODY_25 indices; a point is present when its confidence is > 0):

    torso size     of the conditioning person, the first of these that exists (TORSO_REFERENCES):
                   "neck-hip"       |neck (1) - mid-hip (8)|
                   "shoulder-hip"   the mean of |right shoulder (2) - right hip (9)| and |left shoulder (5) - left hip
                                    (12)| over the sides where both points are present (one side alone: its length).
                                    Same-side lines, not the diagonals: on an upright torso each is about as long as
                                    neck - mid-hip, where a shoulder-to-opposite-hip diagonal is ~20 % longer
                   "shoulders"      |right shoulder (2) - left shoulder (5)|, for head-and-shoulders framings (no hip
                                    seen); about 0.8x neck - mid-hip on a frontal body, so PCK is stricter there
                   none             the frame's body points are not scored (it still counts for "found")
                   a length of 0 (coincident points) counts as absent.
    body error     per frame: the mean distance over the body points present in both / the torso size; then the mean
                   over the scored frames
    PCK@0.2        a conditioning point is correct when the detection has it within PCK_THRESHOLD (0.2) x the torso
                   size; a point the detection lacks is wrong; points absent from the conditioning are not counted.
                   Pooled over the points of every scored frame, per group of BODY_GROUPS and overall (all 25)
    face NME       vid2vid.landmarks.consistency.nme (mean distance / the conditioning's outer-eye-corner distance) on
                   the 68 dlib points of OpenPose's face (its points 0-67; the pupils 68, 69 left out) where both faces
                   have all 68 points present; mean over those frames. face found: the share of frames whose
                   conditioning has a face (all 68 present) where the detection has one too
    found          the share of frames with a conditioning person where the detector finds a person
    skipped        frames whose conditioning has no person (no body point present): not scored, counted

Pairing: the detector (MediaPipe Holistic) finds at most one person; with several conditioning people it is scored
against the one with the most body points in common with it, ties broken by the smallest mean distance over those.
Read the scores against the real frames' (the detector on the real frames against their own conditioning keypoints:
its noise): a generated video cannot score much better.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vid2vid.data.openpose import Person
from vid2vid.landmarks.consistency import nme

NECK, MID_HIP = 1, 8
SHOULDERS = (2, 5)  # right, left
HIPS = (9, 12)  # right, left
TORSO_REFERENCES = ("neck-hip", "shoulder-hip", "shoulders")
PCK_THRESHOLD = 0.2
BODY_GROUPS = {  # BODY_25 indices per body part group; together every one of the 25 once
    "head": (0, 15, 16, 17, 18),  # nose, eyes, ears
    "torso": (1, 2, 5, 8, 9, 12),  # neck, shoulders, mid-hip, hips
    "arms": (3, 4, 6, 7),  # elbows, wrists
    "legs": (10, 11, 13, 14),  # knees, ankles
    "feet": (19, 20, 21, 22, 23, 24),  # big toes, small toes, heels
}
GROUPS = (*BODY_GROUPS, "overall")
FACE_POINTS = 68  # dlib's scheme: OpenPose's face points 0-67


def _length(body: np.ndarray, a: int, b: int) -> float | None:
    """|point a - point b| of body [25,3] when both are present and apart, else None."""
    if body[a, 2] <= 0 or body[b, 2] <= 0:
        return None
    d = float(np.linalg.norm(body[a, :2] - body[b, :2]))
    return d if d > 0 else None


def torso_size(body: np.ndarray) -> tuple[float | None, str | None]:
    """A BODY_25 pose [25,3] -> (its torso size in pixels, the reference used: one of TORSO_REFERENCES), or
    (None, None) when none exists (the module's docstring defines them)."""
    body = np.asarray(body, np.float64)
    if (d := _length(body, NECK, MID_HIP)) is not None:
        return d, "neck-hip"
    sides = [d for s, h in zip(SHOULDERS, HIPS) if (d := _length(body, s, h)) is not None]
    if sides:
        return float(np.mean(sides)), "shoulder-hip"
    if (d := _length(body, *SHOULDERS)) is not None:
        return d, "shoulders"
    return None, None


def has_body(person: Person) -> bool:
    return bool((np.asarray(person.pose)[:, 2] > 0).any())


def face_points(person: Person) -> np.ndarray | None:
    """The 68 dlib points [68,2] of a person's OpenPose face when all 68 are present, else None."""
    face = np.asarray(person.face, np.float64)[:FACE_POINTS]
    return face[:, :2] if (face[:, 2] > 0).all() else None


@dataclass
class FrameScore:
    """One frame's comparison of a detection with its conditioning person."""

    found: bool
    reference: str | None = None  # the torso size's reference (None: no torso size; the body is not scored)
    error: float | None = None  # mean normalised distance over the shared body points (None: none, or no torso)
    correct: np.ndarray | None = None  # bool [25]: within PCK_THRESHOLD x torso (None: not scored)
    present: np.ndarray | None = None  # bool [25]: present in the conditioning (None: not scored)
    target_face: bool = False  # the conditioning has a face (all 68 points)
    face_nme: float | None = None  # where both have one


def _shared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a[:, 2] > 0) & (b[:, 2] > 0)


def _closeness(pred: np.ndarray, target: np.ndarray) -> tuple[int, float]:
    both = _shared(pred, target)
    if not both.any():
        return 0, float("inf")
    return -int(both.sum()), float(np.linalg.norm(pred[both, :2] - target[both, :2], axis=1).mean())


def pair_target(pred: Person, targets: Sequence[Person]) -> Person:
    """The conditioning person a detection is scored against: most body points in common, then the nearest."""
    return min(targets, key=lambda t: _closeness(np.asarray(pred.pose, np.float64), np.asarray(t.pose, np.float64)))


def score_frame(pred: Person | None, target: Person) -> FrameScore:
    """A detection (None: no person found) against its conditioning person, both in the same frame's pixels."""
    target_face = face_points(target)
    if pred is None:
        return FrameScore(False, target_face=target_face is not None)
    body, truth = np.asarray(pred.pose, np.float64), np.asarray(target.pose, np.float64)
    size, reference = torso_size(truth)
    score = FrameScore(True, reference, target_face=target_face is not None)
    if size is not None:
        present = truth[:, 2] > 0
        both = _shared(body, truth)
        distance = np.full(len(truth), np.inf)
        distance[both] = np.linalg.norm(body[both, :2] - truth[both, :2], axis=1) / size
        score.present, score.correct = present, present & (distance <= PCK_THRESHOLD)
        score.error = float(distance[both].mean()) if both.any() else None
    face = face_points(pred)
    if target_face is not None and face is not None:
        score.face_nme = nme(face, target_face)
    return score


@dataclass
class PoseTally:
    """Counts and sums over frames, to pool over frames and sequences (add, merge), then summary()."""

    frames: int = 0  # frames with a conditioning person
    skipped: int = 0  # frames without one
    found: int = 0
    error_sum: float = 0.0
    error_frames: int = 0
    correct: dict = field(default_factory=lambda: dict.fromkeys(GROUPS, 0))
    total: dict = field(default_factory=lambda: dict.fromkeys(GROUPS, 0))
    torso: dict = field(default_factory=lambda: dict.fromkeys((*TORSO_REFERENCES, "none"), 0))  # found frames
    face_frames: int = 0  # frames whose conditioning has a face
    face_found: int = 0  # ... where the detection has one too
    face_nme_sum: float = 0.0

    def add(self, score: FrameScore | None) -> None:
        """One frame's score (None: the conditioning has no person: skipped)."""
        if score is None:
            self.skipped += 1
            return
        self.frames += 1
        self.face_frames += score.target_face
        if not score.found:
            return
        self.found += 1
        self.torso[score.reference or "none"] += 1
        if score.error is not None:
            self.error_sum += score.error
            self.error_frames += 1
        if score.present is not None:
            for group, idx in (*((g, list(i)) for g, i in BODY_GROUPS.items()), ("overall", slice(None))):
                self.correct[group] += int(score.correct[idx].sum())
                self.total[group] += int(score.present[idx].sum())
        if score.face_nme is not None:
            self.face_found += 1
            self.face_nme_sum += score.face_nme

    def merge(self, other: PoseTally) -> None:
        for name in ("frames", "skipped", "found", "error_sum", "error_frames", "face_frames", "face_found",
                     "face_nme_sum"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("correct", "total", "torso"):
            mine = getattr(self, name)
            for key, value in getattr(other, name).items():
                mine[key] += value

    def summary(self) -> dict:
        """{"error", "pck": {group: share or None}, "face_nme", "face_found", "found", "frames", "skipped",
        "scored": frames with a body error, "pck_points": {group: conditioning points counted}, "torso": {reference:
        found frames}}; None where nothing was counted."""
        return {
            "error": self.error_sum / self.error_frames if self.error_frames else None,
            "pck": {g: self.correct[g] / self.total[g] if self.total[g] else None for g in GROUPS},
            "face_nme": self.face_nme_sum / self.face_found if self.face_found else None,
            "face_found": self.face_found / self.face_frames if self.face_frames else None,
            "found": self.found / self.frames if self.frames else None,
            "frames": self.frames, "skipped": self.skipped, "scored": self.error_frames,
            "pck_points": dict(self.total), "torso": dict(self.torso),
        }


def pose_consistency(frames: Iterable[np.ndarray], targets: Sequence[Sequence[Person]], backend) -> PoseTally:
    """Frames (RGB uint8 [H,W,3], in order: the backend may follow the person from frame to frame) against their
    conditioning people (one list per frame, points in the frames' pixels; people without a body point present do
    not count) -> the PoseTally. backend.detect(frame).people: [] or [Person] (vid2vid.data.pose_keypoints)."""
    tally = PoseTally()
    for frame, people in zip(frames, targets, strict=True):
        people = [p for p in people if has_body(p)]
        if not people:
            tally.add(None)
            continue
        found = backend.detect(frame).people
        pred = found[0] if found else None
        tally.add(score_frame(pred, pair_target(pred, people) if pred is not None else people[0]))
    return tally

