"""flow.io: .flo files identical to OpenCV's reader and writer."""

import cv2
import numpy as np
import pytest

from flow.errors import FlowError
from flow.io import read_flo, write_flo


@pytest.mark.parametrize("shape", [(7, 5, 2), (1, 1, 2), (33, 64, 2)])
def test_write_is_byte_identical_to_opencv_and_round_trips(tmp_path, shape):
    flow = (np.random.default_rng(0).standard_normal(shape) * 10).astype(np.float32)
    ours, theirs = tmp_path / "ours.flo", tmp_path / "cv.flo"
    write_flo(ours, flow)
    assert cv2.writeOpticalFlow(str(theirs), flow)
    assert ours.read_bytes() == theirs.read_bytes()
    np.testing.assert_array_equal(read_flo(theirs), flow)
    np.testing.assert_array_equal(cv2.readOpticalFlow(str(ours)), flow)
    back = read_flo(ours)
    assert back.dtype == np.float32 and back.flags.writeable and back.shape == shape


def test_write_converts_float64_and_leaves_no_temporary(tmp_path):
    flow = np.linspace(-3, 3, 4 * 6 * 2).reshape(4, 6, 2)  # float64
    write_flo(tmp_path / "f.flo", flow)
    np.testing.assert_array_equal(read_flo(tmp_path / "f.flo"), flow.astype(np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["f.flo"]


def test_bad_files_raise_flow_error_naming_the_file(tmp_path):
    bad = tmp_path / "bad.flo"
    bad.write_bytes(np.array([1.0, 2, 3], "<f4").tobytes())
    with pytest.raises(FlowError, match="bad.flo.*magic"):
        read_flo(bad)
    good = tmp_path / "good.flo"
    write_flo(good, np.zeros((4, 4, 2), np.float32))
    short = tmp_path / "short.flo"
    short.write_bytes(good.read_bytes()[:-4])
    with pytest.raises(FlowError, match="short.flo.*truncated"):
        read_flo(short)
    with pytest.raises(FlowError, match="missing.flo"):
        read_flo(tmp_path / "missing.flo")
    with pytest.raises(FlowError, match=r"\[H,W,2\]"):
        write_flo(tmp_path / "x.flo", np.zeros((4, 4, 3)))
    with pytest.raises(FlowError, match="no_dir"):
        write_flo(tmp_path / "no_dir" / "x.flo", np.zeros((4, 4, 2)))


def test_atomic_path_replaces_only_on_success(tmp_path):
    from flow.io import atomic_path

    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".txt"
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_dir_appears_whole_or_not_at_all(tmp_path):
    from flow import atomic_dir, commit_dir

    target = tmp_path / "data"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        assert tmp.parent == tmp_path and tmp.is_dir() and not target.exists()
        (tmp / "a.txt").write_text("whole")
    assert (target / "a.txt").read_text() == "whole" and [p.name for p in tmp_path.iterdir()] == ["data"]
    with pytest.raises(OSError), atomic_dir(target) as tmp:  # an existing folder is never merged into
        (tmp / "b.txt").write_text("other")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"] and not (target / "b.txt").exists()
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "b.txt").write_text("b")
    commit_dir(newer, target, replace=True)
    assert [p.name for p in target.iterdir()] == ["b.txt"] and not newer.exists()


def test_commit_dir_replace_never_leaves_a_partial_target(tmp_path, monkeypatch):
    """A crash between moving the old folder aside and renaming the new one in leaves the old folder aside
    (target missing, never half-deleted); the next commit cleans it up."""
    import os

    from flow import commit_dir

    target, first, second = tmp_path / "step_1", tmp_path / "a", tmp_path / "b"
    for folder, text in ((first, "old"), (second, "new")):
        folder.mkdir()
        (folder / "w.txt").write_text(text)
    commit_dir(first, target)
    real_rename, calls = os.rename, []

    def crash_on_second(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("killed")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", crash_on_second)
    with pytest.raises(OSError, match="killed"):
        commit_dir(second, target, replace=True)
    monkeypatch.setattr(os, "rename", real_rename)
    assert not target.exists() and (tmp_path / ".old_step_1" / "w.txt").read_text() == "old"
    commit_dir(second, target, replace=True)
    assert (target / "w.txt").read_text() == "new" and not (tmp_path / ".old_step_1").exists()
