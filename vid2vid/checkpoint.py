"""Exported generators and the trainer's checkpoint folders.

Export (`<train.out_dir>/export/`): `config.yaml` (the resolved training config),
`generator.safetensors` (the generator's state dict; the EMA weights when EMA is on) and, for a model
trained with an encoder, `encoder.safetensors` (pix2pixHD's feature encoder with model.feat_num > 0, or
SPADE's VAE encoder with model.use_vae) and, for pix2pixHD, `feature_bank.safetensors` (the per-class
k-means centres of the training set's instance features). `load_generator` reads the generator alone;
`load_export` reads everything and generates frames with features / z chosen per `Export.generate`.

Checkpoints (`<train.out_dir>/checkpoints/step_XXXXXXX/`), written by the trainer with the helpers below
(not accelerate's save_state): one safetensors file per network and per optimizer group, each process's RNG
state, `trainer_state.json` (step, data position, schedule, scheduler and scaler states, the group layout) and
`ema.safetensors`. A checkpoint folder is written under a temporary name and renamed when complete,
so a folder named `step_*` is always whole.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from einops import rearrange
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from flow import atomic_path, commit_dir
from vid2vid.config import Config, from_dict, save_config
from vid2vid.data.encoding import semantic_input
from vid2vid.errors import UserError, write_failed, writing
from vid2vid.models.build import build_feature_bank, build_generator, build_image_encoder
from vid2vid.models.image import instance_map, style_features, vae_z
from vid2vid.video_io import read_image

EXPORT_CONFIG = "config.yaml"
EXPORT_WEIGHTS = "generator.safetensors"
EXPORT_ENCODER = "encoder.safetensors"
EXPORT_FEATURE_BANK = "feature_bank.safetensors"
STATE_FILE = "trainer_state.json"
EMA_FILE = "ema.safetensors"
_STEP_DIR = re.compile(r"^step_(\d{7,})$")


# ----------------------------------------------------------------------------------------------
# Small atomic writers
# ----------------------------------------------------------------------------------------------


# A failed write (full disk, no permission) is a UserError naming `path`; the temporary file is removed and an
# earlier file under `path` stays as it was.


def atomic_write_text(path: str | Path, text: str) -> None:
    with writing(path), atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        _save_safetensors(tensors, tmp, path)


def _save_safetensors(tensors: dict[str, torch.Tensor], file: Path, path: str | Path) -> None:
    """save_file into `file`; a failure is reported as writing `path` (the name the file will have)."""
    try:
        with writing(path):
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(file))
    except SafetensorError as error:  # "Error while serializing: I/O error: <the system's reason> (os error N)"
        raise write_failed(path, str(error).split("I/O error: ")[-1].split(" (os error")[0]) from None


# ----------------------------------------------------------------------------------------------
# Export / load_generator
# ----------------------------------------------------------------------------------------------


def export_generator(state_dict: dict[str, torch.Tensor], cfg: Config, out_dir: str | Path, *,
                     encoder: dict[str, torch.Tensor] | None = None,
                     feature_bank: dict[str, torch.Tensor] | None = None) -> Path:
    """Write `out_dir/config.yaml` and `out_dir/generator.safetensors`, plus `encoder.safetensors` and
    `feature_bank.safetensors` when given (state dicts); an encoder or bank file not given is removed, so that
    the folder never mixes runs. Every file is written under a temporary name first and all are renamed into
    place together, so a failed write (a UserError naming the file) leaves an earlier export whole."""
    out_dir = Path(out_dir)
    with writing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    weights = {EXPORT_WEIGHTS: state_dict, EXPORT_ENCODER: encoder, EXPORT_FEATURE_BANK: feature_bank}
    with ExitStack() as commit:  # on a clean exit every temporary file is renamed; after an error all are removed
        with writing(out_dir / EXPORT_CONFIG):
            save_config(cfg, commit.enter_context(atomic_path(out_dir / EXPORT_CONFIG)))
        for name, tensors in weights.items():
            if tensors is not None:
                _save_safetensors(tensors, commit.enter_context(atomic_path(out_dir / name)), out_dir / name)
    for name, tensors in weights.items():
        if tensors is None:
            (out_dir / name).unlink(missing_ok=True)
    return out_dir


def export_files(cfg: Config) -> list[str]:
    """The weight files an export of cfg's model holds."""
    files = [EXPORT_WEIGHTS]
    if cfg.model.feat_num > 0 or cfg.model.use_vae:
        files.append(EXPORT_ENCODER)
    if cfg.model.feat_num > 0:
        files.append(EXPORT_FEATURE_BANK)
    return files


