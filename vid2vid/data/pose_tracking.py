"""One person followed through a pose video, and the short gaps where they are not found filled in (as faces are:
vid2vid.landmarks.tracking).

follow_person: the first frame with a person picks the largest (the body points' bounding box); from then on each
frame takes the person nearest the followed one (mean distance over the body points found in both), if near enough:
within MAX_JUMP x the followed body's size per frame since it was last seen. Anyone else (a second person, a false
detection, the detector jumping to a passer-by) is left out, and a frame without the followed person is a gap.

fill_gaps: a gap between two frames with the person, at most `max_gap` frames long, gets every point found on both
sides interpolated linearly (confidence: the smaller of the two); longer gaps and the frames before the person first
appears or after they last leave stay empty (nobody is drawn: the person is not in view). A body that vanishes for
a frame or two (motion blur, an arm across the face) would otherwise flash out of the pose input.
"""

from __future__ import annotations

import numpy as np

from vid2vid.data.openpose import PARTS, Person

MAX_JUMP = 0.5  # the followed body moves at most this fraction of its size per frame (more: another person)
SIZE_DECAY = 0.9  # the followed body's size, for its reach, shrinks at most this much a frame


def body_points(person: Person) -> np.ndarray:
    """The found points of every part [N,2] (x, y), body first."""
    points = np.concatenate([getattr(person, part) for part in PARTS])  # [K,3]
    return points[points[:, 2] > 0, :2]


def body_size(person: Person) -> float:
    """The longer side of the found points' bounding box, pixels (0 for a person with one point)."""
    points = body_points(person)
    return float((points.max(0) - points.min(0)).max()) if len(points) else 0.0


def distance(a: Person, b: Person) -> float:
    """Mean distance between the body (BODY_25) points found in both, pixels; the distance between the centres of
    all found points when no body point is found in both."""
    both = (a.pose[:, 2] > 0) & (b.pose[:, 2] > 0)
    if both.any():
        return float(np.linalg.norm(a.pose[both, :2] - b.pose[both, :2], axis=1).mean())
    return float(np.linalg.norm(body_points(a).mean(0) - body_points(b).mean(0)))


def mean_shift(a: Person, b: Person) -> np.ndarray:
    """The mean move (x, y) from a to b of the points found in both, any part, pixels (zeros when none is)."""
    pa = np.concatenate([getattr(a, part) for part in PARTS])  # [K,3]
    pb = np.concatenate([getattr(b, part) for part in PARTS])
    both = (pa[:, 2] > 0) & (pb[:, 2] > 0)
    return (pb[both, :2] - pa[both, :2]).mean(0) if both.any() else np.zeros(2)


def pick_person(people: list[Person], previous: Person | None, misses: int = 0, size: float = 0.0
                ) -> Person | None:
    """The person to follow among a frame's people: the largest when nobody is followed yet, else the nearest to
    `previous` within MAX_JUMP x the body's size x (1 + misses) (misses: frames missed in a row since it was seen;
    size: the followed body's size so far, which one partial detection must not shrink)."""
    seen = [p for p in people if p.seen()]
    if not seen:
        return None
    if previous is None:
        return max(seen, key=body_size)
    nearest = min(seen, key=lambda p: distance(p, previous))
    reach = MAX_JUMP * max(size, body_size(previous), 1.0) * (1 + misses)
    return nearest if distance(nearest, previous) <= reach else None


def follow_person(frames: list[list[Person]]) -> list[Person | None]:
    """Each frame's people -> the followed person per frame (None where they are not found). The body's size the
    reach is measured in decays by SIZE_DECAY a frame towards a smaller detection (a frame that shows only a few
    points, a person entering at the edge) rather than dropping to it."""
    track, previous, misses, size = [], None, 0, 0.0
    for people in frames:
        person = pick_person(people, previous, misses, size)
        track.append(person)
        if person is not None:
            previous, misses, size = person, 0, max(body_size(person), SIZE_DECAY * size)
        else:
            misses += 1
    return track


def interpolate(a: Person, b: Person, s: float) -> Person:
    """The person a fraction s of the way from a to b: points found in both, linear; the others not found."""

    def part(name: str) -> np.ndarray:
        pa, pb = getattr(a, name), getattr(b, name)
        both = (pa[:, 2] > 0) & (pb[:, 2] > 0)
        out = np.zeros_like(pa)
        out[both, :2] = (1 - s) * pa[both, :2] + s * pb[both, :2]
        out[both, 2] = np.minimum(pa[both, 2], pb[both, 2])
        return out

    return Person(**{name: part(name) for name in PARTS})


def fill_gaps(track: list[Person | None], max_gap: int) -> tuple[list[Person | None], list[tuple[int, int]]]:
    """The followed person per frame -> (the same with every gap of at most max_gap frames between two frames with
    the person interpolated, the filled frames as (frame, the nearest frame with the person))."""
    known = [i for i, p in enumerate(track) if p is not None]
    out, filled = list(track), []
    for a, b in zip(known, known[1:]):
        if 1 < b - a <= max_gap + 1:
            for t in range(a + 1, b):
                person = interpolate(track[a], track[b], (t - a) / (b - a))
                if person.seen():  # (no point found in both frames: left empty)
                    out[t] = person
                    filled.append((t, a if t - a <= b - t else b))
    return out, filled
