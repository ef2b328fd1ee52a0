"""ppml_torch/train/schedules.py: every mapped torch LR scheduler, stepped per epoch or per
batch, trains as the torch loop that steps it (weights, learning rates, scheduler state)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import ppml_torch
from ppml_torch.testing import Tolerance, assert_close
from ppml_torch.train.schedules import SCHEDULERS, schedule_of
from tests.train.toy import split, tiny_data, tiny_mlp

EPOCHS = 4
STEPS = 3  # batches of 8, 8 and 4
TIGHT = Tolerance(atol=2e-6, rtol=2e-5)

KINDS = {
    "StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, 2, gamma=0.3),
    "MultiStepLR": lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [1, 5], gamma=0.5),
    "ExponentialLR": lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.7),
    "CosineAnnealingLR": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 5, 0.01),
    "LinearLR": lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.2, 1.0, 6),
    "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.3, total_steps=12),
}


def test_the_table_covers_the_documented_schedulers():
    assert set(KINDS) == set(SCHEDULERS)


# OneCycleLR counts batches (total_steps=12: 4 epochs of 3 batches): stepped per batch only
CASES = [(k, e) for k in KINDS for e in ("epoch", "batch") if (k, e) != ("OneCycleLR", "epoch")]


@pytest.mark.parametrize(("kind", "step_every"), CASES)
@pytest.mark.parametrize("opt_kind", ["SGD", "Adam"])
def test_scheduled_fit_matches_the_torch_loop(kind, step_every, opt_kind):
    """Catches a schedule read at the wrong step (planted: the per-epoch values indexed by
    the step fail every case stepped per epoch) and OneCycleLR's cycled momentum or beta1
    left out (planted: the ``momentum`` tables dropped: SGD and Adam both fail)."""

    def build(m):
        if opt_kind == "SGD":
            o = torch.optim.SGD(m.parameters(), lr=0.2, momentum=0.8)
        else:
            o = torch.optim.Adam(m.parameters(), lr=0.05)
        return o, KINDS[kind](o)

    x, y = tiny_data(n=20)
    m = tiny_mlp()
    opt, sched = build(m)
    ppml_torch.fit(
        m, nn.MSELoss(), opt, split(x, y), epochs=EPOCHS, batch_size=8, progress=False,
        scheduler=sched, scheduler_step=step_every,
    )  # fmt: skip
    ref = tiny_mlp()
    ref_opt, ref_sched = build(ref)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(EPOCHS):
        for a in range(0, 20, 8):
            ref_opt.zero_grad()
            nn.MSELoss()(ref(xt[a : a + 8]), yt[a : a + 8]).backward()
            ref_opt.step()
            if step_every == "batch":
                ref_sched.step()
        if step_every == "epoch":
            ref_sched.step()
    assert_close(
        {k: v.numpy() for k, v in m.state_dict().items()},
        {k: v.detach().numpy() for k, v in ref.state_dict().items()},
        tol=TIGHT, what=f"{kind} per {step_every}",
    )  # fmt: skip
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref_opt.param_groups]
    assert sched.state_dict() == ref_sched.state_dict()


def test_schedule_values_per_step():
    """The per-step table: per epoch, each step of an epoch has that epoch's learning rate."""
    m = tiny_mlp()
    o = torch.optim.SGD(m.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(o, 1, gamma=0.5)
    s = schedule_of(sched, o, step_every="epoch", steps_per_epoch=2, epochs=3)
    np.testing.assert_allclose(s.lr[0], [1.0, 1.0, 0.5, 0.5, 0.25, 0.25])
    assert s.scheduler_steps == 3 and s.momentum == (None,)
    assert o.param_groups[0]["lr"] == 1.0 and sched.last_epoch == 0  # the user's untouched