def _export_files(path: Path) -> tuple[Path, Path]:
    """The (config, weights) pair for an export folder or its generator.safetensors."""
    if path.is_file() and path.suffix == ".safetensors":
        return path.parent / EXPORT_CONFIG, path
    if path.is_dir() and not (path / EXPORT_WEIGHTS).is_file() and (path / "export").is_dir():
        path = path / "export"  # a run folder: use its export
    return path / EXPORT_CONFIG, path / EXPORT_WEIGHTS


_EXPORT_FIX = "export config and weights come from the same run (<train.out_dir>/export)"


def _read_export(path: Path) -> tuple[Config, Path]:
    """(the export's Config, its generator weights file), or a UserError naming what is missing."""
    if not path.exists():
        raise UserError(f"{path}: no such exported model; pass <train.out_dir>/export written by vid2vid train")
    cfg_path, weights_path = _export_files(path)
    for needed in (cfg_path, weights_path):
        if not needed.is_file():
            raise UserError(f"{needed}: missing; an exported model is a folder with {EXPORT_CONFIG} and "
                            f"{EXPORT_WEIGHTS} (written by vid2vid train into <train.out_dir>/export)")
    try:
        tree = yaml.safe_load(cfg_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{cfg_path}: not valid YAML ({e}); re-export the model") from None
    return from_dict(tree), weights_path


def _load_module(module: torch.nn.Module, file: Path, device: str | torch.device) -> torch.nn.Module:
    load_weights(module, read_safetensors(file, _EXPORT_FIX), file, _EXPORT_FIX)
    return module.to(device).eval()


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Config]:
    """An exported generator (folder with config.yaml + generator.safetensors, the weights file itself,
    or a run folder holding export/) -> (generator in eval mode on `device`, its Config)."""
    cfg, weights_path = _read_export(Path(path))
    return _load_module(build_generator(cfg), weights_path, device), cfg


