"""Learning rates, their linear-decay schedule, the training clock (train.max_minutes) and the generator's EMA."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from vid2vid.config import Config


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
