"""OpenPose JSON files (vid2vid.data.openpose): OpenPose's layout read and written, round trip, bad files."""

import json

import numpy as np
import pytest

from vid2vid.data.openpose import PARTS, Person, read_openpose, write_openpose
from vid2vid.errors import DataError


def random_person(seed: int) -> Person:
    rng = np.random.default_rng(seed)
    return Person(**{part: np.c_[rng.uniform(-5, 300, (n, 2)), rng.uniform(0, 1, n)] for part, n in PARTS.items()})


def test_round_trip_is_exact_and_uses_openposes_names(tmp_path):
    people = [random_person(0), random_person(1), Person()]
    path = tmp_path / "seq" / "00000_keypoints.json"
    write_openpose(path, people)
    data = json.loads(path.read_text())
    assert data["version"] == 1.3 and len(data["people"]) == 3
    assert {"pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d",
            "person_id"} <= set(data["people"][0])
    assert len(data["people"][0]["pose_keypoints_2d"]) == 75 and data["people"][2]["face_keypoints_2d"] == [0.0] * 210
    for ours, read in zip(people, read_openpose(path)):
        for part in PARTS:
            assert np.array_equal(getattr(ours, part), getattr(read, part)), part


def test_reads_openposes_own_output(tmp_path):
    """As OpenPose writes a frame (1.5+, run without --face / --hand: empty lists; older: no key at all)."""
    pose = [float(v) for v in range(75)]
    path = tmp_path / "frame_000000000000_keypoints.json"
    path.write_text(json.dumps({"version": 1.3, "people": [
        {"person_id": [-1], "pose_keypoints_2d": pose, "face_keypoints_2d": [], "hand_left_keypoints_2d": [],
         "hand_right_keypoints_2d": [], "pose_keypoints_3d": [], "face_keypoints_3d": []},
        {"pose_keypoints_2d": pose}]}))
    first, second = read_openpose(path)
    assert first.pose.shape == (25, 3) and first.pose[1].tolist() == [3.0, 4.0, 5.0]
    assert first.face.shape == (70, 3) and not first.face.any() and not second.hand_right.any()
    path.write_text('{"version": 1.3, "people": []}')
    assert read_openpose(path) == []


@pytest.mark.parametrize("text, found", [
    ("not json", "not JSON"),
    ("[1, 2]", "no \"people\" list"),
    ('{"people": {}}', "no \"people\" list"),
    ('{"people": [3]}', r"people\[0\] is int, not an object"),
    ('{"people": [{"pose_keypoints_2d": [1, 2, 3]}]}', r"people\[0\].pose_keypoints_2d has 3 values, expected 75"),
    ('{"people": [{}, {"face_keypoints_2d": "x"}]}', r"people\[1\].face_keypoints_2d has str values, expected 210"),
    ('{"people": [{"hand_left_keypoints_2d": [' + "1," * 62 + '"a"]}]}', r"holds 'a', not a number"),
    ('{"people": [{"hand_right_keypoints_2d": [' + "1," * 62 + 'NaN]}]}', "not finite"),
])
def test_bad_files_name_the_file_the_value_and_the_fix(tmp_path, text, found):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataError, match=found) as error:
        read_openpose(path)
    assert str(path) in str(error.value)


def test_a_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read the OpenPose file"):
        read_openpose(tmp_path / "none.json")


def test_write_rejects_a_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match=r"Person.face must be a finite \[70,3\]"):
        write_openpose(tmp_path / "x.json", [Person(face=np.zeros((68, 3)))])
