"""Default tolerances from the measured per-op errors."""

from __future__ import annotations

import math

import pytest

from ppml_torch.converters.fx import registry
from ppml_torch.equivalence import tolerances
from ppml_torch.equivalence.tolerances import TOLERANCES
from ppml_torch.runners.config import FIELDS, PROTOCOLS


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
@pytest.mark.parametrize("field", FIELDS)
def test_every_setting_is_measured_for_the_approximated_ops(protocol, field):
    rows = tolerances.op_errors()[f"{protocol}:{field}"]
    approx = {e.name for e in registry.load().values() if e.status == "approximate-under-MPC"}
    assert set(rows) <= approx
    for op in ("aten.exp.default", "aten.tanh.default", "aten._softmax.default",
               "aten.native_layer_norm.default", "aten.rsqrt.default", "aten.div.Tensor"):  # fmt: skip
        assert 0 < rows[op]["out"] < 0.1 and rows[op]["grad"] > 0


def test_linear_program_keeps_the_base_tolerance():
    tol, how = tolerances.derive("SEMI2K", "FM64", {})
    assert tol == TOLERANCES[("SEMI2K", "FM64")] and how == "base 0.0002"


def test_derived_tolerance_adds_measured_errors():
    tanh = tolerances.op_error("ABY3", "FM64", "aten.tanh.default")
    sig = tolerances.op_error("ABY3", "FM64", "aten.sigmoid.default")
    tol, how = tolerances.derive(
        "ABY3", "FM64", {"aten.tanh.default": 1, "aten.sigmoid.default": 4}
    )
    expected = 2e-4 + tolerances.SAFETY * (tanh + sig * math.sqrt(4))
    assert tol.atol == pytest.approx(expected, rel=0.05)
    assert "sigmoidx4" in how and "tanh" in how


def test_unmeasured_op_counts_with_the_largest_measured_error():
    worst = max(r["out"] for r in tolerances.op_errors()["SEMI2K:FM64"].values())
    tol, _ = tolerances.derive("SEMI2K", "FM64", {"aten.div.Tensor_mode": 1})
    assert tol.atol == pytest.approx(2e-4 + tolerances.SAFETY * worst, rel=0.05)


def test_plaintext():
    assert tolerances.derive(None, None, {"aten.exp.default": 3})[0] == tolerances.PLAINTEXT


def test_gradient_tolerance_is_also_relative():
    ops = {"aten.tanh.default": 1}
    out, _ = tolerances.derive("SEMI2K", "FM64", ops)
    grad, how = tolerances.derive("SEMI2K", "FM64", ops, "grad")
    g = tolerances.op_error("SEMI2K", "FM64", "aten.tanh.default", "grad")
    assert out.rtol == TOLERANCES[("SEMI2K", "FM64")].rtol
    assert grad.rtol == pytest.approx(1e-3 + tolerances.SAFETY * g, rel=0.05)
    assert "rtol" in how
