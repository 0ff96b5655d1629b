"""Train RAFT on a dataset with exact flow (the vid2vid layout; e.g. the synthetic street scenes).

Layout read here (no vid2vid import): <root>/<phase>_B/<seq>/*.png|jpg frames sorted by name and
<root>/<phase>_flow/<seq>/fw_00000.flo (frame t -> t+1), bw_00000.flo (t+1 -> t). Both
directions are training pairs. Loss: RAFT's sequence loss (L1 on every iteration's flow,
weighted gamma^(N-1-i)); AdamW with a one-cycle schedule (linear, 5% warm-up) and gradient
clipping at 1, as in the paper. Checkpoints are torchvision-format state dicts (`load_raft`
and torchvision's RAFT read them). At the end the held-out pairs (phase 'test') are evaluated:
EPE of the model and of zero flow.
"""

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from flow.errors import FlowError
from flow.io import atomic_path, read_flo
from flow.raft import RAFT, raft_large, raft_small
from flow.video import forward_splat
from flow.warp import valid_mask
from flow.weights import load_raft

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_FLOW = 400.0  # ground truth beyond this is ignored, as in RAFT
_SIGNS = (torch.tensor([-1.0, 1.0]).view(2, 1, 1), torch.tensor([1.0, -1.0]).view(2, 1, 1))  # flips in x, in y


@dataclass(frozen=True)
class FlowPair:
    image1: Path
    image2: Path
    flow: Path  # image1 -> image2
    reverse_flow: Path | None  # image2 -> image1 (for the evaluation's valid mask)
    history: tuple[Path, ...] = ()  # the frames before image1 in the pair's direction, oldest first
    previous_flow: Path | None = None  # history[-1] -> image1


