"""The video model's training step (model.name: vid2vid), on the trainer's named network groups.

One step per clip batch {labels [B,T,H,W], inst, frames [B,T,3,H,W], flow_bw [B,T-1,2,H,W]}:

    semantics per frame (one-hot + edges) and the reference flow + confidence between real frames (no grad)
    history <- the first N-1 frames (real | image-model | zeros)            # N = model.n_frames_G
    for each chunk of train.detach_every generated frames:
        temporal.unroll(G, history, semantics[chunk])                      # the ONE recurrence
        D phase: image D on (sem, final) and (sem, raw) vs (sem, real) (+ with loss.cutmix, CutMixes of real
                 and final: trainer.cutmix_mask); temporal D per scale on windows over [first frames + generated
                 frames] vs real windows, both with the real flows; with discriminator.face, the face D on (sem, final)
                 vs (sem, real) cropped around the face of the frames that have one (face_inputs)
        G phase (Ds frozen): GAN + feature matching (image, temporal and face Ds), L1/VGG, flow, warp, mask terms
        history.detach()
    one optimizer step per group (gradients of every chunk accumulated), EMA, schedules

Spatial scales (model.n_scales_spatial S > 1) grow in one run (scale_stage): the coarsest scale starts alone, at
1/2^(S-1) of data.crop_size; every train.add_scale_every steps the next finer scale joins and trains alone for
train.fix_coarse_steps steps (the coarser scales' parameters are frozen, so their outputs carry no graph), then all
active scales train. The clip is brought to the active resolution on the device (frames and semantics by the
generator's avg-pool pyramid, exact flow resized), so a coarse scale sees in its first stage what it sees once
finer scales are added. At every stage change the G optimizer is rebuilt over exactly the trainable parameters
(Adam state kept for those that stay; the LR schedule continues), and a resume rebuilds the stage of the last step
taken before loading the optimizer, so resuming inside any stage, or at a growth step, is exact. The export holds the
active scales only (a model with fewer scales at its lower resolution) until every scale is active.

Each chunk's per-frame losses are weighted by its share of the generated frames and its temporal-D losses
by its share of the clip's windows at that scale, so a step's loss is the same whatever detach_every is. A
temporal scale whose window is longer than the clip is skipped (noted once). Forward passes use the unwrapped
networks and the gradients are averaged over processes by hand before each optimizer step (the recurrence calls
G many times per backward, which DistributedDataParallel's reducer does not allow); BatchNorm statistics are
therefore per process.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from einops import rearrange

from vid2vid.config import Size
from vid2vid.data.encoding import semantic_input
from vid2vid.data.sequences import held_out_phase, whole_sequences
from vid2vid.eval.detail import val_detail
from vid2vid.eval.metrics import psnr, warping_error
from vid2vid.imaging import label_colours, to_uint8
from vid2vid.losses import feature_matching, l1_loss, mix
from vid2vid.models.discriminators import face_crops, square_face_boxes, temporal_windows
from vid2vid.models.video import pyramid, resize_flow
from vid2vid.temporal import History, start_history, unroll
from vid2vid.train.accel import retarget_optimizer
from vid2vid.train.trainer import Trainer, set_requires_grad
from vid2vid.video_io import VideoWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScaleStage:
    """Which spatial scales run and train at a step (progressive growth)."""

    active: int  # the coarsest `active` scales run; the output comes from the finest of them
    train_coarse: bool  # False: only the finest active scale trains (the coarser ones are fixed)


def scale_stage(cfg, step: int) -> ScaleStage:
    """The stage of training step `step` (0-based): with train.add_scale_every k > 0, one more scale every k steps
    (up to model.n_scales_spatial), the newest alone for train.fix_coarse_steps steps after each growth."""
    n, every = cfg.model.n_scales_spatial, cfg.train.add_scale_every
    if n == 1 or every <= 0:
        return ScaleStage(n, True)
    active = min(n, 1 + step // every)
    return ScaleStage(active, active == 1 or step - (active - 1) * every >= cfg.train.fix_coarse_steps)


class VideoTrainer(Trainer):
    """The sequential generator with its image and temporal discriminators."""

    def __init__(self, cfg, accelerator, groups, losses, ema, *, video_losses, reference_flow, first_frames=None,
                 teacher=None):
        super().__init__(cfg, accelerator, groups, losses, ema)
        self.video_losses, self.reference_flow = video_losses, reference_flow
        self.first_frames = first_frames  # callable(labels [B,N-1,H,W], inst) -> frames, for image-model:PATH
        self.teacher = teacher  # the same for the per-frame model of loss.teacher (None: no teacher term)
        self.skipped_scales: set[int] = set()
        self.stage = ScaleStage(cfg.model.n_scales_spatial, True)  # set_stage sets the stage of each step
        self._stage_set: ScaleStage | None = None

    def sample_inputs(self) -> dict:
        return held_out_clip(self.cfg)

    def sample(self, samples: dict, out_dir, step: int) -> dict[str, float]:
        return sample_video(self, samples, out_dir, step)

    def net(self, name: str) -> torch.nn.Module:
        return self.acc.unwrap_model(self.networks[name])

    def has_face_d(self) -> bool:
        return "D_face" in self.groups["D"].networks

    def face_boxes(self, batch: dict, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The face D's crop boxes of the clip [B,T,4] in pixels of `real` (the active resolution; the crop rule:
        square_face_boxes of the clip's face_box) and their validity [B,T], or None without the face D."""
        if not self.has_face_d():
            return None
        if "face_box" not in batch:
            raise ValueError("discriminator.face: the clips need face_box and face_valid (data.condition pose)")
        factor = real.shape[-1] / batch["frames"].shape[-1]
        boxes = square_face_boxes(batch["face_box"].float() * factor, self.cfg.discriminator.face_scale)
        return boxes, batch["face_valid"].bool()

    def temporal_scales(self) -> list[int]:
        return [int(name.removeprefix("D_temporal")) for name in self.groups["D"].networks
                if name.startswith("D_temporal")]

    # ------------------------------------------------------------------------------------------
    # spatial scales: the stage of each step
    # ------------------------------------------------------------------------------------------

    def set_stage(self, step: int) -> None:
        """Before training step `step` (and on resume, with the last step taken): the stage's active scales (G and
        its EMA), requires_grad of every scale, and the G optimizer over exactly the trainable parameters."""
        stage = scale_stage(self.cfg, step)
        if self.cfg.model.n_scales_spatial == 1 or stage == self._stage_set:
            return
        G = self.net("G")
        for model in (G, None if self.ema is None else self.ema.model):
            if model is not None:
                model.set_active_scales(stage.active)
        finest = stage.active - 1
        for s, scale in enumerate(G.scales):
            scale.requires_grad_(s == finest or (s < finest and stage.train_coarse))
        self.retarget_optimizer("G")
        if self._stage_set is not None:
            what = "all active scales train" if stage.train_coarse else f"scale {finest} trains alone"
            self.acc.print(f"step {step}: {stage.active} of {len(G.scales)} spatial scales active ({what})")
            log.info("step %d: %s", step, stage)
        self.stage = self._stage_set = stage

    def retarget_optimizer(self, group: str) -> None:
        """Rebuild the group's optimizer over its trainable (requires_grad) parameters, when they changed: same
        hyperparameters and learning rate, Adam state kept for the parameters that stay; the LR schedule goes on
        from where it was."""
        g = self.groups[group]
        rebuilt = retarget_optimizer(self.acc, g.optimizer, g.scheduler, [p for p in g.parameters() if p.requires_grad])
        if rebuilt is not None:
            g.optimizer, g.scheduler = rebuilt

    def at_active_scale(self, x: torch.Tensor) -> torch.Tensor:
        """A full-resolution clip tensor [B,T,C,H,W] -> the active resolution (the generator's avg-pool pyramid;
        unchanged when every scale is active)."""
        levels = self.cfg.model.n_scales_spatial - self.stage.active
        return pyramid(x, levels + 1)[0] if levels else x

    def flow_at_active_scale(self, flow: torch.Tensor | None) -> torch.Tensor | None:
        """Exact flow [B,T-1,2,H,W] in pixels -> the active resolution (resize_flow), or None."""
        levels = self.cfg.model.n_scales_spatial - self.stage.active
        if flow is None or not levels:
            return flow
        b, size = flow.shape[0], (flow.shape[-2] // 2**levels, flow.shape[-1] // 2**levels)
        small = resize_flow(rearrange(flow, "b t c h w -> (b t) c h w"), size)
        return rearrange(small, "(b t) c h w -> b t c h w", b=b)

    def export_state(self) -> dict[str, torch.Tensor]:
        """The generator weights to export (EMA when on): the active scales only."""
        state = super().export_state()
        if self.stage.active == self.cfg.model.n_scales_spatial:
            return state
        active = self.stage.active
        return {k: v for k, v in state.items() if not k.startswith("scales.") or int(k.split(".")[1]) < active}

    def export_config(self):
        """The config of the exported model: while scales are still to come, a model of the active scales at the
        active resolution."""
        cfg = self.cfg
        levels = cfg.model.n_scales_spatial - self.stage.active
        if not levels:
            return cfg

        def smaller(size: Size) -> Size:
            return Size(size.h // 2**levels, size.w // 2**levels)

        return replace(cfg, model=replace(cfg.model, n_scales_spatial=self.stage.active),
                       data=replace(cfg.data, load_size=smaller(cfg.data.load_size),
                                    crop_size=smaller(cfg.data.crop_size)),
                       train=replace(cfg.train, add_scale_every=0, fix_coarse_steps=0))

    # ------------------------------------------------------------------------------------------
    # inputs
    # ------------------------------------------------------------------------------------------

    def clip_semantics(self, batch: dict, t0: int = 0, t1: int | None = None) -> torch.Tensor:
        """labels [B,T,H,W] (+ inst) of frames t0..t1-1 -> semantics [B,t1-t0,C,h,w] at the active resolution
        (made per chunk in training, so that memory does not grow with the clip length)."""
        inst, cond = (batch.get(k) for k in ("inst", "cond"))
        sem = semantic_input(batch["labels"][:, t0:t1], None if inst is None else inst[:, t0:t1],
                             self.cfg.data.label_nc, self.cfg.data.use_instance,
                             cond=None if cond is None else cond[:, t0:t1])
        return self.at_active_scale(sem)

    @staticmethod
    def frames_slice(batch: dict, t0: int, t1: int) -> tuple:
        """(labels, inst, cond) of frames t0..t1-1 of a clip batch (inst, cond None when absent): what a per-frame
        model generates those frames from."""
        return tuple(None if batch.get(k) is None else batch[k][:, t0:t1] for k in ("labels", "inst", "cond"))

    def history_for(self, batch: dict, sem: torch.Tensor) -> History:
        """The history before the clip's first generated frame, at the active resolution (sem: the clip's
        semantics at that resolution)."""
        n = self.cfg.model.n_frames_G - 1
        mode = self.cfg.model.first_frame
        if mode.startswith("image-model:"):
            with torch.no_grad():
                frames = self.first_frames(*self.frames_slice(batch, 0, n))
            return start_history(mode, sem[:, :n], self.at_active_scale(frames))
        return start_history(mode, sem[:, :n], self.at_active_scale(batch["frames"][:, :n]))

    # ------------------------------------------------------------------------------------------
    # the step
    # ------------------------------------------------------------------------------------------

    def step(self, micro_batches: list[dict], step: int = 0) -> dict[str, float]:
        """Training step number `step` (0-based). Both groups' losses and gradients are checked before either
        optimizer steps, so a non-finite value anywhere skips the whole step (Trainer.check_finite)."""
        self.begin_step(step)
        parts: dict[str, float] = {}
        params = [p for group in ("D", "G") for p in self.groups[group].parameters()]
        for batch in micro_batches:
            with gradients_summed_after(params):
                self.clip_step(batch, parts, 1.0 / len(micro_batches))
        for group in ("D", "G"):
            self.average_gradients(group)
        self.check_finite(parts, "D", "G")
        for group in ("D", "G"):
            self.update(group, parts)
        self.end_step(step)
        return parts

    def average_gradients(self, group: str) -> None:
        """All-reduce (mean) of the group's gradients over processes (what DDP would have done)."""
        if self.acc.num_processes == 1:
            return
        params = self.groups[group].parameters()
        # a parameter no process used (a skipped temporal scale) keeps no gradient, as in one process
        used = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=self.acc.device)
        dist.all_reduce(used)
        live = [p for p, n in zip(params, used.tolist(), strict=True) if n > 0]
        if not live:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in live])
        dist.all_reduce(flat)  # one collective for the whole group
        flat /= self.acc.num_processes
        for p, g in zip(live, flat.split([p.numel() for p in live]), strict=True):
            p.grad = g.view_as(p).clone()

    def clip_step(self, batch: dict, parts: dict[str, float], share: float) -> None:
        """Accumulate the gradients of one clip batch (weight `share` of the step) into both groups."""
        real = self.at_active_scale(batch["frames"])  # [B,T,3,H,W] at the active resolution
        ref_flow, confidence = self.reference_flow(real, flow_bw=self.flow_at_active_scale(batch.get("flow_bw")))
        n_seed, n_frames = self.cfg.model.n_frames_G - 1, real.shape[1]
        history = self.history_for(batch, self.clip_semantics(batch, 0, n_seed))
        faces = self.face_boxes(batch, real)
        self.note_skipped_scales(n_frames)
        sequence = history.frames.detach()  # [B,t,3,H,W]: first frames + generated so far (detached)
        every = self.cfg.train.detach_every
        for t0 in range(n_seed, n_frames, every):
            t1 = min(t0 + every, n_frames)
            sem = self.clip_semantics(batch, t0, t1)  # [B,t1-t0,C,H,W]
            with self.acc.autocast():
                out, history = unroll(self.net("G"), history, sem)
            chunk = Chunk(t0=t0, t1=t1, sem=sem, real=real, ref_flow=ref_flow, confidence=confidence,
                          sequence=sequence, out=out, share=share, n_seed=n_seed,
                          n_frames_D=self.cfg.discriminator.n_frames_D,
                          faces=None if faces is None else (faces[0][:, t0:t1], faces[1][:, t0:t1]))
            self.d_phase(chunk, parts)
            self.g_phase(chunk, parts, self.teacher_frames(batch, t0, t1))
            history = history.detach()
            sequence = torch.cat([sequence, out.final.detach().float()], dim=1)

    def teacher_frames(self, batch: dict, t0: int, t1: int) -> torch.Tensor | None:
        """The per-frame model's frames t0..t1-1 of the clip [B,t1-t0,3,H,W] at the active resolution (loss.teacher),
        or None."""
        if self.teacher is None:
            return None
        with torch.no_grad():
            frames = self.teacher(*self.frames_slice(batch, t0, t1))
        return self.at_active_scale(frames)

    def note_skipped_scales(self, n_frames: int) -> None:
        """Say once per temporal scale that clips of n_frames frames hold no window of it."""
        n_frames_D = self.cfg.discriminator.n_frames_D
        for s in self.temporal_scales():
            span = window_span(n_frames_D, s)
            if span > n_frames and s not in self.skipped_scales:
                self.skipped_scales.add(s)
                self.acc.print(f"note: clips of {n_frames} frames are too short for temporal scale {s} (D_temporal{s}"
                               f" needs {span} frames: discriminator.n_frames_D={n_frames_D} at stride "
                               f"{n_frames_D**s}); it is skipped and will be used when clips grow to {span} frames")
                log.info("temporal scale %d skipped: clips of %d frames, windows of %d", s, n_frames, span)

    def d_phase(self, c: Chunk, parts: dict[str, float]) -> None:
        D = self.net("D")
        set_requires_grad(D, True)
        with self.acc.autocast():
            sem, real = c.frames(c.sem_chunk), c.frames(c.real_chunk)
            fakes = torch.cat([c.frames(c.out.final), c.frames(c.out.raw)]).detach()
            fake_in = torch.cat([sem.repeat(2, 1, 1, 1), fakes], 1)
            real_in = torch.cat([sem, real], 1)
            n, m = len(fake_in), len(real_in)
            mask = self.cutmix_mask(m, real_in.shape[-2:])  # CutMix of real and final frames, or None
            mixed = [] if mask is None else [mix(real_in, fake_in[:m], mask.to(real_in.dtype))]
            preds = D(torch.cat([fake_in, real_in, *mixed]))
            d = self.losses.discriminator(real_outputs=_rows(preds, n, n + m), fake_outputs=_rows(preds, 0, n),
                                          discriminator=D, real_input=real_in.repeat(2, 1, 1, 1), fake_input=fake_in,
                                          mixed_outputs=_rows(preds, n + m, None) if mixed else None, mask=mask)
            weights = {name: c.weight for name in d}
            total = d["total"] * c.weight
            for s in self.temporal_scales():
                windows = c.windows(self.cfg.discriminator.n_frames_D, s, detach=True)
                if windows is None:
                    continue
                Dt = self.net(f"D_temporal{s}")
                set_requires_grad(Dt, True)
                fake_w, real_w = windows
                out = Dt(torch.cat([fake_w, real_w]))
                m = len(fake_w)
                dt = self.losses.gan_loss.discriminator(_rows(out, m, None), _rows(out, 0, m))
                d[f"temporal_s{s}"], weights[f"temporal_s{s}"] = dt["total"], c.temporal_weight(s)
                total = total + dt["total"] * c.temporal_weight(s)
            face = self.face_inputs(c, sem, c.frames(c.out.final).detach(), real)
            if face is not None:
                Df = self.net("D_face")
                set_requires_grad(Df, True)
                fake_f, real_f, share = face
                out = Df(torch.cat([fake_f, real_f]))
                m = len(fake_f)
                df = self.losses.gan_loss.discriminator(_rows(out, m, None), _rows(out, 0, m))
                d["face"], weights["face"] = df["total"], c.weight * share
                total = total + df["total"] * c.weight * share
            elif self.has_face_d():  # no face in the chunk: logged as 0 (the same parts on every process)
                d["face"], weights["face"] = total.new_zeros(()), 0.0
        self.acc.backward(total)
        d["total"], weights["total"] = total, 1.0
        _rescale(parts, d, "D/", weights)

    def g_phase(self, c: Chunk, parts: dict[str, float], teacher: torch.Tensor | None = None) -> None:
        """G's terms on the chunk (Ds frozen); teacher [B,t,3,H,W]: the per-frame model's frames (loss.teacher)."""
        D = self.net("D")
        frozen = [D] + [self.net(f"D_temporal{s}") for s in self.temporal_scales()]
        frozen += [self.net("D_face")] if self.has_face_d() else []
        for net in frozen:
            set_requires_grad(net, False)
        cfg = self.cfg
        with self.acc.autocast():
            sem, real = c.frames(c.sem_chunk), c.frames(c.real_chunk)
            final, raw = c.frames(c.out.final), c.frames(c.out.raw)
            preds = D(torch.cat([torch.cat([sem, final], 1), torch.cat([sem, raw], 1), torch.cat([sem, real], 1)]))
            n = len(sem)
            final_out, raw_out, real_out = (_rows(preds, i * n, (i + 1) * n) for i in range(3))
            g = self.losses.generator(fake_outputs=final_out, real_outputs=real_out, fake=final, real=real,
                                      l1=cfg.loss.l1_final)  # the final frame's own L1 weight (None: loss.l1)
            # the raw (hallucinated) frame gets every image term too: through `final` it only sees the share
            # w_t of the gradient, and what it learns is what a long render converges to
            raw_parts = self.losses.generator(fake_outputs=raw_out, real_outputs=real_out, fake=raw, real=real)
            g.update({f"{k}_raw": v for k, v in raw_parts.items() if k != "total"})
            g.update(self.video_terms(c))
            if teacher is not None:
                g["teacher"] = cfg.loss.teacher * l1_loss(raw, c.frames(teacher).to(raw.dtype))
            g.pop("total")
            weights = {name: c.weight for name in g}
            for s in self.temporal_scales():
                windows = c.windows(cfg.discriminator.n_frames_D, s, detach=False)
                if windows is None:
                    continue
                out = self.net(f"D_temporal{s}")(torch.cat(windows))
                m = len(windows[0])
                fake_o, real_o = _rows(out, 0, m), _rows(out, m, None)
                g[f"tgan_s{s}"] = cfg.loss.temporal_gan * self.losses.gan_loss.generator(fake_o)
                g[f"tfeat_s{s}"] = cfg.loss.temporal_feat * feature_matching(real_o, fake_o)
                weights[f"tgan_s{s}"] = weights[f"tfeat_s{s}"] = c.temporal_weight(s)
            face = self.face_inputs(c, sem, final, real)
            if face is not None:
                fake_f, real_f, share = face
                out = self.net("D_face")(torch.cat([fake_f, real_f]))
                m = len(fake_f)
                fake_o, real_o = _rows(out, 0, m), _rows(out, m, None)
                w_gan = cfg.loss.gan if cfg.loss.face_gan is None else cfg.loss.face_gan
                w_feat = cfg.loss.feat if cfg.loss.face_feat is None else cfg.loss.face_feat
                g["face_gan"] = w_gan * self.losses.gan_loss.generator(fake_o)
                g["face_feat"] = w_feat * feature_matching(real_o, fake_o)
                weights["face_gan"] = weights["face_feat"] = c.weight * share
            elif self.has_face_d():
                g["face_gan"] = g["face_feat"] = final.new_zeros((), dtype=torch.float32)
                weights["face_gan"] = weights["face_feat"] = 0.0
            g["total"], weights["total"] = sum(v * weights[k] for k, v in g.items()), 1.0
        self.acc.backward(g["total"])
        for net in frozen:
            set_requires_grad(net, True)
        _rescale(parts, g, "G/", weights)

    def face_inputs(self, c: Chunk, sem: torch.Tensor, fake: torch.Tensor, real: torch.Tensor):
        """The face D's inputs of the chunk's frames with a face: (fake crops, real crops) [K,C,s,s] of (semantics,
        frame) (s = discriminator.face_size) and K / the chunk's frames, the share of its frame terms they carry (a
        frame without a face contributes nothing); None without the face D or when no frame has a face.
        sem [N,C,H,W], fake / real [N,3,H,W]: the chunk's frames, batch-major as Chunk.frames gives them."""
        if c.faces is None:
            return None
        boxes, valid = (rearrange(x, "b t ... -> (b t) ...") for x in c.faces)
        rows = valid.nonzero()[:, 0]
        if len(rows) == 0:
            return None
        size, boxes = self.cfg.discriminator.face_size, boxes[rows]
        crop = [face_crops(torch.cat([sem[rows], x[rows].to(sem.dtype)], 1), boxes, size) for x in (fake, real)]
        return crop[0], crop[1], len(rows) / len(valid)

    def video_terms(self, c: Chunk) -> dict[str, torch.Tensor]:
        """Flow, warp and mask terms of the chunk's frames t0..t1-1 against their predecessors. The mask term
        (blend weight -> 0 where the reference flow is confident) applies, as in the reference, only when the
        first frames are zeros, unless loss.mask_first_frame is "any": with real first frames it made the model warp
        almost everywhere, which with bilinear resampling blurred long renders (BENCHMARKS.md, the proof table)."""
        t0, t1 = c.t0, c.t1
        masked = self.cfg.model.first_frame == "zeros" or self.cfg.loss.mask_first_frame == "any"
        weight = c.out.weight.float() if masked else None
        final_prev = torch.cat([c.sequence[:, -1:].to(c.out.final.dtype), c.out.final[:, :-1]], dim=1)
        parts = self.video_losses(ref_flow=c.ref_flow[:, t0 - 1:t1 - 1], confidence=c.confidence[:, t0 - 1:t1 - 1],
                                  flow=c.out.flow.float(), real=c.real_chunk, real_prev=c.real[:, t0 - 1:t1 - 1],
                                  final=c.out.final.float(), final_prev=final_prev.float(),
                                  weight=weight)
        parts.pop("total")
        return parts


