"""ppml_torch/train/outputs.py: what each epoch reveals and to whom; the loss on plaintext
sessions always, per step with ``log_every`` (under MPC only when opted in)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import ppml_torch
from ppml_torch.testing import assert_close
from ppml_torch.train import FitError, TrainingOverflowError
from ppml_torch.train.optim import MpcAdamWarning
from tests.sessions import get_session
from tests.train.toy import diabetes, diabetes_mlp, diabetes_split, split, tiny_data, tiny_mlp


def _torch_steps(epochs: int) -> list[float]:
    """Every step's loss of the torch loop fit mirrors (batches of 8, 8 and 4, SGD 0.2)."""
    x, y = (torch.as_tensor(a) for a in tiny_data(n=20))
    m = tiny_mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.2)
    out = []
    for _ in range(epochs):
        for a in range(0, 20, 8):
            opt.zero_grad()
            loss = nn.MSELoss()(m(x[a : a + 8]), y[a : a + 8])
            loss.backward()
            opt.step()
            out.append(loss.item())
    return out


def _fit(session, **kw):
    x, y = tiny_data(n=20)
    m = tiny_mlp()
    return ppml_torch.fit(
        m, nn.MSELoss(), torch.optim.SGD(m.parameters(), lr=0.2), split(x, y), session=session,
        epochs=2, batch_size=8, progress=False, **kw,
    )  # fmt: skip


def test_plaintext_records_the_loss_and_log_every_the_steps():
    """cpu: the epoch losses without asking (nothing is secret), and with ``log_every=2``
    steps 2 of each epoch (3 steps: 8, 8, 4 rows), numbered over the whole fit.  Catches
    losses picked from the wrong steps (planted: ``losses[::log_every]``: steps 1 and 3)."""
    ref = _torch_steps(2)
    _, history = _fit("cpu", log_every=2)
    assert all(isinstance(v, float) for v in history.loss)
    assert [(s.epoch, s.step) for s in history.steps] == [(1, 2), (2, 5)]
    assert_close(np.array([s.loss for s in history.steps]), np.array([ref[1], ref[4]]))
    _, history = _fit("cpu", log_every=1)
    assert [s.step for s in history.steps] == [1, 2, 3, 4, 5, 6]
    assert_close(np.array([s.loss for s in history.steps]), np.array(ref))


def test_per_step_losses_under_mpc_are_an_opt_in_disclosure():
    s = get_session("spu", "SEMI2K", "FM64")
    start = len(s.record)
    with pytest.raises(FitError, match="log_every=1 under MPC reveals the loss of one step in 1"):
        _fit(s, log_every=1)
    assert s.record[start:] == []
    _, history = _fit(s, log_every=1, reveal_loss=True)
    assert_close(
        np.array([x.loss for x in history.steps]), np.array(_torch_steps(2)), protocol="SEMI2K"
    )
    reveals = [(e.party, len(e.handle.avals)) for e in s.record[start:] if e.kind == "reveal"]
    # per epoch: the sentinel's bit, the mean loss, the 3 steps' losses, all to bob (labels)
    assert reveals == [("bob", 1)] * 6 + [("alice", 4)]


def test_an_overflow_reveals_that_bit_and_nothing_else_of_the_epoch():
    """The bit is revealed first; when it is set, the loss the user asked for is not."""
    x, y, *_ = diabetes("raw")
    s = get_session("spu", "SEMI2K", "FM64")
    m = diabetes_mlp()
    start = len(s.record)
    with pytest.warns(MpcAdamWarning), pytest.raises(TrainingOverflowError):
        ppml_torch.fit(
            m, nn.MSELoss(), torch.optim.Adam(m.parameters(), lr=0.01), diabetes_split(x, y),
            session=s, epochs=2, batch_size=32, progress=False, range_check="off",
            reveal_loss="alice",
        )  # fmt: skip
    reveals = [e.party for e in s.record[start:] if e.kind == "reveal"]
    assert reveals == [None]  # the bit (both hold labels); alice's loss not revealed
