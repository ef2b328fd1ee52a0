"""Judging measurements under any setting: headroom, risks, the recommendation and the gate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ppml_torch.calibration.report import CalibrationError, CalibrationReport
from ppml_torch.calibration.stats import ModuleStats, analyse, limits
from ppml_torch.runners.config import ConfigError, fixed_point_product_limit, fixed_point_range


def _report(*modules: ModuleStats, **kw) -> CalibrationReport:
    args = dict(
        source="Toy",
        route="graph",
        field="FM64",
        fraction_bits=18,
        protocol="SEMI2K",
        runtime={"fxp_exp_mode": "EXP_PADE"},
        samples="float32[1]",
        inputs=ModuleStats("(inputs)"),
        modules=list(modules),
    )
    args.update(kw)
    return CalibrationReport(**args)


def _linear(product: float, path: str = "fc") -> ModuleStats:
    st = ModuleStats(path, "Linear", equations=1)
    st.add_tensor(analyse(np.array([product, 1.0])), "dot_general", product=True)
    return st


def _unfixable() -> ModuleStats:
    """A product of 2**99 (FM128 with at most 12 fraction bits) next to weights of 1e-5 (at
    least 22 fraction bits): no setting the rule accepts holds both."""
    st = _linear(2.0**99)
    st.add_tensor(analyse(np.full(10, 1e-5)), "weight", product=False)
    return st


def test_limits_are_fixed_point_range_and_the_encoding_clamp():
    product, value, res = limits("FM64", 18)
    assert (value, res) == fixed_point_range("FM64", 18)
    assert product == fixed_point_product_limit("FM64", 18) == 2.0 ** (64 - 2 - 36)
    assert value == 2.0 ** (64 - 2 - 18) == pytest.approx(1.759e13, rel=1e-3)  # issue 10's clamp
    assert limits("FM128", 26)[0] == 2.0 ** (128 - 2 - 52)


def test_headroom_is_log2_of_limit_over_max():
    st = _linear(2.0**20)
    assert CalibrationReport.headroom(st, "FM64", 18) == pytest.approx(26 - 20)
    assert CalibrationReport.headroom(st, "FM64", 20) == pytest.approx(22 - 20)
    assert CalibrationReport.headroom(ModuleStats("x"), "FM64", 18) == math.inf


@pytest.mark.parametrize(
    ("product", "risk", "blocked"),
    [(2.0**28, "overflow risk", True), (2.0**26, "low headroom", False), (2.0**24, None, False)],
)
def test_risk_levels_and_the_gate(product, risk, blocked):
    report = _report(_linear(product))
    assert [p.risk for p in report.problems()] == ([risk] if risk else [])
    if blocked:
        with pytest.raises(
            CalibrationError, match=r"^calibration of Toy predicts .* in fc \(Linear\)"
        ):
            report.check()
    else:
        report.check()
    if risk == "low headroom":
        with pytest.raises(CalibrationError, match="low headroom in fc"):
            report.check(strict=True)


def test_recommendation_prefers_the_setting_then_fm64_near_18_then_fm128():
    assert _report(_linear(2.0**20)).recommend() == ("FM64", 18)
    # 2**27 needs f <= 16 for 2 bits on FM64 (limit 2**(62-2f))
    assert _report(_linear(2.0**27)).recommend() == ("FM64", 16)
    # 2**40 needs f <= 10 on FM64, still above the rule's floor of 8 fraction bits
    assert _report(_linear(2.0**40)).recommend() == ("FM64", 10)
    # 2**46 fits no FM64 f >= 8 (2**(62-16) with 2 bits of headroom): FM128 f=26 has 2**75
    assert _report(_linear(2.0**46)).recommend() == ("FM128", 26)
    assert _report(_linear(2.0**80)).recommend() == ("FM128", 22)  # 127 - 2f - 80 >= 2
    assert _report(_linear(2.0**99)).recommend() == ("FM128", 12)  # 126 - 2f - 99 >= 2
    assert _report(_unfixable()).recommend() is None


def test_fits_lists_the_fraction_bits_that_hold_a_module():
    report = _report(_linear(2.0**27))
    assert report.fits(report.modules[0]) == "FM64 8-16"  # the rule's 8..26, limited by 2**27
    assert report.fits(_unfixable()) == "none"


def test_precision_loss_depends_on_the_fraction_bits():
    st = ModuleStats("w", "Linear", equations=1)
    st.add_tensor(analyse(np.full(10, 1e-5)), "weight", product=False)
    report = _report(st)
    # rounding moves a value by 2**-f / sqrt(12) rms: 11% of 1e-5 at f=18, 0.7% at f=22
    assert [p.risk for p in report.problems("FM64", 18)] == ["precision loss"]
    assert [p.risk for p in report.problems("FM64", 21)] == ["precision loss"]
    assert report.problems("FM64", 22) == []
    assert report.recommend() == ("FM64", 22)


def test_analyse_counts_values_below_the_resolution_and_masks():
    t = analyse(np.array([1.0, 1e-7, -3.4e38, -np.inf, np.nan], np.float32))
    assert t.max_abs == 1.0 and t.saturated == 2 and t.nan == 1
    assert t.zeroed[18] == 1 and t.zeroed[24] == 0  # 1e-7 < 2**-18, > 2**-24
    # 1e-7 is lost, but it does not matter next to the rounding of 1.0
    assert t.rel_error[18] == pytest.approx(math.sqrt(1e-14 + 2.0**-36 / 12), rel=1e-3)
    assert t.smallest == 1.0


def test_a_bad_setting_is_a_config_error():
    with pytest.raises(ConfigError, match=r"use an integer in 8\.\.26"):
        _report(_linear(1.0)).check(fraction_bits=40)
    with pytest.raises(ConfigError, match="unknown field"):
        _report(_linear(1.0)).describe(field="FM32")


def test_print_gives_the_table():
    """``print(report)`` prints the table, not a dataclass repr (issue 19)."""
    import torch

    import ppml_torch

    report = ppml_torch.calibrate(torch.nn.Linear(3, 2), torch.ones(4, 3))
    assert str(report) == report.describe()
    assert str(report).splitlines()[0].startswith("calibration of ")