@dataclass
class Export:
    """An exported image model: the generator, the encoder trained with it (or None) and pix2pixHD's
    feature bank (or None), all in eval mode, and the training Config."""

    generator: torch.nn.Module
    cfg: Config
    encoder: torch.nn.Module | None = None  # FeatureEncoder (model.feat_num > 0) or VAEEncoder (model.use_vae)
    feature_bank: torch.nn.Module | None = None  # FeatureBank (model.feat_num > 0)
    _noted: set[int] = field(default_factory=set, repr=False)  # classes already logged as unseen

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @torch.no_grad()
    def generate(self, labels: torch.Tensor, inst: torch.Tensor | None = None, *, style: torch.Tensor | None = None,
                 cluster: int | None = None, seed: int | None = None, cond: torch.Tensor | None = None,
                 real: torch.Tensor | None = None) -> torch.Tensor:
        """labels [B,H,W] (+ inst [B,H,W]) -> frames [B,3,H,W] in [-1,1]. A face model takes its input as cond
        [B,C,H,W] (vid2vid.data.face_input), labels then being its part labels.

        pix2pixHD with features: from `style` (an image [1,3,Hs,Ws] in [-1,1], resized to the frame and pooled
        over its instances), else from the feature bank: centre `cluster` of each instance's class, or a random
        centre per instance (drawn from `seed`; the global RNG when None). SPADE with the VAE: z from `style`
        (the encoder's mean; a draw around it with `seed`), else z ~ N(0, I) from `seed`. The same inputs and
        cluster / seed give the same frames.

        A bank of training images (model.feature_bank images: vid2vid's edge2face single-frame generator): the
        frame's real image `real` [B,3,H,W] in [-1,1] (else `style`) is encoded and pooled over the instances, the
        nearest training image over all classes present is picked (FeatureBank.nearest_rows) and every class takes
        that image's features; without an image, training image `cluster` (default 0, the first) for all."""
        m = self.cfg.model
        labels = labels.to(self.device)
        inst = None if inst is None else inst.to(self.device)
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        d = self.cfg.data
        cond = None if cond is None else cond.to(self.device)
        if cond is None and d.condition != "labels":
            raise UserError(f"this model's input is the {d.condition} input (data.condition {d.condition}); pass it "
                            "as cond, drawn from landmarks (vid2vid.data.face_input)")
        sem = semantic_input(labels, inst, d.label_nc, d.use_instance, d.contain_dontcare_label, cond)  # [B,C,H,W]
        if cluster is not None and m.feat_num == 0:
            raise UserError(f"a feature cluster was given but {m.name} has no feature bank (model.feat_num is 0)")
        if m.feat_num > 0:
            pooled_over = instance_map(labels, inst)
            if m.feature_bank == "images":
                feats = self._image_features(labels, pooled_over, real if real is not None else style, cluster)
            elif style is not None:
                feats = style_features(self.encoder, style, pooled_over)
            else:
                feats = self._bank_features(labels, pooled_over, cluster, generator)
            return self.generator(torch.cat([sem, feats.to(sem.dtype)], 1))
        if m.use_vae:
            return self.generator(sem, vae_z(self.encoder, len(labels), m.z_dim, style, generator, self.device))
        if style is not None:
            raise UserError(f"a style image was given but {m.name} has no encoder (model.feat_num 0, use_vae false)")
        return self.generator(sem)

    def _image_features(self, labels: torch.Tensor, inst: torch.Tensor, image: torch.Tensor | None,
                        cluster: int | None) -> torch.Tensor:
        """A bank of training images: the features [B,feat_num,H,W] of the training image nearest to `image`'s
        encoding (pooled over inst, compared per class of labels), or of training image `cluster` (default 0)
        without an image; every pixel takes its class's row."""
        if self.feature_bank is None:
            raise UserError(f"this export has no {EXPORT_FEATURE_BANK} (the training images' features, written by "
                            "vid2vid import vid2vid-single --features features.npy); re-import it")
        if image is None:
            rows = torch.full((len(labels),), cluster or 0, dtype=torch.long, device=labels.device)
        else:
            rows = self.feature_bank.nearest_rows(style_features(self.encoder, image, inst).float(), labels)
        return self.feature_bank.rows(labels, rows)

    def _bank_features(self, labels: torch.Tensor, inst: torch.Tensor, cluster: int | None,
                       generator: torch.Generator | None) -> torch.Tensor:
        """Feature-bank features [B,feat_num,H,W]; logs (once per class) the classes never seen in training."""
        if self.feature_bank is None:
            raise UserError(f"this export has no {EXPORT_FEATURE_BANK} (written when training ends or checkpoints); "
                            "pass a style image instead, or re-export the finished run")
        unseen = sorted(set(self.feature_bank.unseen_classes(labels)) - self._noted)
        if unseen:
            logging.getLogger("vid2vid").warning(
                "feature bank: label ids %s were never seen in training; their instances get zero features", unseen)
            self._noted.update(unseen)
        return self.feature_bank.sample(labels, inst, generator, cluster)


def read_style(path: str | Path) -> torch.Tensor:
    """A style image file (any size) -> [1,3,H,W] in [-1,1], for Export.generate(style=...)."""
    rgb = torch.from_numpy(read_image(path)).permute(2, 0, 1).float()  # [3,H,W] in [0,255]
    return (rgb / 127.5 - 1.0).unsqueeze(0)


def add_generation_options(parser) -> None:
    """The command-line options choosing an encoder model's features / z (tools/eval_image_model.py, render)."""
    parser.add_argument("--feature-cluster", type=int, default=None, metavar="K",
                        help="pix2pixHD with features: centre K of each instance's class in the feature bank "
                             "(K modulo the class's centres); default: a random centre per instance from --seed. "
                             "A bank of training images (an imported edge2face single-frame generator): training "
                             "image K when no real frame is at hand (default 0)")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed of the random feature-bank centres (pix2pixHD) or of z ~ N(0, I) (SPADE VAE); "
                             "the same seed gives the same frames (default 0)")
    parser.add_argument("--style", default=None, metavar="IMAGE",
                        help="take the features (pix2pixHD) or z (SPADE VAE) from this image's encoding instead")


