"""ppml_torch/train/profile_step.py: ``fit(..., profile=True)`` records one training step's
MPC cost per module (forward and backward, the loss, the optimizer) in ``History``, and
trains exactly as without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import ppml_torch
from ppml_torch.apps.homework.data import load_data
from ppml_torch.testing import assert_close
from ppml_torch.train import vertical
from ppml_torch.train.checks import FitError
from tests.sessions import get_session, record_error
from tests.train.toy import split, tiny_data, tiny_mlp


def _homework():
    """The homework's MLP [30, 15, 8, 1] on its breast-cancer training rows, split by columns
    as the homework splits them (alice 0-14 and the weights, bob 15-29 and the labels); SGD
    at lr 0.1 (the homework's 0.01 x 10: one extra step, the planted bug of the last check,
    then moves the weights 10x the fixed-point tolerance)."""
    d = load_data()
    x = np.asarray(d.x_train, np.float32)
    y = np.asarray(d.y_train, np.float32).reshape(-1, 1)
    data = vertical(
        {"alice": (range(0, 15), x[:, :15]), "bob": (range(15, 30), x[:, 15:])},
        labels=("bob", y),
        weights_owner="alice",
    )
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(30, 15), nn.ReLU(), nn.Linear(15, 8), nn.ReLU(), nn.Linear(8, 1))
    return m, data


def _fit(profile: bool):
    m, data = _homework()
    return ppml_torch.fit(
        m, nn.MSELoss(), torch.optim.SGD(m.parameters(), lr=0.1), data,
        session=get_session("spu", "SEMI2K", "FM64"), epochs=1, batch_size=10,
        progress=False, profile=profile,
    )  # fmt: skip


def test_the_homework_step_per_module_under_semi2k():
    """Every module of the MLP has a row with forward and backward bytes, and so does the
    loss; the optimizer's update is its own row; the parts add up to the whole step.  Catches
    a profile of the forward pass only (no backward column), a step without the loss's or the
    optimizer's marks (their work filed under ``(outside modules)``), and a profile left out
    of the history."""
    trained, history = _fit(profile=True)
    rep = history.profile
    assert rep is not None and rep.grads and rep.route == "graph"
    assert rep.session == "spu:SEMI2K:FM64" and rep.total_bytes > 0
    rows = {r.path: r for r in rep.rows}
    for path in ("0", "1", "2", "3", "4"):  # Linear, ReLU, Linear, ReLU, Linear
        assert rows[path].forward.bytes > 0 and rows[path].backward.bytes > 0, path
    assert rows["0"].kind == "Linear" and rows["1"].kind == "ReLU"
    assert rows["(loss)"].forward.bytes > 0 and rows["(loss)"].backward.bytes > 0
    assert rows["(optimizer)"].forward.bytes > 0
    assert rows["(outside modules)"].bytes == 0  # every costly equation has its row
    b, s = rep.agreement
    assert 0.9 < b < 1.1 and 0.9 < s < 1.2, (b, s)
    assert "(loss)" in str(rep) and "profile" in history.stages
    # the profiled step's output is freed: the training starts from the same initial state
    # (planted: starting from the profiled step's state put a weight 7.7e-3 off; seen: 4.2e-5)
    plain, _ = _fit(profile=False)
    got = {k: v.detach().numpy() for k, v in trained.state_dict().items()}
    want = {k: v.detach().numpy() for k, v in plain.state_dict().items()}
    err = assert_close(got, want, protocol="SEMI2K", what="weights with and without profile")
    record_error("fit profile=True vs not SEMI2K", err)


@pytest.mark.parametrize(
    "session, profile, message",
    [
        ("cpu", True, "a plaintext session has no MPC cost"),
        ("spu:SEMI2K", "yes", "profile must be True or False"),
    ],
)
def test_profile_refused_in_one_line_before_any_work(session, profile, message):
    """A plaintext profile (nothing to count) and a non-bool are refused before conversion."""
    x, y = tiny_data()
    m = tiny_mlp()
    with pytest.raises(FitError, match=message) as e:
        ppml_torch.fit(
            m, nn.MSELoss(), torch.optim.SGD(m.parameters(), lr=0.1), split(x, y),
            session=session, batch_size=10, progress=False, profile=profile,
        )  # fmt: skip
    assert "\n" not in str(e.value)
