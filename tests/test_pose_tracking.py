"""One person followed through a pose video and its short gaps filled (vid2vid.data.pose_tracking), on skeletons
with known positions."""

import numpy as np

from vid2vid.data.openpose import Person
from vid2vid.data.pose_tracking import fill_gaps, follow_person, interpolate, mean_shift, pick_person


def skeleton(x: float, height: float = 100, y: float = 50, conf: float = 0.9) -> Person:
    """A person whose nose is at (x, y) and mid-hip height px below it."""
    person = Person()
    person.pose[0] = (x, y, conf)
    person.pose[8] = (x, y + height, conf)
    return person


def test_pick_person_largest_first_then_nearest_within_reach():
    small, large = skeleton(10, height=20), skeleton(300, height=100)
    assert pick_person([small, large], None) is large
    near, far = skeleton(340), skeleton(100)
    assert pick_person([far, near], large) is near  # 40 px from it: within 0.5 x 100
    assert pick_person([skeleton(360)], large) is None  # 60 px: another person
    assert pick_person([skeleton(360)], large, misses=1) is not None  # unseen for a frame: the reach doubles
    assert pick_person([Person()], large) is None and pick_person([], None) is None


def test_follow_person_leaves_out_the_others_and_marks_gaps():
    frames = [[skeleton(10 * t), skeleton(400, height=30)] for t in range(5)]
    frames[2] = [skeleton(400, height=30)]  # only the passer-by
    track = follow_person(frames)
    assert [p is None for p in track] == [False, False, True, False, False]
    assert [p.pose[0, 0] for p in track if p is not None] == [0, 10, 30, 40]


def test_fill_gaps_interpolates_inner_gaps_up_to_max_gap():
    track = [None, skeleton(0), None, None, skeleton(30), None, None, None, None, skeleton(80), None]
    track[4].pose[8, 2] = 0.5  # the hip less sure: the filled frames take the smaller confidence
    filled, nearest = fill_gaps(track, max_gap=3)
    assert nearest == [(2, 1), (3, 4)]  # the 4-frame gap (5..8) and the ends stay empty
    assert [p is None for p in filled] == [True, False, False, False, False, True, True, True, True, False, True]
    np.testing.assert_allclose([filled[t].pose[0, 0] for t in (2, 3)], [10, 20])
    np.testing.assert_allclose([filled[t].pose[8, 2] for t in (2, 3)], [0.5, 0.5])
    assert fill_gaps(track, max_gap=4)[1][2:] == [(5, 4), (6, 4), (7, 9), (8, 9)]


def test_interpolate_only_points_found_in_both():
    a, b = skeleton(0), skeleton(10)
    b.pose[8] = 0  # the hip not found in b
    middle = interpolate(a, b, 0.5)
    np.testing.assert_allclose(middle.pose[0], (5, 50, 0.9))
    assert not middle.pose[8].any() and not middle.pose[1:8].any()


def test_mean_shift_over_points_found_in_both():
    a, b = skeleton(0), skeleton(10, y=54)
    b.pose[1] = (500, 500, 0.9)  # found in b only: not counted
    np.testing.assert_allclose(mean_shift(a, b), (10, 4))
    np.testing.assert_allclose(mean_shift(a, Person()), (0, 0))


def test_one_partial_detection_does_not_lose_the_person():
    """A 100 px body walking 20 px a frame, one frame showing only two points 5 px apart: the reach stays measured
    in the body's size (decaying slowly), so the walk goes on being followed."""
    frames = []
    for t in range(12):
        person = skeleton(20 * t)
        if t == 4:  # only the nose and the neck 5 px below it
            person = Person()
            person.pose[[0, 1]] = [(20 * t, 50, 0.9), (20 * t, 55, 0.9)]
        frames.append([person])
    assert all(p is not None for p in follow_person(frames))