def generation_options(args) -> dict:
    """Export.generate's keyword arguments from add_generation_options' parsed options."""
    return {"cluster": args.feature_cluster, "seed": args.seed,
            "style": read_style(args.style) if args.style is not None else None}


def load_export(path: str | Path, device: str | torch.device = "cpu") -> Export:
    """An export folder (or its generator.safetensors, or a run folder holding export/) -> Export: the generator,
    the encoder when the model has one, pix2pixHD's feature bank, all in eval mode on `device`."""
    cfg, weights_path = _read_export(Path(path))
    export = Export(_load_module(build_generator(cfg), weights_path, device), cfg)
    encoder, bank = build_image_encoder(cfg), build_feature_bank(cfg)
    if encoder is not None:
        file = weights_path.parent / EXPORT_ENCODER
        if not file.is_file():
            raise UserError(f"{file}: missing; {cfg.model.name} with an encoder exports {EXPORT_ENCODER} next to "
                            f"{EXPORT_WEIGHTS}; {_EXPORT_FIX}")
        export.encoder = _load_module(encoder, file, device)
    if bank is not None and (weights_path.parent / EXPORT_FEATURE_BANK).is_file():
        export.feature_bank = _load_module(bank, weights_path.parent / EXPORT_FEATURE_BANK, device)
    return export


