"""check_equivalence: bad input before any session, passes when equivalent, fails naming the element."""

from __future__ import annotations

import pytest
import torch

import ppml_torch
from ppml_torch.equivalence import EquivalenceError
from ppml_torch.equivalence.sessions import session_for
from ppml_torch.equivalence.tolerances import TOLERANCES
from ppml_torch.runners import ConfigError
from tests.equivalence.toy import gates, mlp, overflowing


def _no_session(run):
    pytest.fail(f"a session was started for {run} although the arguments are bad")


X = torch.rand(5, 6, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"runs": ["cpu", "spu:FOO"]}, "unknown protocol 'FOO'"),
        ({"runs": ["gpu"]}, "unknown backend 'gpu'"),
        ({"tolerance": 0.0}, "must be a positive finite number"),
        ({"tolerance": -1e-3}, "must be a positive finite number"),
        ({"tolerance": float("nan")}, "must be a positive finite number"),
        ({"tolerance": {"spu:ABY3": 1e-3}, "runs": ["cpu"]}, "not among the runs"),
        ({"routes": ["graph", "onnx"]}, "routes="),
    ],
)
def test_bad_arguments_fail_in_one_line_before_any_session(kwargs, match):
    with pytest.raises((EquivalenceError, ConfigError), match=match) as info:
        ppml_torch.check_equivalence(mlp(), X, sessions=_no_session, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "inputs,match",
    [
        (torch.rand(5, 7), "do not fit Sequential: RuntimeError: mat1 and mat2 shapes"),
        (torch.rand(5, 6, dtype=torch.float64), "float64"),
        ([torch.rand(5, 6), 3], "example input #1 of Sequential is a int"),
        ("x", "must be a tensor or a tuple of tensors"),
    ],
)
def test_inputs_that_do_not_fit_fail_in_one_line(inputs, match):
    with pytest.raises(EquivalenceError, match=match) as info:
        ppml_torch.check_equivalence(mlp(), inputs, runs=["spu:SEMI2K"], sessions=_no_session)
    assert "\n" not in str(info.value)


def test_plaintext_rows_and_table():
    report = ppml_torch.check_equivalence(mlp(), X, runs=["torch", "cpu"], grads=True)
    assert report.passed, report
    assert [(r.route, r.run, r.status) for r in report.rows] == [
        ("-", "torch", "pass"),
        ("graph", "cpu", "pass"),
        ("flax", "cpu", "pass"),
    ]
    for route in ("graph", "flax"):
        row = report.row(route, "cpu")
        assert row.out_err < 1e-6 and row.grad_err < 1e-6
    text = str(report)
    assert text.splitlines()[0] == "Sequential on (float32[5, 6])"
    assert "grad err" in text and text.endswith("all rows pass")


def test_route_that_does_not_apply_gets_one_row_and_the_others_run():
    report = ppml_torch.check_equivalence(gates(), X, runs=["cpu"])
    flax = [r for r in report.rows if r.route == "flax"]
    assert len(flax) == 1 and flax[0].status == "n/a" and flax[0].run == "*"
    assert flax[0].detail.startswith("not applicable: to_flax: no Flax weight map") or (
        "to_flax" in flax[0].detail
    )
    assert "\n" not in flax[0].detail
    assert report.row("graph", "cpu").status == "pass" and report.passed


class _Atan2(torch.nn.Module):
    def forward(self, x):
        return torch.atan2(x, x + 1)


def test_conversion_refusal_is_a_row_not_an_exception():
    report = ppml_torch.check_equivalence(_Atan2(), torch.rand(1, 2, 8), runs=["cpu"])
    row = report.rows[0]
    assert (row.route, row.status) == ("graph", "error")
    assert "aten.atan2" in row.detail and not report.passed


@pytest.mark.parametrize("rows", [5, 64])
def test_gates_pass_under_mpc_with_derived_tolerance_and_grads(rows):
    """sigmoid/tanh gates exceed the linear-op table (2e-4) yet are equivalent; 64 rows sum
    tanh's derivative error into the weight gradients (1.7% off)."""
    x = torch.randn(rows, 6, generator=torch.Generator().manual_seed(3)) * 2
    report = ppml_torch.check_equivalence(
        gates(), x, runs=["spu:SEMI2K", "spu:ABY3"], routes=["graph"], grads=True,
        sessions=session_for,
    )  # fmt: skip
    assert report.passed, report
    for run in ("spu:SEMI2K:FM64", "spu:ABY3:FM64"):
        row = report.row("graph", run)
        base = TOLERANCES[(run.split(":")[1], "FM64")].atol
        assert row.tol.atol > base  # tanh and sigmoid add their measured error
        assert "tanh" in row.tol_how and "sigmoid" in row.tol_how
        assert 0 < row.out_err < row.tol.atol and row.grad_err > 0  # grads: rtol of the largest
        assert row.send_bytes > 0 and row.run_s is not None


def test_values_outside_the_field_fail_naming_output_and_element():
    report = ppml_torch.check_equivalence(
        overflowing(), X, runs=["cpu", "spu:SEMI2K"], routes=["graph"], sessions=session_for
    )
    assert report.row("graph", "cpu").status == "pass"  # float32 holds 1e9
    row = report.row("graph", "spu:SEMI2K:FM64")
    assert row.status == "FAIL" and not report.passed
    m = row.mismatch
    assert m.what == "output" and m.path == "" and len(m.index) == 2
    assert abs(m.expected) > 1e8 and abs(m.got - m.expected) > 1e3
    assert f"output{list(m.index)}: expected" in str(report) and "1 row(s) failed" in str(report)


def test_dict_outputs_are_named_by_path_and_given_tolerance_is_used():
    report = ppml_torch.check_equivalence(
        gates(), X, runs=["spu:SEMI2K"], routes=["graph"], tolerance=1e-7, sessions=session_for
    )
    row = report.row("graph", "spu:SEMI2K:FM64")
    assert row.status == "FAIL" and row.tol.atol == 1e-7 and row.tol_how == "given"
    assert row.mismatch.path in ("['gate']", "['lin']")
    assert row.mismatch.describe().startswith(f"output{row.mismatch.path}[")
