"""The image models' step (pix2pix, pix2pixHD, SPADE): every frame of a clip an independent image."""

from __future__ import annotations

import itertools
from contextlib import ExitStack, nullcontext
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, default_collate

from vid2vid.config import Config
from vid2vid.data.sampler import ClipKey
from vid2vid.data.sequences import build_dataset, held_out_phase
from vid2vid.losses import mix
from vid2vid.models.build import (
    build_feature_bank,
)
from vid2vid.models.image import encode_instances, instance_map, reparameterize
from vid2vid.train.logs import sample_grid, write_png
from vid2vid.train.trainer import Trainer, add_parts, frames_as_images, set_requires_grad


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
        return sample_images(self.cfg)

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
        cfg = self.cfg
        dataset = build_dataset(replace(cfg.data, n_frames=1), phase=cfg.data.phase, seed=cfg.train.seed)
        n = min(self.feature_bank_frames, sum(len(seq) for seq in dataset.sequences))
        keys = [ClipKey(j // len(dataset), j % len(dataset), 1) for j in range(n)]
        for batch in DataLoader(dataset, batch_size=cfg.data.batch_size, sampler=keys, num_workers=0):
            yield frames_as_images(batch)


def sample_images(cfg: Config, n: int = 4) -> dict:
    """A fixed batch for sample grids: the first items of the test phase (train when absent)."""
    dataset = build_dataset(replace(cfg.data, n_frames=1), phase=held_out_phase(cfg.data), seed=cfg.train.seed)
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    return frames_as_images(default_collate([{k: v for k, v in it.items() if isinstance(v, torch.Tensor)}
                                             for it in items]))
