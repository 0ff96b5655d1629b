"""Training: the Accelerate trainer, the image and video steps, checkpoints and the loop. `train(cfg)` is the
entry point (vid2vid train)."""

from vid2vid.train.trainer import TrainingStopped as TrainingStopped
from vid2vid.train.trainer import TrainResult as TrainResult
from vid2vid.train.trainer import train as train