@contextmanager
def gradients_summed_after(params: list[torch.Tensor]):
    """Inside, the parameters' gradients start empty; on leaving, the gradients from before are added (one sum per
    micro-batch, then one addition): so 2 micro-batches of a step give exactly the gradient of 2 processes, whose
    all-reduce adds each process's own sum (the clips' 1/k weights are powers of two for k = 2: exact)."""
    before = [p.grad for p in params]
    for p in params:
        p.grad = None
    yield
    for p, grad in zip(params, before, strict=True):
        if grad is not None:
            p.grad = grad if p.grad is None else grad + p.grad


def _rows(preds, start: int, stop: int):
    """Multi-scale D output (per scale, a list of features) -> the same structure for batch rows start:stop."""
    return [[f[start:stop] for f in scale] for scale in preds]


def _rescale(parts: dict[str, float], new: dict[str, torch.Tensor], prefix: str, weights: dict[str, float]) -> None:
    """Add a chunk's parts to the step's log, each weighted by the chunk's share of it (frames or windows)."""
    for name, v in new.items():
        parts[prefix + name] = parts.get(prefix + name, 0.0) + float(v.detach()) * weights[name]


def window_span(n_frames_D: int, scale: int) -> int:
    """Frames one temporal-D window covers at `scale` (n_frames_D frames at stride n_frames_D^scale)."""
    return (n_frames_D - 1) * n_frames_D**scale + 1


