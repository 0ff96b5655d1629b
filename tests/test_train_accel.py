"""vid2vid.train.accel: the one place that reaches past Accelerate's public API. If an Accelerate upgrade breaks
it, these tests say so (and nothing else in the trainer should need a change)."""

import torch
from accelerate import Accelerator

from vid2vid.train.accel import forget_optimizer, inner_optimizer, retarget_optimizer


def _prepared(acc: Accelerator):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.5, 0.9))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    net, opt = acc.prepare(net, opt)
    for _ in range(3):  # some Adam state and schedule progress
        net(torch.randn(5, 3)).square().mean().backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    return net, opt, sched


def test_inner_optimizer_unwraps_a_prepared_optimizer():
    acc = Accelerator(cpu=True)
    _, opt, _ = _prepared(acc)
    assert type(inner_optimizer(opt)) is torch.optim.Adam
    plain = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert inner_optimizer(plain) is plain


def test_retarget_keeps_state_rate_and_schedule_and_forgets_the_old_optimizer():
    acc = Accelerator(cpu=True)
    net, opt, sched = _prepared(acc)
    old = inner_optimizer(opt)
    assert any(o is opt for o in acc._optimizers)
    keep = list(net[1].parameters())
    lr_before, last_epoch = old.param_groups[0]["lr"], sched.last_epoch
    new_opt, new_sched = retarget_optimizer(acc, opt, sched, keep)
    inner = inner_optimizer(new_opt)
    assert [id(p) for p in inner.param_groups[0]["params"]] == [id(p) for p in keep]
    assert inner.param_groups[0]["lr"] == lr_before and inner.param_groups[0]["betas"] == (0.5, 0.9)
    assert all(torch.equal(inner.state[p]["exp_avg"], old.state[p]["exp_avg"]) for p in keep)
    assert new_sched.last_epoch == last_epoch and new_sched.optimizer is inner
    new_sched.step()
    assert inner.param_groups[0]["lr"] == 1e-2 / (1 + last_epoch + 1)  # the schedule goes on
    assert not any(o is opt for o in acc._optimizers) and any(o is new_opt for o in acc._optimizers)


def test_retarget_to_the_same_parameters_is_nothing_and_forget_is_idempotent():
    acc = Accelerator(cpu=True)
    net, opt, sched = _prepared(acc)
    assert retarget_optimizer(acc, opt, sched, list(net.parameters())) is None
    forget_optimizer(acc, opt)
    forget_optimizer(acc, opt)
    assert not any(o is opt for o in acc._optimizers)
