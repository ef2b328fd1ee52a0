"""ppml_torch/train/sentinel.py: the epoch program's overflow sentinel (the second line of
defence, behind the range check): values real numbers cannot give stop ``fit`` after the
epoch, with one bit revealed to the label owner."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn

import ppml_torch
from ppml_torch.runners.plan import session_plan
from ppml_torch.train import TrainingOverflowError
from ppml_torch.train.optim import MpcAdamWarning
from ppml_torch.train.sentinel import LOSS_SLACK, Sentinel, for_fit
from tests.sessions import get_session
from tests.train.toy import diabetes, diabetes_mlp, diabetes_split

PROTOCOLS = ["SEMI2K", "ABY3"]


def test_bounds_come_from_the_field():
    s = Sentinel.of("FM64", 18, 600, nn.MSELoss(), check_loss=True)
    assert s.loss_bound == 2.0**26  # the product limit, 6.71e7
    assert s.bound == 600 * 2.0**26 and s.nonnegative
    assert sorted([*s.plus, *s.minus]) == list(range(600))  # every element, one sign each
    big = Sentinel.of("FM64", 18, 10**6, nn.MSELoss(), check_loss=True)
    assert big.bound == 2.0**44 / 4  # a sum that large could wrap itself
    assert not Sentinel.of("FM64", 18, 10, lambda o, t: o.sum(), check_loss=True).nonnegative
    neg_weight = nn.CrossEntropyLoss(weight=torch.tensor([1.0, -1.0]))
    assert not Sentinel.of("FM64", 18, 10, neg_weight, check_loss=True).nonnegative


@pytest.mark.parametrize(
    ("losses", "checks", "weights", "probe", "fires"),
    [
        ([0.5, 0.25], [3.0, -4.0], [1.0, 2.0], 0.2, False),  # a healthy epoch
        ([0.5, -2.0 * LOSS_SLACK], [3.0, -4.0], [1.0, 2.0], 0.2, True),  # an MSE below zero
        ([0.5, -0.5 * LOSS_SLACK], [3.0, -4.0], [1.0, 2.0], 0.2, False),  # rounding noise
        ([0.5, 2.0**27], [3.0, -4.0], [1.0, 2.0], 0.2, True),  # past the product limit
        ([0.5, 0.25], [3.0, -1e13], [1.0, 2.0], 0.2, True),  # a wrapped gradient
        ([0.5, 0.25], [3.0, -4.0], [1e13, 2.0], 0.2, True),  # wrapped weights
        ([0.5, 0.25], [3.0, -4.0], [1.0, 2.0], -3.0, True),  # the probe's loss below zero
    ],
)
def test_flag(losses, checks, weights, probe, fires):
    s = Sentinel.of("FM64", 18, 2, nn.MSELoss(), check_loss=True)
    got = s.flag(
        jnp.asarray(losses), jnp.asarray(checks), {"w": jnp.asarray(weights)}, jnp.asarray(probe)
    )
    assert bool(got) == fires


def test_modes():
    """True: every step's loss for MSE and BCE (cheap), the epoch's probe for others; the
    steps' losses are checked whenever they are revealed anyway; plaintext: none."""
    spu = session_plan(get_session("spu", "SEMI2K", "FM64"))
    struct = {"w": jax_struct((3, 2))}
    assert for_fit(True, spu, struct, nn.MSELoss(), False).check_loss
    assert not for_fit(True, spu, struct, nn.CrossEntropyLoss(), False).check_loss
    assert for_fit(True, spu, struct, nn.CrossEntropyLoss(), True).check_loss
    assert for_fit("steps", spu, struct, nn.CrossEntropyLoss(), False).check_loss
    assert not for_fit("epoch", spu, struct, nn.MSELoss(), False).check_loss
    assert for_fit(False, spu, struct, nn.MSELoss(), False) is None
    assert for_fit(True, session_plan("cpu"), struct, nn.MSELoss(), False) is None


def jax_struct(shape):
    import jax

    return jax.ShapeDtypeStruct(shape, np.float32)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_issue_19_raw_targets_are_stopped_by_the_sentinel_when_the_range_check_is_off(protocol):
    """With the range check off, issue 19's run (raw diabetes targets, Adam) stops after
    epoch 1 instead of returning weights with a test MSE of 1e15-1e27: one bit, revealed to
    every party (each holds labels), the module and the optimizer untouched.  Catches a
    sentinel that checks nothing (planted: ``flag`` returning False: fit returns weights as
    large as 1.5e7)."""
    x, y, *_ = diabetes("raw")
    s = get_session("spu", protocol, "FM64")
    m = diabetes_mlp()
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    start = len(s.record)
    with pytest.warns(MpcAdamWarning), pytest.raises(TrainingOverflowError) as info:
        ppml_torch.fit(
            m, nn.MSELoss(), opt, diabetes_split(x, y), session=s, epochs=3, batch_size=32,
            progress=False, range_check="off",
        )  # fmt: skip
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("epoch 1 overflowed under MPC (FM64 with 18")
    assert "the loss below 0 or past 6.71e+07" in msg
    history = info.value.history
    assert [(e.epoch, e.loss) for e in history.epochs] == [(1, None)]
    reveals = [(e.party, len(e.handle.avals)) for e in s.record[start:] if e.kind == "reveal"]
    assert reveals == [(None, 1)]  # the one bit, nothing else
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert not opt.state  # nothing written back
