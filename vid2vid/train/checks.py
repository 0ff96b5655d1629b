"""Config checks that need the environment or the trainer (the static rules live in vid2vid.config and
vid2vid.families), and the clip length of each step."""

from __future__ import annotations

from pathlib import Path

import torch

from vid2vid import checkpoint as ckpt
from vid2vid.config import Config
from vid2vid.errors import ConfigError
from vid2vid.families import FAMILIES, family
from vid2vid.losses import find_vgg19_weights


def check_trainable(cfg: Config, num_processes: int = 1) -> None:
    """Refuse settings this trainer cannot honour, naming the key and the fix."""
    if family(cfg).sequential:
        check_first_frame_model(cfg)
    if cfg.loss.teacher > 0 and not cfg.model.init_from:  # a config may leave it to the command line (the demos)
        raise ConfigError(f"loss.teacher: {cfg.loss.teacher} needs model.init_from (the per-frame model whose frames "
                          "teach the raw frame); set model.init_from=PATH/export or loss.teacher=0")
    for key, on in (("model.feat_num", cfg.model.feat_num > 0), ("model.use_vae", cfg.model.use_vae)):
        if on and key not in family(cfg).encoders:  # the family names the encoders each model trains
            owner = next(name for name, row in FAMILIES.items() if key in row.encoders)
            raise ConfigError(f"{key}: {cfg.model.name} has no such encoder (it belongs to {owner}); "
                              f"set {key}={'0' if key == 'model.feat_num' else 'false'} or model.name={owner}")
    if cfg.model.feature_bank == "images":  # the trainer fits k-means centres, not one row per training image
        raise ConfigError("model.feature_bank: 'images' is for rendering vid2vid's imported edge2face single-frame "
                          "generator (its features.npy, one row per training image); training fits a k-means bank: "
                          "set model.feature_bank=kmeans")
    if cfg.data.contain_dontcare_label:  # the trainer's one-hot and the video generator have no such channel
        raise ConfigError("data.contain_dontcare_label: true is for rendering imported SPADE COCO/ADE20K checkpoints "
                          "(vid2vid import, vid2vid render); training does not take it: map the don't-care id 255 "
                          "to a label id < data.label_nc in the dataset and set data.contain_dontcare_label=false")
    if cfg.train.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("train.mixed_precision: 'fp16' needs a CUDA GPU; on CPU use bf16 or no")
    if cfg.train.tracker == "tensorboard":
        try:
            import tensorboard  # noqa: F401  (here: an optional dependency, only checked for)
        except ImportError:
            raise ConfigError("train.tracker: 'tensorboard' is not installed; pip install tensorboard "
                              "(or pip install -e '.[tensorboard]'), or set train.tracker=none") from None
    if cfg.loss.vgg > 0:
        find_vgg19_weights(cfg.loss.vgg_weights)  # before a long data check, not after it
    if cfg.loss.gan_mode == "wgan-gp" and num_processes > 1:
        raise ConfigError("loss.gan_mode: 'wgan-gp' trains in one process only (its gradient penalty needs a "
                          "double backward, which DistributedDataParallel does not support); use hinge or ls "
                          "for multi-process training")


def check_first_frame_model(cfg: Config) -> None:
    """model.first_frame image-model:PATH must name an exported per-frame model."""
    prefix, _, path = cfg.model.first_frame.partition(":")
    if prefix != "image-model":
        return
    folder = Path(path)
    if not (folder / ckpt.EXPORT_WEIGHTS).is_file() or not (folder / ckpt.EXPORT_CONFIG).is_file():
        raise ConfigError(f"model.first_frame: {cfg.model.first_frame!r}: no exported model there (it needs "
                          f"{ckpt.EXPORT_CONFIG} and {ckpt.EXPORT_WEIGHTS}); train a per-frame model first "
                          "(e.g. configs/demo_image.yaml) and pass its <train.out_dir>/export, or use real / zeros")


def clip_length(cfg: Config, step: int) -> int:
    """Frames per training clip at `step`: data.n_frames doubled every train.clip_double_every steps, up to
    data.max_frames (the image models: 1)."""
    if not family(cfg).sequential:
        return 1
    every, n = cfg.train.clip_double_every, cfg.data.n_frames
    if every <= 0:
        return n
    return min(max(cfg.data.max_frames, n), n * 2 ** (step // every))