def find_pairs(root, phase: str, *, both_directions: bool) -> list[FlowPair]:
    """Every (frame t, frame t+1, fw_t) pair of a phase, plus (t+1, t, bw_t) when both_directions.
    A pair's history is frames 0..t-1 and its previous flow fw_(t-1); reversed, frames T-1..t+2 and bw_(t+1)."""
    root = Path(root)
    frames_dir, flow_dir = root / f"{phase}_B", root / f"{phase}_flow"
    if not frames_dir.is_dir() or not flow_dir.is_dir():
        raise FlowError(f"{root} has no {phase}_B/ and {phase}_flow/ folders: flow training needs frames "
                        "and exact flow in the vid2vid layout (e.g. `vid2vid prepare synthetic`)")
    pairs = []
    for seq in sorted(p for p in frames_dir.iterdir() if p.is_dir()):
        frames = sorted(p for p in seq.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        flows = {path.stem: path for path in (flow_dir / seq.name).glob("*.flo")}  # fw_00000 -> path
        for t in range(len(frames) - 1):
            fw, bw = flows.get(f"fw_{t:05d}"), flows.get(f"bw_{t:05d}")
            if fw:
                previous = flows.get(f"fw_{t - 1:05d}")
                pairs.append(FlowPair(frames[t], frames[t + 1], fw, bw, tuple(frames[:t]), previous))
            if both_directions and bw:
                previous = flows.get(f"bw_{t + 1:05d}")
                pairs.append(FlowPair(frames[t + 1], frames[t], bw, fw, tuple(frames[t + 2 :][::-1]), previous))
    if not pairs:
        raise FlowError(f"no flow pairs in {flow_dir} (expected <seq>/fw_00000.flo beside {frames_dir}/<seq>/)")
    return pairs


def read_image(path: Path) -> torch.Tensor:
    """PNG/JPG -> [3,H,W] float32 in [-1,1] (RGB)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FlowError(f"cannot read image {path}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1.0


def read_flow(path: Path) -> torch.Tensor:
    return torch.from_numpy(read_flo(path)).permute(2, 0, 1).contiguous()  # [2,H,W]


COLD, EXACT, OWN = 0, 1, 2  # how a training pair's initial flow is made (FlowPairs)


class FlowPairs(torch.utils.data.Dataset):
    """Dicts of image1, image2 [3,h,w], flow, init [2,h,w], start (COLD, EXACT or OWN), history
    [own_chain,3,h,w] and history_length; random crop (if crop), and flips when augmenting. The
    randomness of item i is seeded by (seed, epoch, i).

    init is the flow the model starts from. COLD: zero. With probability warm_start, where the pair
    has a previous one, it starts as video mode starts it, from the previous pair's flow carried
    forward along itself: EXACT carries the exact flow plus smooth noise of a random amplitude up to
    init_noise pixels; OWN (a fraction own_flow of the warm starts) leaves init at zero for the
    trainer to fill in with the model's own video-mode flow over the last 1..own_chain frames of the
    history (see own_starts), so the model learns to repair its own kind of error, also after it has
    been carried over several frames, instead of passing it on."""

    IMAGES, FLOWS = ("image1", "image2", "history"), ("flow", "init")

    def __init__(self, pairs: list[FlowPair], *, crop: tuple[int, int] | None, augment: bool, seed: int = 0,
                 warm_start: float = 0.0, init_noise: float = 1.0, own_flow: float = 0.0, own_chain: int = 1):
        self.pairs, self.crop, self.augment, self.seed, self.epoch = pairs, crop, augment, seed, 0
        self.warm_start, self.init_noise, self.own_flow, self.own_chain = warm_start, init_noise, own_flow, own_chain

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        pair = self.pairs[i]
        item = {"image1": read_image(pair.image1), "image2": read_image(pair.image2), "flow": read_flow(pair.flow)}
        size = item["flow"].shape[1:]
        start, item["init"], length = self.initial_flow(pair, i, size=size)
        item["start"], item["history_length"] = torch.tensor(start), torch.tensor(length)
        paths = pair.history[len(pair.history) - length :]  # read only what a chain needs, full size
        item["history"] = torch.stack([read_image(path) for path in paths]) if paths else torch.zeros(0, 3, *size)
        if any(item[k].shape[-2:] != size for k in self.IMAGES + self.FLOWS):
            raise FlowError(f"the frames and flows of the pair {pair.image1}, {pair.image2} (flow {pair.flow}, "
                            f"previous flow {pair.previous_flow}) differ in size")
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if self.crop is not None:
            (h, w), (ch, cw) = size, self.crop
            if ch > h or cw > w:
                raise FlowError(f"crop {ch}x{cw} is larger than the frames {h}x{w} of {pair.image1}")
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            for key in self.IMAGES + self.FLOWS:
                item[key] = item[key][..., top : top + ch, left : left + cw]
        for dim, sign, probability in ((-1, _SIGNS[0], 0.5), (-2, _SIGNS[1], 0.1)):  # flips in x (u changes sign), y
            if self.augment and rng.random() < probability:
                for key in self.IMAGES + self.FLOWS:
                    item[key] = item[key].flip(dim) * (sign if key in self.FLOWS else 1)
        padding = item["history"].new_zeros(self.own_chain - length, *item["history"].shape[1:])
        item["history"] = torch.cat([padding, item["history"]])  # [own_chain,3,h,w]: the last `length` are used
        return {key: value.contiguous() for key, value in item.items()}

    def initial_flow(self, pair: FlowPair, i: int, *, size) -> tuple[int, torch.Tensor, int]:
        """(start, init [2,H,W], history frames needed): zero, the exact previous flow carried forward
        plus smooth noise, or (OWN) zero and 1..own_chain frames for the trainer's video-mode chain."""
        rng = np.random.default_rng([self.seed, self.epoch, i, 1])  # apart from the crop and flips
        if pair.previous_flow is None or not pair.history or rng.random() >= self.warm_start:
            return COLD, torch.zeros(2, *size), 0
        if rng.random() < self.own_flow:
            return OWN, torch.zeros(2, *size), int(rng.integers(1, min(self.own_chain, len(pair.history)) + 1))
        carried = forward_splat(read_flow(pair.previous_flow)[None])  # [1,2,H,W]
        height, width = carried.shape[2:]
        coarse = rng.normal(0.0, rng.uniform(0.0, self.init_noise), (1, 2, -(-height // 8), -(-width // 8)))
        noise = F.interpolate(torch.from_numpy(coarse).float(), size=(height, width), mode="bilinear",
                              align_corners=False)
        return EXACT, (carried + noise)[0], 0


@torch.no_grad()
def own_starts(model: RAFT, batch: dict, *, iters: int) -> torch.Tensor:
    """The batch's initial flows [B,2,h,w] with the OWN ones filled in as video mode makes them (eval
    mode, iters iterations per pair): over the item's last n history frames and image1, the first pair
    from zero, each further pair from the previous flow carried forward, and that last flow carried.
    The carry is done at full resolution (video mode does it at 1/8): a harder start that trained a
    better model for video mode (BENCHMARKS.md: 0.806 vs 0.822 px over 58 warm-started pairs)."""
    init = batch["init"].clone()
    was_training = model.training
    model.eval()
    for b in (batch["start"] == OWN).nonzero().flatten().tolist():
        frames = torch.cat([batch["history"][b, -int(batch["history_length"][b]) :], batch["image1"][b : b + 1]])
        carried = None
        for t in range(frames.shape[0] - 1):
            carried = forward_splat(model(frames[t : t + 1], frames[t + 1 : t + 2], iters=iters, flow_init=carried))
        init[b] = carried[0]
    model.train(was_training)
    return init


def sequence_loss(flows: list[torch.Tensor], target: torch.Tensor, *, gamma: float = 0.8) -> torch.Tensor:
    """RAFT's loss: sum_i gamma^(N-1-i) * mean L1(flow_i - target) over valid pixels (|target| < 400)."""
    valid = (target.norm(dim=1, keepdim=True) < MAX_FLOW) & target.isfinite().all(dim=1, keepdim=True)
    target = torch.where(valid, target, 0.0)
    total = target.new_zeros(())
    for i, flow in enumerate(flows):
        error = (flow - target).abs() * valid
        total = total + gamma ** (len(flows) - 1 - i) * error.sum() / (valid.sum() * 2).clamp_min(1)
    return total


def end_point_error(flow: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[B,2,H,W] x2 -> per-pixel EPE [B,1,H,W]."""
    return (flow - target).norm(dim=1, keepdim=True)


@torch.no_grad()
def evaluate(model: RAFT, pairs: list[FlowPair], *, iters: int) -> dict:
    """Mean EPE over all pixels and over pixels valid by the exact flow's forward-backward check,
    for the model and for zero flow, on full frames."""
    was_training = model.training
    model.eval()
    sums = {"epe": 0.0, "zero_epe": 0.0, "epe_valid": 0.0, "zero_epe_valid": 0.0, "pixels": 0, "valid": 0}
    for pair in pairs:
        image1, image2 = read_image(pair.image1)[None], read_image(pair.image2)[None]
        target = read_flow(pair.flow)[None]
        epe = end_point_error(model(image1, image2, iters=iters), target)
        zero = target.norm(dim=1, keepdim=True)
        if pair.reverse_flow is not None:
            mask = valid_mask(target, read_flow(pair.reverse_flow)[None])
        else:
            mask = torch.ones_like(zero, dtype=torch.bool)
        sums["epe"] += epe.sum().item()
        sums["zero_epe"] += zero.sum().item()
        sums["epe_valid"] += epe[mask].sum().item()
        sums["zero_epe_valid"] += zero[mask].sum().item()
        sums["pixels"] += epe.numel()
        sums["valid"] += int(mask.sum())
    model.train(was_training)
    return {
        "pairs": len(pairs),
        "iters": iters,
        "epe": sums["epe"] / sums["pixels"],
        "zero_flow_epe": sums["zero_epe"] / sums["pixels"],
        "epe_valid": sums["epe_valid"] / max(sums["valid"], 1),
        "zero_flow_epe_valid": sums["zero_epe_valid"] / max(sums["valid"], 1),
        "valid_fraction": sums["valid"] / sums["pixels"],
    }


def zero_flow_start(model: RAFT) -> RAFT:
    """Zero the flow head's output layer: a new model starts at zero flow instead of random
    large updates (the first steps then reduce the zero-flow error rather than undo noise)."""
    nn_out = model.update_block.flow_head.conv2
    torch.nn.init.zeros_(nn_out.weight)
    torch.nn.init.zeros_(nn_out.bias)
    return model


def save_weights(model: RAFT, path: Path) -> None:
    """Torchvision-format state dict, written atomically."""
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)


def train(
    data,
    out,
    *,
    model: str = "raft_small",
    steps: int,
    batch_size: int = 4,
    crop: tuple[int, int] | None = None,
    lr: float = 4e-4,
    weight_decay: float = 1e-4,
    iters: int = 12,
    eval_iters: int = 12,
    gamma: float = 0.8,
    init: str | None = None,
    seed: int = 0,
    log_every: int = 10,
    save_every: int = 500,
    eval_pairs: int | None = None,
    augment: bool = True,
    warm_start: float = 0.0,
    init_noise: float = 1.0,
    own_flow: float = 0.0,
    own_chain: int = 1,
    log=print,
) -> dict:
    """Train and evaluate; writes <out>/<model>.pth, <out>/log.jsonl and <out>/report.json. Returns the report."""
    _check_options(model, steps, batch_size, iters, warm_start, own_flow, init_noise, own_chain)
    builders = {"raft_small": raft_small, "raft_large": raft_large}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = load_raft(init, model=model) if init else zero_flow_start(builders[model]())
    net.train()
    dataset = FlowPairs(find_pairs(data, "train", both_directions=True), crop=crop, augment=augment, seed=seed,
                        warm_start=warm_start, init_noise=init_noise, own_flow=own_flow, own_chain=own_chain)
    loader_rng = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay, eps=1e-8)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps + 100, pct_start=0.05,
                                                   cycle_momentum=False, anneal_strategy="linear")
    weights_path = out / f"{model}.pth"
    start, step, epoch = time.time(), 0, 0
    with open(out / "log.jsonl", "a") as log_file:
        while step < steps:
            dataset.epoch = epoch
            loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                                 generator=loader_rng)
            if len(loader) == 0:
                raise FlowError(f"{len(dataset)} training pairs in {data} but batch size {batch_size}: lower it")
            step = _epoch(net, loader, optimizer, schedule, log_file, step=step, steps=steps, iters=iters,
                          gamma=gamma, start=start, log_every=log_every, save_every=save_every,
                          weights_path=weights_path, log=log)
            epoch += 1
    train_minutes = (time.time() - start) / 60
    test = find_pairs(data, "test", both_directions=False)
    test = test[:eval_pairs] if eval_pairs else test
    report = {"model": model, "steps": steps, "batch_size": batch_size, "crop": crop, "iters": iters,
              "warm_start": warm_start, "init_noise": init_noise, "own_flow": own_flow, "own_chain": own_chain,
              "train_minutes": train_minutes, "threads": torch.get_num_threads(), "weights": str(weights_path),
              "test": evaluate(net, test, iters=eval_iters)}
    _write_report(report, out, weights_path, log)
    return report


def _epoch(net: RAFT, loader, optimizer, schedule, log_file, *, step: int, steps: int, iters: int, gamma: float,
           start: float, log_every: int, save_every: int, weights_path: Path, log) -> int:
    """One pass over the loader (or until `steps`): a step per batch, a log.jsonl line each, a log line every
    log_every steps, the weights every save_every steps. Returns the step count reached."""
    for batch in loader:
        loss, epe = _train_step(net, batch, optimizer, schedule, iters, gamma, step)
        step += 1
        record = {"step": step, "loss": loss, "epe": epe, "lr": schedule.get_last_lr()[0],
                  "seconds": time.time() - start}
        log_file.write(json.dumps(record) + "\n")
        if step % log_every == 0 or step == steps:
            log_file.flush()
            log(f"step {step}/{steps} loss {record['loss']:.3f} train EPE {record['epe']:.3f} "
                f"lr {record['lr']:.2e} {record['seconds'] / 60:.1f} min")
        if step % save_every == 0 or step == steps:
            save_weights(net, weights_path)
        if step == steps:
            break
    return step


def _check_options(model: str, steps: int, batch_size: int, iters: int, warm_start: float, own_flow: float,
                   init_noise: float, own_chain: int) -> None:
    if steps < 1 or batch_size < 1 or iters < 1:
        raise FlowError(f"steps, batch size and iters must be >= 1, got {steps}, {batch_size}, {iters}")
    if not (0 <= warm_start <= 1 and 0 <= own_flow <= 1 and init_noise >= 0 and own_chain >= 1):
        raise FlowError(f"warm start and own flow must be fractions in [0, 1], init noise >= 0 px and own chain "
                        f">= 1, got {warm_start}, {own_flow}, {init_noise} and {own_chain}")
    if model not in ("raft_small", "raft_large"):
        raise FlowError(f"unknown model {model!r} for training: use raft_small or raft_large")


def _train_step(net: RAFT, batch: dict, optimizer, schedule, iters: int, gamma: float, step: int
                ) -> tuple[float, float]:
    """One optimizer step on a batch (flow from the model's own starts); returns (loss, train EPE)."""
    target, flow_init = batch["flow"], own_starts(net, batch, iters=iters)
    flows = net(batch["image1"], batch["image2"], iters=iters, flow_init=flow_init, return_all=True)
    loss = sequence_loss(flows, target, gamma=gamma)
    if not math.isfinite(loss.item()):
        raise FlowError(f"training diverged at step {step} (loss {loss.item()}): lower --lr")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    return loss.item(), end_point_error(flows[-1].detach(), target).mean().item()


def _write_report(report: dict, out: Path, weights_path: Path, log) -> None:
    """<out>/report.json (atomically) and one line of held-out EPE."""
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n")
    t = report["test"]
    log(f"held-out EPE {t['epe']:.3f} px (zero flow {t['zero_flow_epe']:.3f}, ratio "
        f"{t['epe'] / max(t['zero_flow_epe'], 1e-9):.3f}) on {t['pairs']} pairs; valid pixels: "
        f"{t['epe_valid']:.3f} vs {t['zero_flow_epe_valid']:.3f}; weights {weights_path}")
