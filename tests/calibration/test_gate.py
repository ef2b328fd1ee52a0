"""fit, predict and generate take a calibration and refuse a run it predicts will overflow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ppml_torch
from ppml_torch.calibration.report import CalibrationError
from ppml_torch.train import vertical


def _overflowing_mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    with torch.no_grad():
        m[0].weight.fill_(1e4)  # x @ w.T reaches 4e4 * x: products beyond FM64's 6.7e7
        m[2].weight.fill_(1e4)
    return m


def _data(x: np.ndarray) -> object:
    y = np.zeros((len(x), 1), np.float32)
    return vertical({"alice": (range(2), x[:, :2]), "bob": (range(2, 4), x[:, 2:])},
                    labels=("bob", y), weights_owner="alice")  # fmt: skip


def test_fit_and_predict_refuse_a_predicted_overflow_before_any_session_work():
    m = _overflowing_mlp()
    x = np.full((8, 4), 10.0, np.float32)
    report = ppml_torch.calibrate(m, (x,), field="FM64")
    assert report.problems()
    sgd = torch.optim.SGD(m.parameters(), lr=0.1)
    # a run spec: the session would be opened by fit; the gate comes first, so it never is
    with pytest.raises(CalibrationError) as e:
        ppml_torch.fit(m, torch.nn.MSELoss(), sgd, _data(x), session="spu:SEMI2K",
                       epochs=1, batch_size=4, calibration=report, progress=False)  # fmt: skip
    assert "\n" not in str(e.value)
    with pytest.raises(CalibrationError):
        ppml_torch.predict(m, x, session="spu:SEMI2K", calibration=report)
    # FM128 holds these products: the same report lets that run start (checked, not run here)
    report.check(field="FM128", fraction_bits=26)


def test_plaintext_runs_are_not_judged():
    m = _overflowing_mlp()
    x = np.full((8, 4), 10.0, np.float32)
    report = ppml_torch.calibrate(m, (x,), field="FM64")
    out = ppml_torch.predict(m, x, session="cpu", calibration=report)
    np.testing.assert_allclose(out, m(torch.as_tensor(x)).detach().numpy(), rtol=1e-5)


def test_generate_refuses_before_anything_is_shared():
    calls = []

    class Refuses:
        def check(self, field=None, fraction_bits=None, strict=False):
            calls.append((field, fraction_bits))
            raise CalibrationError("overflow risk in lm_head (test)")

    from ppml_torch.generation import random_gpt2

    model = random_gpt2(layers=1, width=16, heads=2, positions=16)
    with pytest.raises(CalibrationError, match="overflow risk"):
        ppml_torch.generate(model, [1, 2], 2, session="spu:ABY3", calibration=Refuses())
    assert calls == [("FM64", 18)]
