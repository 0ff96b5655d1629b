"""Training (vid2vid train): `train(cfg, resume=None)`.

    schedule.py  learning rates, linear decay, the training clock, EMA
    trainer.py   named network groups and the Trainer base (updates, non-finite checks, export hooks)
    accel.py     the one place that reaches past Accelerate's public API (optimizer swaps)
    image.py     the image models' step (pix2pix, pix2pixHD, SPADE)
    video.py     the video model's step (chunks through vid2vid.temporal, temporal Ds, held-out samples)
    warm_start.py  model.init_from: the video model's image branch from a per-frame export
    checks.py    trainer-side config checks, clip length per step
    logs.py      log.jsonl, sample PNGs
    state.py     checkpoints and the export
    loop.py      train(): setup, steps, logging, sampling, checkpointing, stop signals
"""

from vid2vid.train.loop import TrainingStopped as TrainingStopped
from vid2vid.train.loop import TrainResult as TrainResult
from vid2vid.train.loop import train as train
