"""Checkpoint folders (atomic, keep-last-K, resume lookup), exported generators, RNG state."""

import json

import pytest
import torch

from vid2vid import checkpoint as ckpt
from vid2vid.errors import UserError


def _fake_checkpoint(root, step):
    tmp = ckpt.temp_checkpoint_dir(root, step)
    tmp.mkdir(parents=True)
    ckpt.write_trainer_state(tmp, {"step": step})
    return tmp


def test_finalize_renames_and_keeps_last_k(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (5, 10, 15, 20):
        final = ckpt.finalize_checkpoint(_fake_checkpoint(root, step), keep_last=2)
        assert final.name == ckpt.checkpoint_name(step)
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step_0000015", "step_0000020"]
    assert not list(root.glob(".tmp_*"))
    assert json.loads((root / "step_0000020" / ckpt.STATE_FILE).read_text()) == {"step": 20}


def test_incomplete_checkpoint_is_never_resumed(tmp_path):
    root = tmp_path / "checkpoints"
    ckpt.finalize_checkpoint(_fake_checkpoint(root, 5), keep_last=3)
    _fake_checkpoint(root, 10)  # a crash in the middle of writing step 10
    assert ckpt.resolve_resume("latest", root) == root / "step_0000005"
    # the next complete save clears the stale temporary folder
    ckpt.finalize_checkpoint(_fake_checkpoint(root, 15), keep_last=3)
    assert not (root / ".tmp_step_0000010").exists()


def test_resolve_resume(tmp_path):
    assert ckpt.resolve_resume("latest", tmp_path / "none") is None
    with pytest.raises(UserError, match="not a checkpoint folder"):
        ckpt.resolve_resume(str(tmp_path), tmp_path)
    root = tmp_path / "checkpoints"
    done = ckpt.finalize_checkpoint(_fake_checkpoint(root, 7), keep_last=1)
    assert ckpt.resolve_resume(str(done), root) == done
    assert ckpt.read_trainer_state(done)["step"] == 7


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(3)
    ckpt.save_rng(tmp_path, 0)
    a = torch.rand(4)
    torch.manual_seed(99)
    assert ckpt.load_rng(tmp_path, 0)
    assert torch.equal(torch.rand(4), a)
    assert not ckpt.load_rng(tmp_path, 1)


def test_load_generator_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="no such exported model"):
        ckpt.load_generator(tmp_path / "missing")
    (tmp_path / "export").mkdir()
    with pytest.raises(UserError, match="config.yaml: missing"):
        ckpt.load_generator(tmp_path / "export")
