"""ppml_torch/train/checks.py (and the data, loss and optimizer mappings ``fit`` runs first):
every bad argument of ``fit`` is one line, before any session work."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import ppml_torch
from ppml_torch.train import horizontal, vertical
from ppml_torch.train.checks import FitError, loss_receiver
from tests.train.toy import session_of, split, tiny_data, tiny_mlp


def _sorted_loss(o, t):  # torch.sort has no lowering: the converter refuses the user's loss
    return (torch.sort(o, dim=0).values - t).abs().mean()


def _bad_cases():
    x, y = tiny_data()
    m = tiny_mlp()
    sgd = torch.optim.SGD(m.parameters(), lr=0.1)
    ok = split(x, y)
    other = torch.optim.SGD(tiny_mlp().parameters(), lr=0.1)
    return {
        "labels owned by no party": (m, nn.MSELoss(), sgd, split(x, y, labels=False), {}),
        "batch larger than data": (m, nn.MSELoss(), sgd, ok, {"batch_size": 21}),
        "optimizer not mapped": (m, nn.MSELoss(), torch.optim.Rprop(m.parameters()), ok, {}),
        "loss not a scalar": (m, nn.MSELoss(reduction="none"), sgd, ok, {}),
        "loss not mapped": (m, _sorted_loss, sgd, ok, {}),
        "loss not a loss": (m, "mse", sgd, ok, {}),
        "optimizer params not the module's": (m, nn.MSELoss(), other, ok, {}),
        "labels shape (n,) vs output (n, 1)": (m, nn.MSELoss(), sgd, split(x, y[:, 0]), {}),
        "party not in session": (
            m,
            nn.MSELoss(),
            sgd,
            vertical({"alice": (range(6), x)}, labels=("dave", y), weights_owner="alice"),
            {},
        ),  # fmt: skip
        "rows differ between parties": (
            m,
            nn.MSELoss(),
            sgd,
            vertical(
                {"alice": (range(3), x[:, :3]), "bob": (range(3, 6), x[:-1, 3:])},
                labels=("bob", y),
                weights_owner="alice",
            ),
            {},
        ),  # fmt: skip
        "block width differs from its columns": (
            m,
            nn.MSELoss(),
            sgd,
            vertical(
                {"alice": (range(2), x[:, :3]), "bob": (range(2, 6), x[:, 2:])},
                labels=("bob", y),
                weights_owner="alice",
            ),
            {},
        ),  # fmt: skip
        "unknown route": (m, nn.MSELoss(), sgd, ok, {"route": "onnx"}),
        "torch is no session": (m, nn.MSELoss(), sgd, ok, {"session": "torch"}),
        "bad epochs": (m, nn.MSELoss(), sgd, ok, {"epochs": 0}),
        "epochs a bool": (m, nn.MSELoss(), sgd, ok, {"epochs": True}),
        "seed not an int": (m, nn.MSELoss(), sgd, ok, {"seed": "abc", "shuffle": True}),
        "negative seed": (m, nn.MSELoss(), sgd, ok, {"seed": -1, "shuffle": True}),
        "calibration not a report": (m, nn.MSELoss(), sgd, ok, {"calibration": "yes"}),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_before_any_session_work(case):
    from ppml_torch.errors import PpmlError

    module, loss, opt, data, kw = BAD[case]
    s = session_of("spu", "SEMI2K")
    n_record, n_reports = len(s.record), len(s.reports)
    kw = {"session": s, "progress": False, "batch_size": 8, **kw}
    with pytest.raises(PpmlError) as info:
        ppml_torch.fit(module, loss, opt, data, **kw)
    msg = str(info.value)
    assert msg and "\n" not in msg, msg
    assert (len(s.record), len(s.reports)) == (n_record, n_reports)  # nothing put, nothing run


def test_bad_run_spec_opens_nothing(monkeypatch):
    from ppml_torch.errors import PpmlError
    from ppml_torch.runners.runspec import RunSpec

    def no_open(self, **kw):
        raise AssertionError("a session was opened")

    monkeypatch.setattr(RunSpec, "open", no_open)
    x, y = tiny_data()
    m = tiny_mlp()
    with pytest.raises(PpmlError, match="batch_size 99"):
        ppml_torch.fit(
            m, nn.MSELoss(), torch.optim.SGD(m.parameters(), lr=0.1), split(x, y),
            session="spu:ABY3", batch_size=99, progress=False,
        )  # fmt: skip


def test_who_receives_the_loss():
    """``reveal_loss=True``: the label owner (vertical), every party (horizontal: they all hold
    labels); a party's name: that party; off: not revealed."""
    x, y = tiny_data()
    parties = ("alice", "bob")
    both = horizontal({"alice": (x[:10], y[:10]), "bob": (x[10:], y[10:])}, weights_owner="alice")
    assert loss_receiver(True, split(x, y), parties) == "bob"
    assert loss_receiver(True, both, parties) is None
    assert loss_receiver("alice", split(x, y), parties) == "alice"
    assert loss_receiver(False, split(x, y), parties) is False
    with pytest.raises(FitError, match="reveal_loss='carol' is not a party"):
        loss_receiver("carol", split(x, y), parties)