# ----------------------------------------------------------------------------------------------
# Checkpoint folders
# ----------------------------------------------------------------------------------------------


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def list_checkpoints(ckpt_root: str | Path) -> list[Path]:
    """Complete checkpoint folders under ckpt_root, oldest first."""
    root = Path(ckpt_root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def temp_checkpoint_dir(ckpt_root: str | Path, step: int) -> Path:
    """Where a checkpoint is written before it is complete (the same name on every process)."""
    return Path(ckpt_root) / f".tmp_{checkpoint_name(step)}"


def finalize_checkpoint(tmp_dir: Path, keep_last: int) -> Path:
    """Rename a complete temporary checkpoint folder to its final name; keep the newest keep_last."""
    final = tmp_dir.with_name(tmp_dir.name.removeprefix(".tmp_"))
    commit_dir(tmp_dir, final, replace=True)  # replace: a re-run of the same step (e.g. after an older resume)
    for old in list_checkpoints(final.parent)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in final.parent.glob(".tmp_step_*"):  # left by a crash in the middle of a save
        if stale != tmp_dir:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def checkpoint_not_written(tmp_dir: Path, error: UserError) -> UserError:
    """The error for a checkpoint whose temporary folder could not be completed (and was removed)."""
    found = list_checkpoints(tmp_dir.parent)
    intact = (f"the previous checkpoint {found[-1]} and the export are intact (--resume latest continues from it)"
              if found else "no earlier checkpoint exists")
    return UserError(f"checkpoint {tmp_dir.name.removeprefix('.tmp_')} not written: {error}; {intact}")


def resolve_resume(resume: str, ckpt_root: str | Path) -> Path | None:
    """`latest` -> newest checkpoint under ckpt_root (None when there is none); a path -> that folder."""
    if resume == "latest":
        found = list_checkpoints(ckpt_root)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise UserError(f"--resume {resume}: not a checkpoint folder (no {STATE_FILE} inside); pass 'latest' or "
                        f"a folder like {Path(ckpt_root) / checkpoint_name(1000)}")
    return path


def write_trainer_state(ckpt_dir: Path, state: dict) -> None:
    atomic_write_text(ckpt_dir / STATE_FILE, json.dumps(state, indent=1, sort_keys=True))


def read_trainer_state(ckpt_dir: Path) -> dict:
    path = Path(ckpt_dir) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: unreadable trainer state ({e}); resume from another checkpoint") from None


def rng_state() -> dict[str, torch.Tensor]:
    """This process's torch RNG states as tensors (saved with safetensors, restored with set_rng_state)."""
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda{i}"] = s
    return out


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if torch.cuda.is_available():
        cuda = [state[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in state]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def save_rng(ckpt_dir: Path, process_index: int) -> None:
    atomic_save_safetensors(rng_state(), ckpt_dir / f"rng_{process_index}.safetensors")


def load_rng(ckpt_dir: Path, process_index: int) -> bool:
    path = Path(ckpt_dir) / f"rng_{process_index}.safetensors"
    if not path.is_file():
        return False
    set_rng_state(load_file(str(path)))
    return True


# ----------------------------------------------------------------------------------------------
# Networks and optimizers by name (the trainer's checkpoint files)
# ----------------------------------------------------------------------------------------------


def network_file(ckpt_dir: Path, name: str) -> Path:
    return Path(ckpt_dir) / f"{name}.safetensors"


def optimizer_file(ckpt_dir: Path, group: str) -> Path:
    return Path(ckpt_dir) / f"optimizer_{group}.safetensors"


def read_safetensors(path: Path, fix: str) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, or a UserError naming the file and `fix`."""
    if not Path(path).is_file():
        raise UserError(f"{path}: missing; {fix}")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated/foreign files
        raise UserError(f"{path}: not a readable safetensors file ({e}); {fix}") from None


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, fix: str) -> None:
    """Strict load_state_dict whose error lists the missing, unexpected and wrongly shaped keys by name."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in set(own) & set(state)
                   if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise UserError(f"{source}: weights do not match the network (missing {missing[:5]}, unexpected "
                        f"{unexpected[:5]}, wrong shape {wrong[:5]}); {fix}")
    module.load_state_dict(state)


def save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> list[dict]:
    """An optimizer's state tensors -> safetensors (keys '<param index>.<name>'); returns its param_groups
    (plain numbers and lists) for the trainer state file."""
    sd = optimizer.state_dict()
    atomic_save_safetensors({f"{i}.{name}": v if torch.is_tensor(v) else torch.tensor(v)
                             for i, s in sd["state"].items() for name, v in s.items()}, path)
    return sd["param_groups"]


def load_optimizer(optimizer: torch.optim.Optimizer, path: Path, param_groups: list[dict], fix: str) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in read_safetensors(path, fix).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in param_groups]
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as e:
        raise UserError(f"{path}: optimizer state does not fit the networks ({e}); {fix}") from None


def build_first_frames(cfg: Config, device):
    """For model.first_frame image-model:PATH: callable(labels [B,N,H,W], inst | None) -> frames [B,N,3,H,W]
    made by that exported per-frame model (frozen); None for the other modes."""
    prefix, _, path = cfg.model.first_frame.partition(":")
    return image_model_frames(path, device, cfg.data.condition) if prefix == "image-model" else None


def build_teacher(cfg: Config, device):
    """For loss.teacher > 0: the frames of the per-frame model model.init_from, as build_first_frames; else None."""
    return image_model_frames(cfg.model.init_from, device, cfg.data.condition) if cfg.loss.teacher > 0 else None


def image_model_frames(path: str, device, condition: str = "labels"):
    """callable(labels [B,N,H,W], inst | None, cond [B,N,C,H,W] | None) -> frames [B,N,3,H,W] of the exported
    per-frame model at `path` (cond: the face input, labels then its part labels)
    (frozen; seed 0 for models that sample features or z)."""
    export = load_export(path, device)
    if export.cfg.data.condition != condition:
        raise UserError(f"{path}: a per-frame model of data.condition {export.cfg.data.condition}, but this model's "
                        f"input is {condition}; use a per-frame model trained on the same input")

    def frames_of(labels, inst, cond=None):
        b = labels.shape[0]
        flat_inst = None if inst is None else rearrange(inst, "b n h w -> (b n) h w")
        flat_cond = None if cond is None else rearrange(cond, "b n c h w -> (b n) c h w")
        frames = export.generate(rearrange(labels, "b n h w -> (b n) h w"), flat_inst, seed=0, cond=flat_cond)
        return rearrange(frames.float(), "(b n) c h w -> b n c h w", b=b)

    return frames_of
