"""The training data stream with DataLoader workers (data.num_workers=2, persistent): every epoch draws new
clips, a resume inside an epoch reproduces the uninterrupted run exactly, the clip length changes from the exact
batch it was set for, and a DataError in a worker reaches the user as the same one-line DataError."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from vid2vid.config import load_config
from vid2vid.data.sampler import ClipKey, ClipSampler, endless_batches
from vid2vid.errors import DataError
from vid2vid.train.loop import _build_data

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
BAD_SEQUENCE = "seq_0001"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """tiny.yaml's synthetic data with 4 training sequences (2 batches of 2 per epoch), generated on first use."""
    return tmp_path_factory.mktemp("sampler") / "tiny4"


def config(root: Path, *overrides: str):
    return load_config(TINY, [f"data.root={root}", "data.synthetic.sequences=4", "data.batch_size=2",
                              "data.num_workers=2", "data.flip=true", "data.max_zoom=1.5", *overrides])


def stream(cfg, epoch: int = 0, batch_in_epoch: int = 0):
    """The trainer's data path: _build_data, accelerate's prepare, endless_batches. Returns (dataset, stream)."""
    acc = Accelerator(cpu=True)
    dataset, sampler, loader = _build_data(cfg, acc)
    return dataset, endless_batches(acc.prepare(loader), sampler, dataset, epoch, batch_in_epoch,
                                    cfg.data.batch_size * acc.num_processes)


def take(batches, n: int) -> list[tuple[int, int, dict]]:
    return [next(batches) for _ in range(n)]


def expected_frames(dataset, epoch: int, batch: dict) -> torch.Tensor:
    """The batch's clips drawn in this process with dataset[int] at that epoch and the batch's clip length."""
    names = [s.name for s in dataset.sequences]
    dataset.set_epoch(epoch)
    dataset.set_n_frames(batch["frames"].shape[1])
    return torch.stack([dataset[names.index(name)]["frames"] for name in batch["sequence"]])


def test_each_epoch_draws_new_clips_in_the_workers(data_root):
    dataset, batches = stream(config(data_root))
    by_epoch = {}
    for epoch, _, batch in take(batches, 6):  # epochs 0, 1, 2
        assert torch.equal(batch["frames"], expected_frames(dataset, epoch, batch))
        for name, frames in zip(batch["sequence"], batch["frames"]):
            by_epoch.setdefault(epoch, {})[name] = frames
    assert sorted(by_epoch) == [0, 1, 2] and all(len(items) == 4 for items in by_epoch.values())
    for name in by_epoch[0]:
        assert not torch.equal(by_epoch[0][name], by_epoch[1][name]), name
        assert not torch.equal(by_epoch[1][name], by_epoch[2][name]), name


def test_resume_inside_an_epoch_reproduces_the_items(data_root):
    cfg = config(data_root)
    _, full = stream(cfg)
    full_tail = take(full, 10)[7:]  # epoch 3 batch 2, epoch 4 batches 1 and 2
    _, resumed = stream(cfg, epoch=3, batch_in_epoch=1)
    resumed_items = take(resumed, 3)
    assert [(e, i) for e, i, _ in resumed_items] == [(e, i) for e, i, _ in full_tail] == [(3, 2), (4, 1), (4, 2)]
    for (_, _, a), (_, _, b) in zip(full_tail, resumed_items):
        assert a["sequence"] == b["sequence"]
        for key in ("frames", "labels", "inst", "start"):
            assert torch.equal(a[key], b[key]), key