def windows_ending_in(t0: int, t1: int, span: int) -> int:
    """Windows of `span` frames (starting at frame 0 or later) whose last frame is in [t0, t1)."""
    return max(0, t1 - max(t0, span - 1))


class Chunk:
    """One chunk of generated frames t0..t1-1 of a clip and what its losses need."""

    def __init__(self, *, t0, t1, sem, real, ref_flow, confidence, sequence, out, share=1.0, n_seed=0, n_frames_D=3,
                 faces=None):
        self.t0, self.t1, self.share, self.n_seed, self.n_frames_D = t0, t1, share, n_seed, n_frames_D
        self.faces = faces  # the face D's (boxes [B,t1-t0,4], valid [B,t1-t0]) of the chunk's frames, or None
        self.real, self.ref_flow, self.confidence = real, ref_flow, confidence
        self.sequence = sequence  # [B,t0,3,H,W] detached first frames + earlier generated frames
        self.out = out  # temporal.VideoFrames of this chunk, [B,t1-t0,...]
        self.sem_chunk, self.real_chunk = sem, real[:, t0:t1]  # sem: the chunk's semantics [B,t1-t0,C,H,W]

    @property
    def weight(self) -> float:
        """The weight of the chunk's per-frame terms: its share of the clip's generated frames (of the step)."""
        return self.share * (self.t1 - self.t0) / (self.real.shape[1] - self.n_seed)

    def temporal_weight(self, scale: int) -> float:
        """The weight of the temporal-D terms at `scale`: the chunk's share of the clip's fake windows (those
        ending at a generated frame)."""
        span = window_span(self.n_frames_D, scale)
        mine = windows_ending_in(self.t0, self.t1, span)
        return self.share * mine / max(windows_ending_in(self.n_seed, self.real.shape[1], span), 1)

    @staticmethod
    def frames(x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b t c h w -> (b t) c h w")

    def windows(self, n_frames_D: int, scale: int, *, detach: bool):
        """(fake windows, real windows) [B*S,C,H,W] of the temporal D at `scale` that end in this chunk, or
        None when there is no complete one. Fake windows run over [first frames + generated frames]; both get
        the REAL frames' reference flows."""
        stride = n_frames_D**scale
        c0 = max(0, self.t0 - (n_frames_D - 1) * stride)  # every window of [c0, t1) ends at or after t0
        final = self.out.final.detach() if detach else self.out.final
        fake = torch.cat([self.sequence[:, c0:].to(final.dtype), final], dim=1)
        flows = self.ref_flow[:, c0:self.t1 - 1].to(final.dtype)
        fake_w = temporal_windows(fake, flows, n_frames_D, scale)
        if fake_w is None:
            return None
        return fake_w, temporal_windows(self.real[:, c0:self.t1].to(final.dtype), flows, n_frames_D, scale)


# ----------------------------------------------------------------------------------------------
# Held-out samples: a side-by-side mp4 and PSNR / E_warp in the log
# ----------------------------------------------------------------------------------------------


def held_out_clip(cfg, max_frames: int = 30) -> dict:
    """The first held-out sequence (test phase; train when absent) as a batch of one clip of whole frames, its
    first max_frames frames (or the whole sequence when shorter), with the dataset's flow when it has one."""
    _, item = whole_sequences(cfg.data, held_out_phase(cfg.data), max_frames)[0]
    return {k: v[None] for k, v in item.items() if isinstance(v, torch.Tensor)}


@torch.no_grad()
def generate_clip(trainer: VideoTrainer, G: torch.nn.Module, clip: dict) -> torch.Tensor:
    """The clip's frames as the video model makes them with real first frames: [T,3,H,W] in [-1,1]
    (the first N-1 frames are the real ones)."""
    clip = {k: v.to(trainer.acc.device) for k, v in clip.items()}
    sem = trainer.clip_semantics(clip)
    history = trainer.history_for(clip, sem)
    with trainer.acc.autocast():
        out, _ = unroll(G, history, sem[:, history.frames.shape[1]:])
    return torch.cat([history.frames, out.final.float()], dim=1)[0].clamp(-1, 1)


def sample_video(trainer: VideoTrainer, clip: dict, out_dir, step: int) -> dict[str, float]:
    """Write samples/step_XXXXXXX.mp4 (labels | generated | real) and return held-out PSNR, E_warp and the detail
    figures (vid2vid.eval.detail), all over the frames after the n_frames_G-1 seed frames."""
    G = trainer.export_model()
    was_training = G.training
    G.eval()
    fake = generate_clip(trainer, G, clip).cpu()  # [T,3,H,W]
    G.train(was_training)
    real = trainer.at_active_scale(clip["frames"])[0].float()  # [T,3,h,w]: the active resolution, as fake
    n_seed = trainer.cfg.model.n_frames_G - 1
    flows = None
    if "flow_fw" in clip:
        flows = tuple(trainer.flow_at_active_scale(clip[k])[0] for k in ("flow_fw", "flow_bw"))
    step_px = 2 ** (trainer.cfg.model.n_scales_spatial - trainer.stage.active)  # label colours: nearest
    e_warp = warping_error(fake[n_seed:], None if flows is None else (flows[0][n_seed:], flows[1][n_seed:]),
                           value_range=(-1, 1), reference=None if flows else real[n_seed:]).value
    metrics = {"val/psnr": float(psnr(fake[n_seed:], real[n_seed:], value_range=(-1, 1))), "val/e_warp": e_warp,
               **val_detail(fake, real, (-1, 1), n_seed)}
    labels = clip["labels"][0][..., ::step_px, ::step_px]
    panels = torch.cat([label_colours(labels, trainer.cfg.data.label_nc), fake, real], dim=3)
    frames = to_uint8(panels)
    with VideoWriter(out_dir / "samples" / f"step_{step:07d}.mp4", fps=trainer.cfg.render.fps) as writer:
        for frame in frames:
            writer.write(frame)
    return metrics
