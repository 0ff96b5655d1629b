"""Training checkpoints (one safetensors file per network and per optimizer group, named by network and group)
and the export refreshed with each: save, check and load (vid2vid.checkpoint holds the file helpers)."""

from __future__ import annotations

import shutil
from pathlib import Path

from accelerate import Accelerator
from safetensors.torch import load_file

from vid2vid import checkpoint as ckpt
from vid2vid.errors import UserError, writing
from vid2vid.train.trainer import Trainer

RESUME_FIX = "resume with the config the run was started with (<train.out_dir>/config.yaml)"


def save_checkpoint(acc: Accelerator, trainer: Trainer, out_dir: Path, state: dict) -> Path | None:
    """Every process calls this. Written to a temporary folder and renamed when complete; then the export
    is refreshed. Returns the checkpoint folder on the main process. A failed write (full disk) removes the
    temporary folder and raises a UserError saying what stays intact."""
    cfg = trainer.cfg
    tmp = ckpt.temp_checkpoint_dir(out_dir / "checkpoints", state["step"])
    try:
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            with writing(tmp):
                tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        ckpt.save_rng(tmp, acc.process_index)
        if acc.is_main_process:
            for name, net in trainer.networks.items():
                ckpt.atomic_save_safetensors(acc.unwrap_model(net).state_dict(), ckpt.network_file(tmp, name))
            if trainer.ema is not None:
                ckpt.atomic_save_safetensors(trainer.ema.state_dict(), tmp / ckpt.EMA_FILE)
            ckpt.write_trainer_state(tmp, {**state, **_group_state(trainer, tmp)})
        acc.wait_for_everyone()
    except BaseException as error:  # no partial checkpoint stays behind
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, UserError):
            raise ckpt.checkpoint_not_written(tmp, error) from None
        raise
    final = None
    if acc.is_main_process:
        final = ckpt.finalize_checkpoint(tmp, cfg.train.keep_last)
        write_export(trainer, out_dir / "export")
    acc.wait_for_everyone()
    return final


def write_export(trainer: Trainer, export_dir: Path) -> None:
    """Main process: the generator (EMA when on) and, for an image model with an encoder, the encoder and
    pix2pixHD's feature bank (fitted now, see ImageTrainer)."""
    ckpt.export_generator(trainer.export_state(), trainer.export_config(), export_dir, **trainer.export_extras())


def _group_state(trainer: Trainer, ckpt_dir: Path) -> dict:
    """Writes each group's optimizer tensors; returns what the trainer state file records of the groups."""
    return {"networks": {name: g for g, group in trainer.groups.items() for name in group.networks},
            "optimizers": {g: ckpt.save_optimizer(group.optimizer, ckpt.optimizer_file(ckpt_dir, g))
                           for g, group in trainer.groups.items()},
            "schedulers": {g: group.scheduler.state_dict() for g, group in trainer.groups.items()},
            "scaler": trainer.acc.scaler.state_dict() if trainer.acc.scaler is not None else None}


def check_architecture(path: Path, saved: dict | None, trainer: Trainer) -> None:
    """Refuse a checkpoint whose networks are not this config's, naming the missing / unexpected ones."""
    ours = {name: g for g, group in trainer.groups.items() for name in group.networks}
    if saved is None:
        raise UserError(f"{path}: this checkpoint names no networks (written by an older vid2vid); start a new "
                        "run (another train.out_dir)")
    if saved != ours:
        missing = sorted(set(ours) - set(saved))
        unexpected = sorted(set(saved) - set(ours))
        raise UserError(f"{path}: a checkpoint of another architecture: it holds networks {sorted(saved)}, this "
                        f"config trains {sorted(ours)} (missing {missing}, unexpected {unexpected}); {RESUME_FIX}")


def load_checkpoint(acc: Accelerator, trainer: Trainer, path: Path) -> dict:
    """Restore networks, optimizers, schedulers, RNG and our own state; returns the trainer state."""
    state = ckpt.read_trainer_state(path)
    check_architecture(path, state.get("networks"), trainer)
    trainer.set_stage(max(state["step"] - 1, 0))  # the stage the saved optimizers belong to
    for name, net in trainer.networks.items():
        file = ckpt.network_file(path, name)
        ckpt.load_weights(acc.unwrap_model(net), ckpt.read_safetensors(file, RESUME_FIX), file, RESUME_FIX)
    for g, group in trainer.groups.items():
        ckpt.load_optimizer(group.optimizer, ckpt.optimizer_file(path, g), state["optimizers"][g], RESUME_FIX)
        group.scheduler.load_state_dict(state["schedulers"][g])
    if acc.scaler is not None and state.get("scaler"):
        acc.scaler.load_state_dict(state["scaler"])
    ckpt.load_rng(path, acc.process_index)
    if trainer.ema is not None:
        ema_file = path / ckpt.EMA_FILE
        if ema_file.is_file():
            trainer.ema.load_state_dict(load_file(str(ema_file), device=str(acc.device)))
        else:  # EMA switched on at resume: start it from the current weights
            trainer.ema.load_state_dict(acc.unwrap_model(trainer.G).state_dict())
    return state
