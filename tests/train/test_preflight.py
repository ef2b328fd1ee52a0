"""ppml_torch/train/preflight.py: under MPC, fit checks the WHOLE training step (forward,
loss, backward, optimizer update) for fixed-point range before any MPC work, and refuses a
step that would overflow in one line naming the value, where, and the fix.

Issue 19's case: sklearn diabetes, raw targets (up to 346), MSE, Adam lr 0.01, horizontal
split: on SEMI2K epoch 1's loss was -108181.77 and the test MSE 7.4e15, without a word
(Adam's s^2*v leaves SPU's sqrt range); with the targets standardised it trains.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import ppml_torch
from ppml_torch.train import TrainingRangeError
from ppml_torch.train.optim import MpcAdamWarning
from ppml_torch.train.preflight import ColumnBounds, bounds_of
from tests.sessions import get_session, record_error
from tests.train.toy import diabetes, diabetes_mlp, diabetes_split, split, tiny_data, tiny_mlp

PROTOCOLS = ["SEMI2K", "ABY3"]


def _fit_diabetes(session, targets="raw", feature_scale=1.0, **kw):
    x, y, *_ = diabetes(targets, feature_scale)
    m = diabetes_mlp()
    with pytest.warns(MpcAdamWarning):
        return m, ppml_torch.fit(
            m, nn.MSELoss(), torch.optim.Adam(m.parameters(), lr=0.01), diabetes_split(x, y),
            session=session, epochs=3, batch_size=32, progress=False, **kw,
        )  # fmt: skip


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_issue_19_raw_targets_are_refused_before_any_mpc_work(protocol):
    """Catches a check of the forward pass alone (calibrate(model) said "no risks" in issue
    19: the forward fits, Adam's second moment does not) and a check that runs after the
    shares are made (nothing may be put)."""
    s = get_session("spu", protocol, "FM64")
    start = len(s.record)
    m = diabetes_mlp()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(TrainingRangeError) as info:
        _fit_diabetes(s)
    msg = str(info.value)
    assert "\n" not in msg
    assert "on FM64 with 18 fraction bits (checked in plaintext on the first batch" in msg
    assert "Adam's step m/(sqrt(v)+eps) (its sqrt takes the second moment s^2*v)" in msg
    assert "sqrt's argument reaches 5.65e+06, beyond 1.31e+05" in msg
    assert "scale the targets (|y| up to 310) down" in msg  # not the features: they are small
    assert s.record[start:] == []  # nothing put, nothing run
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_features_scaled_by_1e6_are_refused_naming_the_gradient():
    """Issue 19's second case (the revealed MSE was -11705657 with calibration= passed): the
    backward pass's product through the first Linear leaves the product limit."""
    s = get_session("spu", "SEMI2K", "FM64")
    with pytest.raises(TrainingRangeError) as info:
        _fit_diabetes(s, feature_scale=1e6)
    msg = str(info.value)
    assert "the gradient through module 0 (Linear) (backward pass): overflow risk" in msg
    assert "scale the targets (|y| up to 310) or the features (|x| up to 1.55e+05) down" in msg


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_standardised_targets_train_within_0_05_test_mse_of_torch_eager(protocol):
    """The same run with standardised targets passes the check (on the owners' rows) and
    trains: test MSE (standardised units) within 0.05 of torch eager's."""
    x, y, xt, yt, _ = diabetes("standard")
    s = get_session("spu", protocol, "FM64")
    m, (_, history) = _fit_diabetes(s, targets="standard")
    assert history.range_check == "the owners' rows"
    ref = diabetes_mlp()
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    xt_, yt_ = torch.as_tensor(x), torch.as_tensor(y)  # alice's rows then bob's: x's order
    for _ in range(3):
        for a in range(0, len(x), 32):
            opt.zero_grad()
            nn.MSELoss()(ref(xt_[a : a + 32]), yt_[a : a + 32]).backward()
            opt.step()
    with torch.no_grad():
        mse = float(((m(torch.as_tensor(xt)) - torch.as_tensor(yt)) ** 2).mean())
        mse_ref = float(((ref(torch.as_tensor(xt)) - torch.as_tensor(yt)) ** 2).mean())
    record_error(f"diabetes standardised test MSE {protocol}", abs(mse - mse_ref))
    assert mse_ref < 0.7, mse_ref  # it learned something (the targets' variance is 1)
    assert abs(mse - mse_ref) <= 0.05, (mse, mse_ref)


def test_bounds_mode_sees_only_column_bounds_and_refuses_the_same():
    """``range_check="bounds"`` (what one process per party checks): a batch drawn inside the
    owners' power-of-two column bounds.  It refuses the raw targets and passes the
    standardised ones, as the check on the rows does."""
    s = get_session("spu", "SEMI2K", "FM64")
    with pytest.raises(TrainingRangeError, match="a batch drawn inside the owners' column"):
        _fit_diabetes(s, range_check="bounds")
    _, (_, history) = _fit_diabetes(s, targets="standard", range_check="bounds")
    assert history.range_check == "a batch inside the owners' announced column bounds"


def test_column_bounds_disclose_powers_of_two_and_signs_only():
    a = np.array([[0.3, -5.0, 0.0], [0.1, 2.0, 0.0]], np.float32)
    b = bounds_of(a)
    assert b == ColumnBounds(exponents=(-1, 3, None), negative=(False, True, False), integer=False)
    drawn = b.draw((1000, 3), np.float32, np.random.default_rng(0))
    assert drawn[:, 0].min() >= 0 and drawn[:, 0].max() <= 0.5
    assert drawn[:, 1].min() < -4 and drawn[:, 1].max() <= 8 and (drawn[:, 2] == 0).all()
    ids = bounds_of(np.array([[0], [9]], np.int64))
    assert ids.exponents == (4,) and ids.integer
    assert ids.draw((50, 1), np.int64, np.random.default_rng(0)).max() < 16


def test_a_setting_that_holds_is_named_after_it_is_checked():
    """SGD on targets of 2e4: the mean squared error's squares leave FM64's product limit; the
    refusal names FM128 only after checking that the step fits it, and FM128 then trains."""
    x, y = tiny_data(n=20)
    y = y * 2e4 + 1e4
    m = tiny_mlp()
    with pytest.raises(TrainingRangeError, match=r"or use field 'FM128' \(checked: this step"):
        ppml_torch.fit(
            m, nn.MSELoss(), torch.optim.SGD(m.parameters(), lr=1e-9), split(x, y),
            session=get_session("spu", "SEMI2K", "FM64"), epochs=1, batch_size=8,
            progress=False,
        )  # fmt: skip
    _, history = ppml_torch.fit(
        m, nn.MSELoss(), torch.optim.SGD(m.parameters(), lr=1e-9), split(x, y),
        session=get_session("spu", "SEMI2K", "FM128"), epochs=1, batch_size=8, progress=False,
    )  # fmt: skip
    assert history.range_check == "the owners' rows"


def test_plaintext_is_not_checked_and_off_turns_it_off():
    x, y = tiny_data()
    m = tiny_mlp()
    _, history = ppml_torch.fit(
        m, nn.MSELoss(), torch.optim.SGD(m.parameters(), lr=0.1), split(x, y),
        session="cpu", batch_size=8, progress=False,
    )  # fmt: skip
    assert history.range_check is None and "range check" not in history.stages
    _, history = ppml_torch.fit(
        m, nn.MSELoss(), torch.optim.SGD(m.parameters(), lr=0.1), split(x, y),
        session=get_session("spu", "SEMI2K", "FM64"), batch_size=8, progress=False,
        range_check="off",
    )  # fmt: skip
    assert history.range_check is None
