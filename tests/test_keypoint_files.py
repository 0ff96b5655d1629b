"""Keypoint text files (the original face layout's `x,y` lines): round trip and bad files."""

import numpy as np
import pytest

from vid2vid.data.keypoint_files import read_keypoints, write_keypoints
from vid2vid.errors import DataError


def test_round_trip_keeps_points_to_a_thousandth(tmp_path):
    points = np.random.default_rng(0).uniform(0, 400, size=(68, 2)).astype(np.float32)
    points[:5] = np.round(points[:5])  # whole pixels are written as integers
    path = tmp_path / "seq" / "00000.txt"
    write_keypoints(path, points)
    assert path.read_text().splitlines()[0] == f"{int(points[0, 0])},{int(points[0, 1])}"
    np.testing.assert_allclose(read_keypoints(path), points, atol=5e-4)


def test_reads_the_originals_integer_lines_and_blank_lines(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("\n".join(f"{i},{2 * i}" for i in range(68)) + "\n\n")
    assert read_keypoints(path)[10].tolist() == [10.0, 20.0]


@pytest.mark.parametrize("text, found", [
    ("1,2\n" * 67, "67 points, expected 68"),
    ("1,2\n" * 40 + "a,b\n" + "1,2\n" * 27, "line 41"),
    ("1,2\n" * 3 + "1 2\n" + "1,2\n" * 64, "line 4"),
    ("1,2\n" * 5 + "nan,2\n" + "1,2\n" * 62, "line 6"),
])
def test_bad_files_name_file_and_line(tmp_path, text, found):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=found) as error:
        read_keypoints(path)
    assert str(path) in str(error.value)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_keypoints(tmp_path / "none.txt")


def test_write_rejects_a_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match=r"\[K,2\]"):
        write_keypoints(tmp_path / "x.txt", np.zeros((68, 3)))
