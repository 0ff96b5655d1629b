"""Progressive clip length (train.clip_double_every, data.max_frames): the loader's clips double at the right
step, also with DataLoader workers, and a resume restores the current length."""

from pathlib import Path

import pytest

from vid2vid.config import load_config
from vid2vid.train import train
from vid2vid.train.checks import clip_length

REPO = Path(__file__).resolve().parents[1]
TINY_VIDEO = REPO / "configs" / "tiny_video.yaml"


def test_clip_length_doubles_up_to_max_frames():
    cfg = load_config(TINY_VIDEO, ["data.n_frames=3", "data.max_frames=8", "train.clip_double_every=2"])
    assert [clip_length(cfg, s) for s in range(8)] == [3, 3, 6, 6, 8, 8, 8, 8]
    assert clip_length(load_config(TINY_VIDEO, ["data.n_frames=3"]), 100) == 3  # off
    assert clip_length(load_config(TINY_VIDEO, ["model.name=pix2pixhd"]), 5) == 1  # image models: frames
    with pytest.raises(Exception, match="data.max_frames"):
        load_config(TINY_VIDEO, ["data.n_frames=4", "data.max_frames=3"])


def test_clips_grow_in_training_with_workers_and_across_resume(tmp_path, tiny_data, monkeypatch):
    """Record the clip length of every batch the video trainer gets: 3, 3, 6, 6 with 2 workers; a run
    resumed at step 3 gets 6 again."""
    from vid2vid.train import video as video_trainer

    seen = []
    original = video_trainer.VideoTrainer.step

    def recording(self, micro_batches, step=0):
        seen.append((step, micro_batches[0]["frames"].shape[1]))
        return original(self, micro_batches, step)

    monkeypatch.setattr(video_trainer.VideoTrainer, "step", recording)
    common = [f"data.root={tiny_data}", "data.n_frames=3", "data.max_frames=6", "train.clip_double_every=2",
              "data.num_workers=2", "data.batch_size=1", "train.sample_every=1000", "train.checkpoint_every=3",
              "discriminator.temporal_scales=1", "model.ngf=4"]
    train(load_config(TINY_VIDEO, [f"train.out_dir={tmp_path / 'run'}", "train.max_steps=4", *common]))
    assert seen == [(0, 3), (1, 3), (2, 6), (3, 6)]
    seen.clear()
    run = tmp_path / "run"
    train(load_config(TINY_VIDEO, [f"train.out_dir={run}", "train.max_steps=4", *common]),
          resume=str(run / "checkpoints" / "step_0000003"))
    assert seen == [(3, 6)]
