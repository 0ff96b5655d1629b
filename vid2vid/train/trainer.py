"""The trainer core: the training model as named network groups and the Trainer base class (updates, non-finite
checks, CutMix draws, EMA and export hooks) that the image step (vid2vid.train.image) and the video step
(vid2vid.train.video) extend.

A training model is a named set of networks in groups (Group): the generator side "G" (the
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
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from einops import rearrange

from vid2vid.config import Config
from vid2vid.data.encoding import semantic_input
from vid2vid.families import family
from vid2vid.losses import cutmix_probability, draw_cutmix
from vid2vid.models.build import (
    build_discriminator,
    build_face_discriminator,
    build_generator,
    build_image_encoder,
    build_temporal_discriminators,
)
from vid2vid.models.video import init_blend_weight
from vid2vid.train.schedule import EMA, TrainClock, learning_rates, make_schedulers
from vid2vid.train.warm_start import warm_start

# ----------------------------------------------------------------------------------------------
# Config checks that need the environment (the static rules live in config.check)
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
    g_side = {"G": build_generator(cfg)}
    encoder = build_image_encoder(cfg)
    if encoder is not None:
        g_side["E"] = encoder
    networks = {"G": g_side, "D": {"D": build_discriminator(cfg)}}
    if family(cfg).sequential:
        networks["D"].update(build_temporal_discriminators(cfg))
        networks["D"].update(build_face_discriminator(cfg))
    return networks


def build_groups(cfg: Config, acc: Accelerator, loader, clock: TrainClock | None = None, *, fresh: bool = True
                 ) -> tuple[dict[str, Group], EMA | None, object]:
    """Networks (at a fresh start, G's image branch from model.init_from when set), one Adam per group (TTUR
    rates), linear-decay schedules and EMA, prepared by accelerate together with the loader. Returns (groups,
    ema, prepared loader)."""
    networks = build_networks(cfg)
    if fresh and cfg.model.init_from:
        copied = warm_start(networks["G"]["G"], cfg)
        acc.print(f"model.init_from: the image branch starts from {cfg.model.init_from} ({copied} tensors)")
    if fresh and cfg.model.blend_init is not None:
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
        return semantic_input(images["labels"], images.get("inst"), self.cfg.data.label_nc,
                              self.cfg.data.use_instance, cond=images.get("cond"))  # [N, C_in, H, W]

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

    def export_extras(self) -> dict[str, dict[str, torch.Tensor]]:
        """What the export holds besides the generator (the image models' encoder and feature bank): none here."""
        return {}


def frames_as_images(batch: dict) -> dict:
    """Clips [B,T,...] -> images [B*T,...] (the image models' T = 1 view of the video loop)."""
    return {k: rearrange(v, "b t ... -> (b t) ...") for k, v in batch.items()
            if isinstance(v, torch.Tensor) and k in ("labels", "frames", "inst", "cond")}


def add_parts(total: dict[str, float], parts: dict[str, torch.Tensor], prefix: str, k: int) -> None:
    for name, v in parts.items():
        total[prefix + name] = total.get(prefix + name, 0.0) + float(v.detach()) / k
