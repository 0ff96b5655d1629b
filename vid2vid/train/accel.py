"""The one place that reaches past Accelerate's public API (so that an Accelerate upgrade breaks one place at most,
and tests/test_train_accel.py says which).

Accelerate prepares an optimizer once; the video model's progressive scales change which parameters train, so its
G optimizer is rebuilt over the new set (retarget_optimizer). That needs two things Accelerate has no public call
for: the torch optimizer inside its wrapper (AcceleratedOptimizer.optimizer), and forgetting the replaced wrapper
in the Accelerator's private list of prepared optimizers (Accelerator._optimizers, which it walks to unscale fp16
gradients and to save state). The LR schedule is rebuilt over the new optimizer from the old one's state.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator


def inner_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer of a prepared (wrapped) one; an unwrapped one as it is."""
    return getattr(optimizer, "optimizer", optimizer)


def forget_optimizer(acc: Accelerator, optimizer: torch.optim.Optimizer) -> None:
    """Drop a prepared optimizer from the Accelerator's own list (it is being replaced)."""
    if hasattr(acc, "_optimizers"):
        acc._optimizers = [o for o in acc._optimizers if o is not optimizer]


def retarget_optimizer(acc: Accelerator, optimizer: torch.optim.Optimizer,
                       scheduler: torch.optim.lr_scheduler.LambdaLR, params: list[torch.nn.Parameter]
                       ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR] | None:
    """A prepared optimizer (and its LambdaLR) rebuilt over `params`, or None when it already holds exactly
    those: same class and hyperparameters, the current learning rate, the state (e.g. Adam's moments) of the
    parameters that stay; the schedule goes on from where it was. The old optimizer is forgotten by `acc` and the
    new one prepared."""
    old = inner_optimizer(optimizer)
    if [id(p) for pg in old.param_groups for p in pg["params"]] == [id(p) for p in params]:
        return None
    settings = {k: v for k, v in old.param_groups[0].items() if k != "params"}
    new = type(old)(params, lr=settings["lr"])
    new.param_groups[0].update(settings)
    for p in params:
        if p in old.state:
            new.state[p] = old.state[p]
    rebuilt = torch.optim.lr_scheduler.LambdaLR(new, scheduler.lr_lambdas[0])
    rebuilt.load_state_dict(scheduler.state_dict())
    new.param_groups[0].update(lr=settings["lr"], initial_lr=settings["initial_lr"])
    forget_optimizer(acc, optimizer)
    return acc.prepare_optimizer(new), rebuilt