def test_clip_length_changes_from_the_batch_it_was_set_for(data_root):
    dataset, batches = stream(config(data_root))
    lengths = [batch["frames"].shape[1] for _, _, batch in take(batches, 3)]
    assert batches.set_n_frames(4) == 4
    after = take(batches, 3)  # epoch 1 batch 2, epoch 2 batches 1 and 2
    assert batches.set_n_frames(64) == 8  # capped at the shortest sequence (8 frames)
    last = take(batches, 2)
    assert lengths + [b["frames"].shape[1] for _, _, b in after + last] == [1, 1, 1, 4, 4, 4, 8, 8]
    for epoch, _, batch in after + last:
        assert torch.equal(batch["frames"], expected_frames(dataset, epoch, batch))
    # the same schedule from a resume at epoch 1 batch 1 gives the same clips
    _, resumed = stream(config(data_root), epoch=1, batch_in_epoch=1)
    resumed.set_n_frames(4)
    assert torch.equal(next(resumed)[2]["frames"], after[0][2]["frames"])


def test_clip_sampler_changes_length_at_batch_boundaries_only():
    sampler = ClipSampler(6, seed=0, n_frames=2, max_n_frames=5, keys_per_batch=2)
    sampler.set_epoch(3)
    keys = iter(sampler)
    first = next(keys)
    sampler.set_n_frames(9)
    rest = list(keys)
    assert first == ClipKey(epoch=3, index=first.index, n_frames=2)
    assert [k.n_frames for k in [first, *rest]] == [2, 2, 5, 5, 5, 5]
    assert all(k.epoch == 3 for k in rest) and sorted(k.index for k in [first, *rest]) == list(range(6))
    with pytest.raises(ValueError, match="whole number of batches"):
        sampler.skip(3)


def corrupt_copy(data_root: Path, tmp_path: Path) -> Path:
    """A copy of the dataset whose BAD_SEQUENCE RGB frames are all truncated PNGs."""
    if not data_root.exists():
        stream(config(data_root))  # generates it
    root = tmp_path / "corrupt"
    shutil.copytree(data_root, root)
    for png in (root / "train_B" / BAD_SEQUENCE).glob("*.png"):
        png.write_bytes(png.read_bytes()[:40])
    return root


def first_error(cfg) -> str:
    _, batches = stream(cfg)
    with pytest.raises(DataError) as caught:
        take(batches, 8)
    assert type(caught.value) is DataError
    return str(caught.value)


def test_data_error_in_a_worker_is_the_plain_one_line_message(data_root, tmp_path, monkeypatch):
    """As if the file broke after the up-front check_dataset (which would name it first)."""
    import vid2vid.train.loop  # where the trainer's up-front check_dataset is looked up

    root = corrupt_copy(data_root, tmp_path)
    monkeypatch.setattr(vid2vid.train.loop, "check_dataset", lambda data_cfg: None)
    message = first_error(config(root, "data.source=folder"))
    assert f"train_B/{BAD_SEQUENCE}/" in message and "cannot decode it" in message
    assert "\n" not in message and "Traceback" not in message and "DataLoader worker" not in message
    assert message == first_error(config(root, "data.source=folder", "data.num_workers=0"))


CLI_WITHOUT_CHECK = """
import sys
import vid2vid.data.check
from vid2vid.cli import main
vid2vid.data.check.check_dataset = lambda data_cfg: None  # the file broke after the check
sys.exit(main(sys.argv[1:]))
"""


def test_cli_reports_a_worker_data_error_in_one_line(data_root, tmp_path):
    root = corrupt_copy(data_root, tmp_path)
    proc = subprocess.run([sys.executable, "-c", CLI_WITHOUT_CHECK, "train", "--config", str(TINY), "--set",
                           f"data.root={root}", "data.source=folder", "data.batch_size=2", "data.num_workers=2",
                           "train.max_steps=4", f"train.out_dir={tmp_path / 'run'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.count("vid2vid: error: ") == 1, proc.stderr[-3000:]
    message = proc.stderr.split("vid2vid: error: ")[1].splitlines()[0]  # (after the progress bar's first draw)
    assert f"train_B/{BAD_SEQUENCE}/" in message and message.endswith("replace or remove the file"), message
    assert "Traceback" not in proc.stderr and "DataLoader worker" not in proc.stderr
