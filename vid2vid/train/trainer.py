"""The Accelerate trainer: `train(cfg, resume=None)`.

A training model is a named set of networks in groups (vid2vid.train.Group): the generator side "G" (the
generator "G", plus the encoder "E" trained with it when the model has one) and the discriminator side "D"
(the image discriminator "D"; the temporal discriminators join it), each group with one optimizer and one
LR schedule; frozen helpers (VGG inside the losses, the flow network) are never optimised or saved.

One loop for clips [B,T,...]; the image models are its T = 1 case (every frame of a clip is an
independent image). A training step consumes optim.grad_accum loader batches (per process):
  1. D phase: fakes for every micro-batch (no graph kept when accumulating), D loss on detached
     fakes, one D-group optimizer step;
  2. G phase: D frozen (requires_grad False, called without its DDP wrapper), G loss, one G-group
     optimizer step, EMA update; then every LR scheduler steps once.
So a step with grad_accum k and batch B equals one step with batch k*B, and G's gradients never
reach D's update (D's parameters do not require grad while G's loss is back-propagated).

Run folder (train.out_dir): config.yaml, log.jsonl, samples/step_XXXXXXX.png,
checkpoints/step_XXXXXXX/ (one safetensors file per network and per optimizer, named by network and group
name; trainer_state.json; RNG per process), export/ (config.yaml + generator.safetensors [+ encoder.safetensors,
feature_bank.safetensors for the image models' encoders]).
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from einops import rearrange
from safetensors.torch import load_file
from tqdm.auto import tqdm

from flow import atomic_path
from vid2vid import checkpoint as ckpt
from vid2vid.config import Config, save_config
from vid2vid.data.sampler import ClipSampler, EpochSampler, endless_batches, make_loader  # noqa: F401 (re-exported)
from vid2vid.errors import ConfigError, DataError, UserError, writing
from vid2vid.imaging import label_colours
from vid2vid.signals import StopSignals

# ----------------------------------------------------------------------------------------------
# Config checks that need the environment (the static rules live in config.check)
# ----------------------------------------------------------------------------------------------


def check_trainable(cfg: Config, num_processes: int = 1) -> None:
    """Refuse settings this trainer cannot honour, naming the key and the fix."""
    from vid2vid.models.build import REGISTRY, spec

    if spec(cfg).sequential:
        check_first_frame_model(cfg)
    for key, on in (("model.feat_num", cfg.model.feat_num > 0), ("model.use_vae", cfg.model.use_vae)):
        if on and key not in spec(cfg).encoders:  # the registry names the encoders each model trains
            owner = next(name for name, row in REGISTRY.items() if key in row.encoders)
            raise ConfigError(f"{key}: {cfg.model.name} has no such encoder (it belongs to {owner}); "
                              f"set {key}={'0' if key == 'model.feat_num' else 'false'} or model.name={owner}")
    if cfg.data.contain_dontcare_label:  # the trainer's one-hot and the video generator have no such channel
        raise ConfigError("data.contain_dontcare_label: true is for rendering imported SPADE COCO/ADE20K checkpoints "
                          "(vid2vid import, vid2vid render); training does not take it: map the don't-care id 255 "
                          "to a label id < data.label_nc in the dataset and set data.contain_dontcare_label=false")
    if cfg.train.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("train.mixed_precision: 'fp16' needs a CUDA GPU; on CPU use bf16 or no")
    if cfg.train.tracker == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError("train.tracker: 'tensorboard' is not installed; pip install tensorboard "
                              "(or pip install -e '.[tensorboard]'), or set train.tracker=none") from None
    if cfg.loss.vgg > 0:
        from vid2vid.losses import find_vgg19_weights

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

# ----------------------------------------------------------------------------------------------
# Schedules, optimizers, EMA
# ----------------------------------------------------------------------------------------------


def lr_factor(step: int, max_steps: int, decay_start: float) -> float:
    """Linear decay: 1 until decay_start * max_steps, then linearly to 0 at max_steps."""
    start = decay_start * max_steps
    if step <= start or max_steps <= start:
        return 1.0
    return max(0.0, 1.0 - (step - start) / (max_steps - start))


def learning_rates(cfg: Config) -> tuple[float, float, tuple[float, float]]:
    """(lr_G, lr_D, betas) with TTUR applied: G lr / 2, D lr * 2, betas (0, 0.9)."""
    o = cfg.optim
    if o.ttur:
        return o.lr / 2, o.lr_D if o.lr_D is not None else o.lr * 2, (0.0, 0.9)
    return o.lr, o.lr_D if o.lr_D is not None else o.lr, (o.beta1, o.beta2)


def make_schedulers(cfg: Config, *optimizers, clock: TrainClock | None = None):
    """One linear-decay LambdaLR per optimizer. With a time budget (train.max_minutes) the schedule follows
    the further of the step count and the time spent: a run that stops on time has decayed to 0 when it stops."""
    max_steps, decay_start = cfg.train.max_steps, cfg.optim.decay_start

    def factor(step: int) -> float:
        spent = clock.fraction() if clock is not None else 0.0
        return lr_factor(max(step, spent * max_steps), max_steps, decay_start)

    return [torch.optim.lr_scheduler.LambdaLR(opt, factor) for opt in optimizers]


@dataclass
class TrainClock:
    """Training time spent (summed over resumes) against train.max_minutes (0 = no time budget)."""

    budget_s: float
    elapsed_s: float = 0.0

    def fraction(self) -> float:
        return min(1.0, self.elapsed_s / self.budget_s) if self.budget_s > 0 else 0.0

    def out_of_time(self) -> bool:
        return self.budget_s > 0 and self.elapsed_s >= self.budget_s


class EMA:
    """Exponential moving average of a model's parameters (buffers are copied). The decay warms up as
    min(decay, (1 + step) / (10 + step)), so the average of a short run is not stuck at the initial weights."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """step: the number of optimizer steps taken before this update (0 for the first)."""
        decay = self.decay_at(step)
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach().to(ema_p.dtype), 1.0 - decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)


# ----------------------------------------------------------------------------------------------
# The training model: named groups of networks
# ----------------------------------------------------------------------------------------------


@dataclass
class Group:
    """Networks optimised together: one optimizer and one LR schedule over all their parameters."""

    networks: dict[str, torch.nn.Module]  # name -> network as prepared by accelerate (DDP-wrapped when distributed)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for net in self.networks.values() for p in net.parameters()]


def build_networks(cfg: Config) -> dict[str, dict[str, torch.nn.Module]]:
    """The training model as {group: {network name: module}}, built in a fixed order (the seeded weights
    depend on it): the generator side (G, then the encoder E when the model trains one), then the
    discriminator side."""
    from vid2vid.models.build import (
        build_discriminator,
        build_generator,
        build_image_encoder,
        build_temporal_discriminators,
        spec,
    )

    g_side = {"G": build_generator(cfg)}
    encoder = build_image_encoder(cfg)
    if encoder is not None:
        g_side["E"] = encoder
    networks = {"G": g_side, "D": {"D": build_discriminator(cfg)}}
    if spec(cfg).sequential:
        networks["D"].update(build_temporal_discriminators(cfg))
    return networks


def build_groups(cfg: Config, acc: Accelerator, loader, clock: TrainClock | None = None, *, fresh: bool = True
                 ) -> tuple[dict[str, Group], EMA | None, object]:
    """Networks (at a fresh start, G's image branch from model.init_from when set), one Adam per group (TTUR
    rates), linear-decay schedules and EMA, prepared by accelerate together with the loader. Returns (groups,
    ema, prepared loader)."""
    networks = build_networks(cfg)
    if fresh and cfg.model.init_from:
        from vid2vid.train.warm_start import warm_start

        copied = warm_start(networks["G"]["G"], cfg)
        acc.print(f"model.init_from: the image branch starts from {cfg.model.init_from} ({copied} tensors)")
    if fresh and cfg.model.blend_init is not None:
        from vid2vid.models.video import init_blend_weight

        init_blend_weight(networks["G"]["G"], cfg.model.blend_init)
    lr_G, lr_D, betas = learning_rates(cfg)
    rates = {"G": lr_G, "D": lr_D}
    optimizers = {g: torch.optim.Adam([p for n in nets.values() for p in n.parameters()], lr=rates[g], betas=betas)
                  for g, nets in networks.items()}
    schedulers = dict(zip(optimizers, make_schedulers(cfg, *optimizers.values(), clock=clock)))
    ema = EMA(networks["G"]["G"], cfg.optim.ema) if cfg.optim.ema > 0 else None
    flat = [(g, name) for g, nets in networks.items() for name in nets]
    prepared = acc.prepare(*[networks[g][n] for g, n in flat], *optimizers.values(), loader)
    modules, opts, loader = prepared[:len(flat)], prepared[len(flat):-1], prepared[-1]
    groups = {g: Group({n: m for (gg, n), m in zip(flat, modules) if gg == g}, opt, schedulers[g])
              for g, opt in zip(optimizers, opts)}
    if ema is not None:
        ema.model.to(acc.device)
    return groups, ema, loader


def set_requires_grad(model: torch.nn.Module, flag: bool) -> None:
    for p in model.parameters():
        p.requires_grad_(flag)


class Trainer:
    """Holds the prepared network groups, the losses and the EMA; subclasses write `step()` and `sample()`."""

    clock: TrainClock | None = None  # the time budget (train() sets it): CutMix's warm-up follows it like the LR

    def __init__(self, cfg: Config, accelerator: Accelerator, groups: dict[str, Group], losses, ema: EMA | None):
        self.cfg, self.acc, self.groups = cfg, accelerator, groups
        self.losses, self.ema = losses, ema
        self.accum = cfg.optim.grad_accum
        self.begin_step()

    @property
    def G(self) -> torch.nn.Module:
        return self.groups["G"].networks["G"]

    @property
    def D(self) -> torch.nn.Module:
        return self.groups["D"].networks["D"]

    @property
    def networks(self) -> dict[str, torch.nn.Module]:
        """Every trained network by name (prepared modules)."""
        return {name: net for group in self.groups.values() for name, net in group.networks.items()}

    def semantics(self, images: dict) -> torch.Tensor:
        from vid2vid.data.encoding import semantic_input

        return semantic_input(images["labels"], images.get("inst"), self.cfg.data.label_nc,
                              self.cfg.data.use_instance)  # [N, C_in, H, W]

    def _sync(self, model, last: bool):
        """No gradient all-reduce until the last micro-batch of an accumulated step."""
        return nullcontext() if last else self.acc.no_sync(model)

    # Non-finite values: a step whose losses or gradients hold a NaN / Inf is skipped as a whole (no optimizer
    # step of a group not yet updated, no EMA update, gradients cleared); the LR schedules still advance, so that
    # the schedule stays a function of the step number (train.max_steps, resume). The loop counts skipped steps
    # in a row against train.max_bad_steps. Every check comes before the optimizer step it guards; a step
    # function calls check_finite for groups it wants checked together (the video step: both groups first),
    # update() checks its own group otherwise. The image models update D before G's loss exists: when only G's
    # values are non-finite, that step's D update (from finite values) stands.

    def begin_step(self, step: int = 0) -> None:
        """At the start of training step number `step`: nothing checked, nothing non-finite, no CutMix drawn yet."""
        self.skip_step, self.nonfinite, self.checked = False, [], set()
        self.step_number, self.cutmix_draws = step, 0

    def cutmix_mask(self, n: int, size: tuple[int, int]) -> torch.Tensor | None:
        """CutMix masks [n,1,H,W] (1 = real pixel, on the device) for this D loss's n real / fake pairs, or None (no
        CutMix this time, or loss.cutmix 0). Drawn with probability loss.cutmix_p warmed up over loss.cutmix_warmup
        of the training progress (the further of step / max_steps and the time budget's share, as the LR schedule),
        from a generator seeded by (train.seed, step, draw number in the step): the same after a resume, the
        same decision on every process and each process's rows of the global batch's masks (draw_cutmix)."""
        from vid2vid.losses import cutmix_probability, draw_cutmix

        loss = self.cfg.loss
        if loss.cutmix <= 0:
            return None
        spent = self.clock.fraction() if self.clock is not None else 0.0
        p = cutmix_probability(max(self.step_number / self.cfg.train.max_steps, spent), loss.cutmix_p,
                               loss.cutmix_warmup)
        self.cutmix_draws += 1
        mask = draw_cutmix(p, n, size, key=(self.cfg.train.seed, self.step_number, self.cutmix_draws),
                           rank=self.acc.process_index, world=self.acc.num_processes)
        return None if mask is None else mask.to(self.acc.device)

    def check_finite(self, parts: dict[str, float], *groups: str) -> bool:
        """Are the step's loss parts of `groups` ("D/...", "G/...") and those groups' gradient norms finite on
        every process (one reduce)? Gradients are checked only without a GradScaler: under fp16 the scaler
        itself skips a step with inf / NaN gradients and lowers its scale. A non-finite value marks the step
        skipped (self.skip_step, the same on every process); self.nonfinite names what this process saw.
        Groups already checked this step are not checked again. Returns True when the step goes on."""
        groups = tuple(g for g in groups if g not in self.checked)
        if not groups:
            return not self.skip_step
        self.checked.update(groups)
        bad = [name for name, v in parts.items() if name.split("/")[0] in groups and not math.isfinite(v)]
        if self.acc.scaler is None:
            for group in groups:
                grads = [p.grad for p in self.groups[group].parameters() if p.grad is not None]
                if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
                    bad.append(f"{group} gradients")
        self.nonfinite += bad
        anywhere = self.acc.reduce(torch.tensor(float(bool(bad)), device=self.acc.device), "max")
        self.skip_step = self.skip_step or bool(anywhere > 0)
        return not self.skip_step

    def update(self, group: str, parts: dict[str, float]) -> None:
        """Check the group's losses and gradients (check_finite, unless done), then clip its gradients
        (optim.grad_clip) and step its optimizer, unless the step is skipped; clear its gradients."""
        g = self.groups[group]
        if self.check_finite(parts, group):
            if self.cfg.optim.grad_clip > 0:
                self.acc.clip_grad_norm_(g.parameters(), self.cfg.optim.grad_clip)
            g.optimizer.step()
        g.optimizer.zero_grad(set_to_none=True)

    def end_step(self, step: int) -> None:
        """After both updates: EMA of G (not on a skipped step), then every LR schedule advances once."""
        if self.ema is not None and not self.skip_step:
            self.ema.update(self.acc.unwrap_model(self.G), step)
        for g in self.groups.values():
            g.scheduler.step()

    def lrs(self) -> dict[str, float]:
        return {f"lr/{name}": g.optimizer.param_groups[0]["lr"] for name, g in self.groups.items()}

    def export_state(self) -> dict[str, torch.Tensor]:
        """The generator weights to export: EMA when on."""
        model = self.ema.model if self.ema is not None else self.acc.unwrap_model(self.G)
        return model.state_dict()

    def export_config(self) -> Config:
        """The config written with the export (the video model's changes while spatial scales grow)."""
        return self.cfg

    def set_stage(self, step: int) -> None:
        """Before training step `step`, and on resume with the last step taken: what trains at that step (the video
        model's spatial scales, VideoTrainer.set_stage; nothing changes for the other models)."""

    def export_model(self) -> torch.nn.Module:
        return self.ema.model if self.ema is not None else self.acc.unwrap_model(self.G)


# ----------------------------------------------------------------------------------------------
# The image models' step
# ----------------------------------------------------------------------------------------------


def frames_as_images(batch: dict) -> dict:
    """Clips [B,T,...] -> images [B*T,...] (the image models' T = 1 view of the video loop)."""
    return {k: rearrange(v, "b t ... -> (b t) ...") for k, v in batch.items()
            if isinstance(v, torch.Tensor) and k in ("labels", "frames", "inst")}


def _split(preds, *sizes: int) -> list:
    """D output (per scale or branch, a list of features) on cat([part 0, part 1, ...]) of parts with `sizes` rows
    -> the output of each part, in the same structure."""
    bounds = [0, *itertools.accumulate(sizes)]
    return [[[f[a:b] for f in scale] for scale in preds] for a, b in zip(bounds, bounds[1:])]


class ImageTrainer(Trainer):
    """pix2pix / pix2pixHD / SPADE: every frame an independent image.

    With an encoder (network "E" of the G group, optimised with G): pix2pixHD with model.feat_num > 0 feeds G
    cat(semantics, E(real frame, instances)) (features averaged per instance); SPADE with model.use_vae feeds
    G(semantics, z = reparameterize(E(real frame))) and adds the KL term to G's loss. The export then holds
    the encoder and, for pix2pixHD, the per-class k-means feature bank, refitted at every export refresh over
    at most `feature_bank_frames` training frames (drawn as training draws them: random start, crop, flip per
    (epoch, sequence); about one per frame of the training set for smaller sets), so that it always matches
    the exported encoder and its cost stays bounded on big datasets.
    """

    feature_bank_frames = 500

    @property
    def E(self) -> torch.nn.Module | None:
        """The encoder trained with G (prepared), or None."""
        return self.groups["G"].networks.get("E")

    def generate(self, G, E, sem: torch.Tensor, images: dict, *, z_from_mean: bool = False
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(fake [N,3,H,W], the KL inputs for G's loss) from semantics [N,C,H,W] and, with an encoder, the
        real frames images["frames"] [N,3,H,W] (and its instances). KL inputs: {"mu", "logvar"} [N,z_dim] in
        float32 for the VAE, else {}. z_from_mean: z = mu (samples: no draw from the training RNG)."""
        if E is None:
            return G(sem), {}
        from vid2vid.models.image import instance_map, reparameterize

        real = images["frames"]
        if self.cfg.model.use_vae:
            mu, logvar = E(real)  # [N,z_dim] each
            z = mu if z_from_mean else reparameterize(mu, logvar)
            return G(sem, z), {"mu": mu.float(), "logvar": logvar.float()}
        feats = E(real, instance_map(images["labels"], images.get("inst")))  # [N,feat_num,H,W]
        return G(torch.cat([sem, feats.to(sem.dtype)], 1)), {}

    def _sync_generator(self, last: bool) -> ExitStack:
        """No gradient all-reduce of the G group's networks until the last micro-batch."""
        stack = ExitStack()
        for net in self.groups["G"].networks.values():
            stack.enter_context(self._sync(net, last))
        return stack

    def d_losses(self, sem: torch.Tensor, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """D on (semantics, fake), (semantics, real) and, when CutMix draws masks, their mix, in one batch (one
        DDP forward per backward)."""
        from vid2vid.losses import mix

        fake_in, real_in = torch.cat([sem, fake], 1), torch.cat([sem, real], 1)  # [N, C_in + 3, H, W]
        mask = self.cutmix_mask(len(sem), sem.shape[-2:])  # [N,1,H,W] or None
        parts = [fake_in, real_in] + ([] if mask is None else [mix(real_in, fake_in, mask.to(real_in.dtype))])
        fake_out, real_out, *mixed_out = _split(self.D(torch.cat(parts, 0)), *map(len, parts))
        return self.losses.discriminator(real_outputs=real_out, fake_outputs=fake_out,
                                         discriminator=self.acc.unwrap_model(self.D), real_input=real_in,
                                         fake_input=fake_in, mixed_outputs=mixed_out[0] if mixed_out else None,
                                         mask=mask)

    def g_losses(self, D_frozen, sem: torch.Tensor, fake: torch.Tensor, real: torch.Tensor,
                 mu: torch.Tensor | None = None, logvar: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """G's terms; mu / logvar [N,z_dim]: the VAE encoder's output (the KL term), else None."""
        both = torch.cat([torch.cat([sem, fake], 1), torch.cat([sem, real], 1)], 0)
        fake_out, real_out = _split(D_frozen(both), len(sem), len(sem))
        return self.losses.generator(fake_outputs=fake_out, real_outputs=real_out, fake=fake, real=real,
                                     mu=mu, logvar=logvar)

    def step(self, micro_batches: list[dict], step: int = 0) -> dict[str, float]:
        """Training step number `step` (0-based): D, then G, over grad_accum micro-batches. Returns the
        loss parts."""
        acc, k = self.acc, len(micro_batches)
        self.begin_step(step)
        parts: dict[str, float] = {}
        inputs = []
        for mb in micro_batches:
            images = frames_as_images(mb)
            inputs.append((self.semantics(images), images))

        # D phase: fakes detached; one D update over all micro-batches.
        set_requires_grad(self.D, True)
        kept_fakes = []
        for i, (sem, images) in enumerate(inputs):
            with acc.autocast(), (nullcontext() if k == 1 else torch.no_grad()):
                # fake [N,3,H,W]; its graph (and the encoder's) is kept for the G phase only when k == 1
                fake, encoded = self.generate(self.G, self.E, sem, images)
            kept_fakes.append((fake, encoded) if k == 1 else None)
            with self._sync(self.D, i == k - 1), acc.autocast():
                d_parts = self.d_losses(sem, fake.detach(), images["frames"])
                acc.backward(d_parts["total"] / k)
            add_parts(parts, d_parts, "D/", k)
        self.update("D", parts)

        # G phase: D frozen and used without its DDP wrapper (no reducer involvement).
        set_requires_grad(self.D, False)
        D_frozen = acc.unwrap_model(self.D)
        for i, (sem, images) in enumerate(inputs):
            with self._sync_generator(i == k - 1), acc.autocast():
                fake, encoded = kept_fakes[i] if k == 1 else self.generate(self.G, self.E, sem, images)
                g_parts = self.g_losses(D_frozen, sem, fake, images["frames"], **encoded)
                acc.backward(g_parts["total"] / k)
            add_parts(parts, g_parts, "G/", k)
        set_requires_grad(self.D, True)
        self.update("G", parts)
        self.end_step(step)
        return parts

    def sample_inputs(self) -> dict:
        return _sample_images(self.cfg)

    @torch.no_grad()
    def sample(self, samples: dict, out_dir: Path, step: int) -> dict[str, float]:
        """A PNG grid (labels | real | generated) of fixed held-out frames."""
        images = {k: v.to(self.acc.device) for k, v in samples.items()}
        model, encoder = self.export_model(), self.export_encoder()
        nets = [net for net in (model, encoder) if net is not None]
        modes = [net.training for net in nets]
        for net in nets:
            net.eval()  # also: no spectral-norm power iteration outside training steps
        with self.acc.autocast():  # with an encoder: reconstruction of the real frames
            fake, _ = self.generate(model, encoder, self.semantics(images), images, z_from_mean=True)
        for net, mode in zip(nets, modes):
            net.train(mode)
        grid = sample_grid(images, fake, self.cfg.data.label_nc)
        write_png(out_dir / "samples" / f"step_{step:07d}.png", grid)
        for tracker in self.acc.trackers:
            if tracker.name == "tensorboard":
                tracker.writer.add_image("samples", grid, step)
        return {}

    def export_encoder(self) -> torch.nn.Module | None:
        """The encoder to export (unwrapped; not averaged: EMA covers G alone), or None."""
        return None if self.E is None else self.acc.unwrap_model(self.E)

    def export_extras(self) -> dict[str, dict[str, torch.Tensor]]:
        """What the export holds besides the generator: {"encoder": state} and, for pix2pixHD, {"feature_bank":
        state} fitted now over the training set (main process only: it reads data)."""
        encoder = self.export_encoder()
        if encoder is None:
            return {}
        extras = {"encoder": encoder.state_dict()}
        if self.cfg.model.feat_num > 0:
            extras["feature_bank"] = self.fit_feature_bank().state_dict()
        return extras

    @torch.no_grad()
    def fit_feature_bank(self):
        """The per-class k-means bank (model.n_clusters centres; fewer for a class with fewer instances;
        none for a class never seen) of the encoded instances of at most feature_bank_frames training frames."""
        from vid2vid.models.build import build_feature_bank
        from vid2vid.models.image import encode_instances

        encoder = self.export_encoder()
        was_training = encoder.training
        encoder.eval()
        try:
            feats, classes = encode_instances(encoder, self._bank_batches(), self.acc.device)  # [N,C], [N]
        finally:
            encoder.train(was_training)
        return build_feature_bank(self.cfg).fit(feats, classes, seed=self.cfg.train.seed)

    def _bank_batches(self):
        """Batches (frames [B,3,H,W], labels [B,H,W], inst) of the feature bank's training frames: keys
        (epoch, sequence) in order, one frame each, as many as the training set has frames, at most
        feature_bank_frames; read in this process (no loader workers)."""
        from torch.utils.data import DataLoader

        from vid2vid.data.sampler import ClipKey
        from vid2vid.data.sequences import build_dataset

        cfg = self.cfg
        dataset = build_dataset(replace(cfg.data, n_frames=1), phase=cfg.data.phase, seed=cfg.train.seed)
        n = min(self.feature_bank_frames, sum(len(seq) for seq in dataset.sequences))
        keys = [ClipKey(j // len(dataset), j % len(dataset), 1) for j in range(n)]
        for batch in DataLoader(dataset, batch_size=cfg.data.batch_size, sampler=keys, num_workers=0):
            yield frames_as_images(batch)


def add_parts(total: dict[str, float], parts: dict[str, torch.Tensor], prefix: str, k: int) -> None:
    for name, v in parts.items():
        total[prefix + name] = total.get(prefix + name, 0.0) + float(v.detach()) / k


# ----------------------------------------------------------------------------------------------
# Logging and samples
# ----------------------------------------------------------------------------------------------


def _logged_step(line: str) -> float:
    """The step of a log line; infinity for a line a crash cut short (dropped on resume)."""
    try:
        return json.loads(line).get("step", 0)
    except (json.JSONDecodeError, AttributeError):
        return math.inf


class JsonlLog:
    """`<out_dir>/log.jsonl`: one JSON object per logged step; a resume drops lines after its step."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        if resume_step is not None and path.is_file():
            keep = [line for line in path.read_text().splitlines() if _logged_step(line) <= resume_step]
            ckpt.atomic_write_text(path, "".join(line + "\n" for line in keep))
        elif resume_step is None and path.exists():
            path.unlink()

    def write(self, record: dict) -> None:
        with writing(self.path), self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def sample_grid(images: dict, fake: torch.Tensor, label_nc: int) -> torch.Tensor:
    """Rows of (labels, real, fake) -> one image [3, H', W'] in [0, 1]."""
    from torchvision.utils import make_grid

    rows = torch.stack([label_colours(images["labels"], label_nc), images["frames"].float(), fake.float()], 1)
    return make_grid(rearrange(rows, "n r c h w -> (n r) c h w").cpu().clamp(-1, 1) * 0.5 + 0.5, nrow=3, padding=2)


def write_png(path: Path, image: torch.Tensor) -> None:
    """image [3,H,W] in [0,1] -> PNG, atomically."""
    import numpy as np

    from vid2vid.video_io import write_image

    with atomic_path(path) as tmp:
        write_image(tmp, (image.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))


# ----------------------------------------------------------------------------------------------
# Checkpoints: one file per network and per optimizer, named by network / group
# ----------------------------------------------------------------------------------------------

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
    extras = trainer.export_extras() if isinstance(trainer, ImageTrainer) else {}
    ckpt.export_generator(trainer.export_state(), trainer.export_config(), export_dir, **extras)


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


# ----------------------------------------------------------------------------------------------
# train()
# ----------------------------------------------------------------------------------------------


def build_trainer(cfg: Config, acc: Accelerator, groups: dict[str, Group], losses, ema: EMA | None) -> Trainer:
    """ImageTrainer for the per-frame models; VideoTrainer (with its reference flow, video losses and
    first-frame model) for the sequential generator."""
    from vid2vid.checkpoint import build_first_frames, build_teacher
    from vid2vid.models.build import build_reference_flow, build_video_losses, spec

    if not spec(cfg).sequential:
        return ImageTrainer(cfg, acc, groups, losses, ema)
    from vid2vid.train.video import VideoTrainer

    return VideoTrainer(cfg, acc, groups, losses, ema, video_losses=build_video_losses(cfg),
                        reference_flow=build_reference_flow(cfg, acc.device),
                        first_frames=build_first_frames(cfg, acc.device), teacher=build_teacher(cfg, acc.device))


def _build_data(cfg: Config, acc: Accelerator):
    from vid2vid.data.check import check_dataset
    from vid2vid.data.sequences import build_dataset
    from vid2vid.data.synthetic import ensure_dataset

    ensure_dataset(cfg.data)
    if acc.is_main_process:  # every file, once, before a long run (the other processes wait)
        check_dataset(cfg.data)
    acc.wait_for_everyone()
    from vid2vid.models.build import spec

    # image models: single frames (T = 1), so sequences of any length serve; the video model: clips
    n_frames = cfg.data.n_frames if spec(cfg).sequential else 1
    dataset = build_dataset(replace(cfg.data, n_frames=n_frames), phase=cfg.data.phase, seed=cfg.train.seed)
    if spec(cfg).sequential and cfg.flow.model == "gt" and not dataset.has_flow:
        raise ConfigError(f"flow.model: 'gt' needs the dataset's exact flow ({cfg.data.root}/{cfg.data.phase}_flow), "
                          "which this dataset does not have; use flow.model=dis (OpenCV, no weights) or raft_small")
    num_processes = acc.num_processes
    global_batch = cfg.data.batch_size * num_processes
    if len(dataset) < global_batch:
        raise DataError(f"{cfg.data.root}: {len(dataset)} training items, fewer than data.batch_size "
                        f"({cfg.data.batch_size}) x {num_processes} processes; lower data.batch_size or add data")
    # keys (epoch, index, n_frames) from the main process: the loader's workers hold no data-order state
    sampler = ClipSampler(len(dataset), cfg.train.seed, n_frames=dataset.n_frames, max_n_frames=dataset.shortest,
                          keys_per_batch=global_batch)
    loader = make_loader(dataset, sampler, cfg.data.batch_size, cfg.data.num_workers)
    return dataset, sampler, loader


def _sample_images(cfg: Config, n: int = 4) -> dict:
    """A fixed batch for sample grids: the first items of the test phase (train when absent)."""
    from torch.utils.data import default_collate

    from vid2vid.data.sequences import build_dataset

    phase = "test" if (Path(cfg.data.root) / "test_A").is_dir() else cfg.data.phase
    dataset = build_dataset(replace(cfg.data, n_frames=1), phase=phase, seed=cfg.train.seed)
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    return frames_as_images(default_collate([{k: v for k, v in it.items() if isinstance(v, torch.Tensor)}
                                             for it in items]))


def _flat_config(cfg: Config) -> dict:
    from vid2vid.config import to_dict

    out = {}

    def walk(tree, prefix):
        for k, v in tree.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}/")
            else:
                out[prefix + k] = v if isinstance(v, (int, float, str, bool)) else str(v)

    walk(to_dict(cfg), "")
    return out


@dataclass
class TrainResult:
    step: int
    out_dir: Path
    checkpoint: Path | None  # the last checkpoint folder (main process; None elsewhere)
    export: Path
    generator: torch.nn.Module  # this process's unwrapped modules, for inspection
    discriminator: torch.nn.Module
    ema: torch.nn.Module | None
    networks: dict[str, torch.nn.Module] = field(default_factory=dict)  # every trained network, unwrapped


def train(cfg: Config, resume: str | None = None, stop_at: int | None = None) -> TrainResult:
    """Train cfg's model for train.max_steps steps (or until step `stop_at`, checkpointing there,
    as a job with a time limit would; the LR schedule still follows train.max_steps).
    resume: "latest" (newest checkpoint of train.out_dir; a fresh start when there is none) or a folder."""

    out_dir = Path(cfg.train.out_dir)
    ckpt_root = out_dir / "checkpoints"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    # Several processes without CUDA (torchrun on CPUs): accelerate only goes multi-process (gloo) with cpu=True.
    acc = Accelerator(mixed_precision=cfg.train.mixed_precision, step_scheduler_with_optimizer=False,
                      log_with="tensorboard" if cfg.train.tracker == "tensorboard" else None,
                      project_dir=str(out_dir), cpu=world_size > 1 and not torch.cuda.is_available())
    if acc.num_processes != world_size:
        raise UserError(f"launched as {world_size} processes (WORLD_SIZE) but accelerate set up "
                        f"{acc.num_processes}; launch with torchrun or accelerate launch (see the README)")
    try:
        check_trainable(cfg, acc.num_processes)
        resume_from = ckpt.resolve_resume(resume, ckpt_root) if resume else None
        if resume is None and ckpt.list_checkpoints(ckpt_root):
            raise ConfigError(f"train.out_dir: {out_dir} already holds checkpoints; continue it with --resume "
                              "(latest or a checkpoint folder) or choose another train.out_dir")
        run = _setup(cfg, acc, out_dir, resume_from)
        return _loop(run, min(stop_at or cfg.train.max_steps, cfg.train.max_steps))
    finally:
        acc.end_training()


@dataclass
class Run:
    """Everything one training run holds between steps."""

    cfg: Config
    acc: Accelerator
    out_dir: Path
    trainer: Trainer
    batches: object  # endless_batches(...): (epoch, batch in epoch, batch)
    state: dict  # step, epoch, samples_in_epoch (the data position, in samples: any process count)
    log: JsonlLog | None  # main process only
    samples: dict | None  # fixed held-out inputs for samples (main process only)
    clock: TrainClock  # time spent against train.max_minutes
    last_checkpoint: Path | None = None


def _write_run_config(cfg: Config, acc: Accelerator, out_dir: Path) -> None:
    if acc.is_main_process:
        (out_dir / "samples").mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / "config.yaml") as tmp:
            save_config(cfg, tmp)
    acc.wait_for_everyone()


def _setup(cfg: Config, acc: Accelerator, out_dir: Path, resume_from: Path | None) -> Run:
    """Data, networks, optimizers, the resumed state, the log and the sample inputs."""
    from vid2vid.models.build import build_losses

    set_seed(cfg.train.seed)
    dataset, sampler, loader = _build_data(cfg, acc)
    _write_run_config(cfg, acc, out_dir)
    clock = TrainClock(cfg.train.max_minutes * 60)
    groups, ema, loader = build_groups(cfg, acc, loader, clock, fresh=resume_from is None)
    losses = build_losses(cfg).to(acc.device)  # the frozen VGG is only moved, never prepared
    trainer = build_trainer(cfg, acc, groups, losses, ema)
    trainer.clock = clock

    state = {"step": 0, "epoch": 0, "samples_in_epoch": 0, "elapsed_s": 0.0}
    if resume_from is not None:
        saved = load_checkpoint(acc, trainer, resume_from)
        state = {k: saved.get(k, v) for k, v in state.items()}
        clock.elapsed_s = state["elapsed_s"]
        acc.print(f"resumed from {resume_from} at step {state['step']}")
    elif acc.is_main_process:
        acc.print(f"training {cfg.model.name} for {cfg.train.max_steps} steps into {out_dir}")
    log = JsonlLog(out_dir / "log.jsonl", state["step"] if resume_from is not None else None) \
        if acc.is_main_process else None
    if acc.is_main_process and cfg.train.tracker != "none":
        acc.init_trackers("vid2vid", config=_flat_config(cfg))
    indices_per_batch = cfg.data.batch_size * acc.num_processes
    batches = endless_batches(loader, sampler, dataset, state["epoch"],
                              state["samples_in_epoch"] // indices_per_batch, indices_per_batch)
    samples = trainer.sample_inputs() if acc.is_main_process else None
    return Run(cfg, acc, out_dir, trainer, batches, state, log, samples, clock)


def _loop(run: Run, last_step: int) -> TrainResult:
    cfg, acc, trainer, state = run.cfg, run.acc, run.trainer, run.state
    bar = progress_bar(cfg, state["step"], run.clock, disable=not acc.is_main_process)
    try:
        with StopSignals() as stop:  # SIGINT / SIGTERM: stop between steps, with a checkpoint (_stop)
            _steps(run, last_step, bar, stop)
    finally:
        bar.close()  # an error message that stops the run starts on a line of its own
    export_dir = run.out_dir / "export"
    if acc.is_main_process and not all((export_dir / f).is_file() for f in ckpt.export_files(cfg)):
        write_export(trainer, export_dir)  # resumed at the last step (or its export cut short)
    acc.wait_for_everyone()
    unwrapped = {name: acc.unwrap_model(net) for name, net in trainer.networks.items()}
    return TrainResult(state["step"], run.out_dir, run.last_checkpoint, run.out_dir / "export", unwrapped["G"],
                       unwrapped["D"], trainer.ema.model if trainer.ema is not None else None, unwrapped)


class _TimeBar(tqdm):
    """A tqdm whose bar and remaining-time estimate follow the training clock (train.max_minutes)
    while it counts steps; whichever ends first (time or max_steps) fills the bar."""

    def __init__(self, clock: TrainClock, max_steps: int, step: int, **kwargs):
        self.clock, self.max_steps = clock, max_steps
        super().__init__(total=1000, initial=self._permille(step), unit="‰", **kwargs)

    def _permille(self, step: int) -> int:
        return round(1000 * max(self.clock.fraction(), step / max(self.max_steps, 1)))

    def update(self, n: int = 1) -> bool | None:  # n: steps done; the bar moves by the time fraction
        self.step = getattr(self, "step", 0) + n
        return super().update(max(0, self._permille(self.step) - self.n))


def progress_bar(cfg: Config, step: int, clock: TrainClock, disable: bool) -> tqdm:
    """Steps out of train.max_steps; with train.max_minutes, the bar follows time (the budget decides)."""
    if clock.budget_s <= 0:
        return tqdm(total=cfg.train.max_steps, initial=step, disable=disable, desc="train", dynamic_ncols=True)
    bar = _TimeBar(clock, cfg.train.max_steps, step, disable=disable, desc=f"train {cfg.train.max_minutes:g} min",
                   dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")
    bar.step = step
    return bar


def _steps(run: Run, last_step: int, bar, stop: StopSignals) -> None:
    """Training steps until `last_step` (or the time budget, or a stop signal: TrainingStopped)."""
    cfg, acc, trainer, state = run.cfg, run.acc, run.trainer, run.state
    clock = {"t": time.perf_counter(), "steps": 0}
    indices_per_batch = cfg.data.batch_size * acc.num_processes
    bad_steps = 0  # skipped (non-finite) steps in a row
    if run.clock.out_of_time():  # resumed after the time budget was spent: nothing left to train
        acc.print(f"train.max_minutes={cfg.train.max_minutes} already spent at step {state['step']}")
        return
    while state["step"] < last_step:
        run.batches.set_n_frames(clip_length(cfg, state["step"]))  # the same on every process and after a resume
        trainer.set_stage(state["step"])  # progressive spatial scales: a growth step changes what trains
        micro = []
        for _ in range(cfg.optim.grad_accum):
            epoch, batch_in_epoch, batch = next(run.batches)
            micro.append(batch)
        lrs = trainer.lrs()  # the rates this step uses
        started = time.perf_counter()
        parts = trainer.step(micro, state["step"])
        # the slowest process's clock decides, so that every process stops at the same step
        run.clock.elapsed_s += float(acc.reduce(torch.tensor(time.perf_counter() - started, device=acc.device), "max"))
        state.update(step=state["step"] + 1, epoch=epoch, samples_in_epoch=batch_in_epoch * indices_per_batch,
                     elapsed_s=run.clock.elapsed_s)
        bar.update(1)
        bad_steps = _count_bad_step(run, bad_steps)
        if run.clock.out_of_time():
            acc.print(f"train.max_minutes={cfg.train.max_minutes} reached at step {state['step']}")
            last_step = state["step"]  # samples and checkpoints this step as the last one
        _after_step(run, parts, lrs, last_step, bar, clock)
        signum = stop.agreed(acc)
        if signum and state["step"] < last_step:  # (a signal during the last step: the run just ends)
            _stop(run, signum, last_step, bar)


# ----------------------------------------------------------------------------------------------
# Stopping on a signal, skipping non-finite steps
# ----------------------------------------------------------------------------------------------


class TrainingStopped(SystemExit):
    """Training stopped on SIGINT / SIGTERM after a checkpoint of the step just taken. A SystemExit whose code is
    the shell's status for the signal (130 / 143), so that the command line exits with it (run_cli lets it
    through); library callers can catch it."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        super().__init__(128 + signum)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint


def _stop(run: Run, signum: int, last_step: int, bar) -> None:
    """After the step just taken: its checkpoint (unless _after_step wrote it), one line on stderr saying how to
    resume, then TrainingStopped."""
    step = run.state["step"]
    if not _checkpoint_due(run.cfg, step, last_step):
        _save(run)
    bar.close()
    if run.acc.is_main_process:
        print(f"vid2vid: {signal.Signals(signum).name}: stopped after step {step} with checkpoint "
              f"{run.last_checkpoint}; resume with: vid2vid train --config {run.out_dir / 'config.yaml'} "
              "--resume latest", file=sys.stderr, flush=True)
    raise TrainingStopped(signum, step, run.last_checkpoint)


def _count_bad_step(run: Run, bad_steps: int) -> int:
    """Skipped (non-finite) steps in a row, the step just taken included: 0 after a good step, a warning after a
    skipped one, a UserError (on every process) when train.max_bad_steps are reached."""
    trainer, step, limit = run.trainer, run.state["step"], run.cfg.train.max_bad_steps
    if not trainer.skip_step:
        return 0
    bad_steps += 1
    what = ", ".join(dict.fromkeys(trainer.nonfinite)) or "on another process"
    if bad_steps >= limit:
        found = ckpt.list_checkpoints(run.out_dir / "checkpoints")
        last = f"the last checkpoint ({found[-1]}) is intact" if found else "no checkpoint had been written"
        raise UserError(f"step {step}: non-finite values ({what}) in {bad_steps} steps in a row "
                        f"(train.max_bad_steps={limit}), each skipped; training stopped, {last}. Fixes: set "
                        "optim.grad_clip (e.g. 1.0) or use train.mixed_precision=no (fp32) or bf16 instead of fp16 "
                        "and --resume latest, or start a new run with a lower optim.lr (a resume keeps the "
                        "checkpoint's learning rates)")
    if run.acc.is_main_process:
        logging.getLogger("vid2vid").warning(
            "step %d: non-finite values (%s): step skipped (no optimizer or EMA update); %d in a row, the run "
            "stops at train.max_bad_steps=%d", step, what, bad_steps, limit)
    return bad_steps


def clip_length(cfg: Config, step: int) -> int:
    """Frames per training clip at `step`: data.n_frames doubled every train.clip_double_every steps, up to
    data.max_frames (the image models: 1)."""
    from vid2vid.models.build import spec

    if not spec(cfg).sequential:
        return 1
    every, n = cfg.train.clip_double_every, cfg.data.n_frames
    if every <= 0:
        return n
    return min(max(cfg.data.max_frames, n), n * 2 ** (step // every))


def _checkpoint_due(cfg: Config, step: int, last_step: int) -> bool:
    return step % cfg.train.checkpoint_every == 0 or step == last_step


def _save(run: Run) -> None:
    """Checkpoint of the step just taken (every process; also refreshes the export)."""
    cfg = run.cfg
    schedule = {"max_steps": cfg.train.max_steps, "decay_start": cfg.optim.decay_start, **run.trainer.lrs()}
    run.last_checkpoint = save_checkpoint(run.acc, run.trainer, run.out_dir, {**run.state, **schedule})


def _after_step(run: Run, parts: dict[str, float], lrs: dict[str, float], last_step: int, bar, clock: dict) -> None:
    """Log line (always for a skipped step), sample and checkpoint of the step just taken. The non-finite
    checks come earlier, before the optimizer steps (Trainer.check_finite, _count_bad_step)."""
    cfg, acc, step = run.cfg, run.acc, run.state["step"]
    clock["steps"] += 1
    mean_parts = dict(zip(parts, acc.reduce(torch.tensor(list(parts.values()), device=acc.device), "mean").tolist()))
    skipped = run.trainer.skip_step
    if step % cfg.train.log_every == 0 or step == last_step or skipped:
        now = time.perf_counter()
        if acc.is_main_process:
            record = {"step": step, "epoch": run.state["epoch"], **lrs, **mean_parts,
                      "it_s": clock["steps"] / max(now - clock["t"], 1e-9)}
            if skipped:
                record["skipped"] = ", ".join(dict.fromkeys(run.trainer.nonfinite)) or "on another process"
            run.log.write(record)
            losses = {"G" if k == "G/total" else "D" if k == "D/total" else k.split("/")[-1]: f"{v:.3g}"
                      for k, v in mean_parts.items() if k.startswith("G/") or k == "D/total"}
            bar.set_postfix({"step": step} | losses, refresh=False)
            acc.log({k: v for k, v in record.items() if k not in ("step", "skipped")}, step=step)
        clock.update(t=now, steps=0)
    if acc.is_main_process and (step % cfg.train.sample_every == 0 or step == last_step):
        metrics = run.trainer.sample(run.samples, run.out_dir, step)
        if metrics:
            run.log.write({"step": step, **metrics})
            acc.log(metrics, step=step)
    if _checkpoint_due(cfg, step, last_step):
        _save(run)
