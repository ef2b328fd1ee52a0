"""Default tolerances from the measured per-op errors.

The expectations write the safety factor out (2) and the base tolerances as numbers: a test
that computed them from ``tolerances.SAFETY`` or the table itself would follow a changed
factor or base and never fail."""

from __future__ import annotations

import pytest

from ppml_torch.converters.fx import registry
from ppml_torch.equivalence import tolerances
from ppml_torch.equivalence.tolerances import TOLERANCES, Tolerance
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
    assert tol == TOLERANCES[("SEMI2K", "FM64")] == Tolerance(atol=2e-4, rtol=1e-3)
    assert how == "base 0.0002"


def test_derived_tolerance_adds_measured_errors():
    """atol = 2e-4 + 2 * (tanh's error + sigmoid's * sqrt(4)).  Catches ``SAFETY`` changed
    (2 -> 1 halves the added term) and the sqrt-of-uses rule changed."""
    tanh = tolerances.op_error("ABY3", "FM64", "aten.tanh.default")
    sig = tolerances.op_error("ABY3", "FM64", "aten.sigmoid.default")
    tol, how = tolerances.derive(
        "ABY3", "FM64", {"aten.tanh.default": 1, "aten.sigmoid.default": 4}
    )
    expected = 2e-4 + 2.0 * (tanh + sig * 2.0)
    assert tol.atol == pytest.approx(expected, rel=0.05)
    assert tol.atol > 2e-4 + 1.5 * (tanh + sig * 2.0)  # not within rounding of a smaller factor
    assert "sigmoidx4" in how and "tanh" in how and how.startswith("base 0.0002 + 2*(")


def test_unmeasured_op_counts_with_the_largest_measured_error():
    worst = max(r["out"] for r in tolerances.op_errors()["SEMI2K:FM64"].values())
    tol, _ = tolerances.derive("SEMI2K", "FM64", {"aten.div.Tensor_mode": 1})
    assert tol.atol == pytest.approx(2e-4 + 2.0 * worst, rel=0.05)


def test_plaintext():
    assert tolerances.derive(None, None, {"aten.exp.default": 3})[0] == tolerances.PLAINTEXT


def test_gradient_tolerance_is_also_relative():
    ops = {"aten.tanh.default": 1}
    out, _ = tolerances.derive("SEMI2K", "FM64", ops)
    grad, how = tolerances.derive("SEMI2K", "FM64", ops, "grad")
    g = tolerances.op_error("SEMI2K", "FM64", "aten.tanh.default", "grad")
    assert out.rtol == 1e-3
    assert grad.rtol == pytest.approx(1e-3 + 2.0 * g, rel=0.05)
    assert "rtol" in how
