"""Bad configuration fails in one line, naming the fix, before anything starts."""

from __future__ import annotations

import importlib.util
import re

import jax.numpy as jnp
import numpy as np
import pytest

from ppml_torch.runners import ConfigError, open_session, wrap
from ppml_torch.runners.config import resolve
from tests.sessions import get_session


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"backend": "gpu"}, "unknown backend 'gpu'; use one of cpu, spu, secretflow"),
        ({"backend": "spu", "protocol": "SPDZ"}, "unknown protocol 'SPDZ'"),
        ({"backend": "spu", "field": "FM32"}, "unknown field 'FM32'; use one of FM64, FM128"),
        (
            {"backend": "spu", "protocol": "ABY3", "parties": ["alice", "bob"]},
            "protocol ABY3 needs exactly 3 parties",
        ),
        (
            {"backend": "spu", "protocol": "SEMI2K", "parties": ["a", "b", "c"]},
            "use protocol='ABY3'",
        ),
        (
            {"backend": "spu", "runtime": {"fxp_bits": 3}},
            "unknown SPU runtime setting(s) ['fxp_bits']",
        ),
        ({"backend": "cpu", "runtime": {"fxp_fraction_bits": 3}}, "takes no SPU runtime settings"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(ConfigError) as e:
        open_session(**kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_runtime_knobs_reach_spu():
    """A non-default value (ppml-torch's default is EXP_PADE) reaches SPU and changes the result."""
    from ppml_torch.runners.config import spu_runtime_config

    cfg = resolve(
        "spu", "ABY3", "FM128", runtime={"fxp_exp_mode": "EXP_TAYLOR", "fxp_fraction_bits": 30}
    )
    rc = spu_runtime_config(cfg)
    assert rc.fxp_fraction_bits == 30 and rc.fxp_exp_mode == rc.EXP_TAYLOR
    assert spu_runtime_config(resolve("spu", "ABY3", "FM128")).fxp_exp_mode == rc.EXP_PADE

    x = np.array([-1.0, 2.0], np.float32)
    got = {}
    for mode in ("EXP_PADE", "EXP_TAYLOR"):
        with open_session("spu", "SEMI2K", "FM64", runtime={"fxp_exp_mode": mode}) as s:
            assert s._rc.fxp_exp_mode == getattr(rc, mode)  # the runtimes' own config
            got[mode] = wrap(s, jnp.exp, owners=("alice",))(x)
    # exp(2) = 7.389: Pade 7.3887, Taylor (8 iterations) 7.3328 measured
    assert abs(got["EXP_PADE"][1] - np.exp(2.0)) < 0.01
    assert abs(got["EXP_TAYLOR"][1] - got["EXP_PADE"][1]) > 0.02


@pytest.mark.parametrize(
    "runtime,field,message",
    [
        ({"fxp_exp_mode": "EXP_FAST"}, "FM64", "fxp_exp_mode='EXP_FAST' is invalid; use one of"),
        ({"sigmoid_mode": 1}, "FM64", "sigmoid_mode=1 is invalid"),
        ({"fxp_exp_iters": -1}, "FM64", "use a non-negative integer"),
        ({"fxp_exp_iters": 2.5}, "FM64", "use a non-negative integer"),
        ({"enable_lower_accuracy_rsqrt": 1}, "FM64", "use True or False"),
        ({"beaver_type": "Trusted"}, "FM64", "use one of TrustedFirstParty"),
        ("fast", "FM64", "runtime must be a dict of SPU settings"),
        ([("fxp_exp_iters", 8)], "FM64", "runtime must be a dict of SPU settings"),
        ({"fxp_fraction_bits": 62}, "FM64", "use an integer in 8..26"),
        ({"fxp_fraction_bits": 31}, "FM64", "use an integer in 8..26"),
        ({"fxp_fraction_bits": 30}, "FM64", "must stay right up to |a*b| = 1024"),
        ({"fxp_fraction_bits": 27}, "FM64", "use an integer in 8..26"),
        ({"fxp_fraction_bits": 7}, "FM64", "resolution 2**-7 cannot hold ordinary values"),
        ({"fxp_fraction_bits": 1}, "FM64", "use an integer in 8..26"),
        ({"fxp_fraction_bits": -5}, "FM64", "use an integer in 8..26"),
        ({"fxp_fraction_bits": 0}, "FM64", "use an integer in 8..26 (default 18"),
        ({"fxp_fraction_bits": 59}, "FM128", "use an integer in 8..58 (default 26"),
        ({"fxp_fraction_bits": 64}, "FM128", "use an integer in 8..58 (default 26"),
        ({"fxp_fraction_bits": 18.0}, "FM64", "use an integer in 8..26"),
        (
            {"fxp_exp_mode": "EXP_TAYLOR", "fxp_exp_iters": 1000},
            "FM64",
            "fxp_exp_iters=1000 gives wrong numbers",
        ),
        ({"fxp_exp_iters": 17}, "FM64", "use 0 (SPU's default) or 6..16"),
        ({"fxp_exp_iters": 25, "fxp_fraction_bits": 26}, "FM64", "or 6..24"),
        ({"fxp_exp_iters": 4}, "FM64", "or 6..16"),
        ({"fxp_log_iters": 1}, "FM64", "log is off by 0.22 with 1 iteration; use 0"),
        ({"fxp_log_orders": 1}, "FM128", "or 2..32"),
        ({"fxp_div_goldschmidt_iters": 33}, "FM64", "or 1..32"),
        ({"sine_cosine_iters": 100}, "FM64", "or 1..32"),
    ],
)
def test_bad_knob_values_fail_before_anything_starts(monkeypatch, runtime, field, message):
    from ppml_torch.runners import spu
    from ppml_torch.runners.secretflow import simulation

    def started(*a, **k):
        raise AssertionError("a runtime was started before the knob values were checked")

    monkeypatch.setattr(spu.SpuSession, "__init__", started)
    monkeypatch.setattr(simulation.SecretFlowSession, "__init__", started)
    for backend in ("spu", "secretflow"):
        with pytest.raises(ConfigError, match=re.escape(message)) as e:
            open_session(backend, "SEMI2K", field, runtime=runtime)
        assert "\n" not in str(e.value)


def test_good_knob_values_pass():
    cfg = resolve(
        "spu", "SEMI2K", "FM64", runtime={"fxp_fraction_bits": 26, "beaver_type": "MultiParty"}
    )
    assert cfg.runtime["fxp_fraction_bits"] == 26
    assert resolve("spu", "ABY3", "FM128", runtime={"fxp_fraction_bits": 58}).runtime
    assert resolve("spu", "SEMI2K", "FM64", runtime={"fxp_fraction_bits": 8}).runtime
    for knob, value in (("fxp_exp_iters", 16), ("fxp_exp_iters", 0), ("fxp_log_iters", 32)):
        assert resolve("spu", "SEMI2K", "FM64", runtime={knob: value}).runtime[knob] == value


def test_the_rule_s_extremes_still_compute_right():
    """Every setting the rule accepts holds ordinary numbers; its first refused neighbours do
    not.  Catches a rule loosened past what SPU computes (e.g. MIN_PRODUCT_LIMIT lowered to 2
    admits FM64 f=30, where 10*1 gave -6; a Taylor exp ceiling of f-1 gives exp 28% off)."""
    from ppml_torch.runners.config import (
        KNOB_RANGES,
        MIN_FRACTION_BITS,
        MIN_PRODUCT_LIMIT,
        knob_range,
        max_fraction_bits,
    )

    a = np.array([1000.0, 0.3, 10.0], np.float32)
    b = np.array([MIN_PRODUCT_LIMIT / 1000.0, 3.0, 1.0], np.float32)
    for f in (MIN_FRACTION_BITS, max_fraction_bits("FM64")):
        with open_session("spu", "SEMI2K", "FM64", runtime={"fxp_fraction_bits": f}) as s:
            got = wrap(s, lambda x, y: x * y, owners=("alice", "bob"))(a, b)
        np.testing.assert_allclose(got, a * b, rtol=0.02, atol=4 * 2.0**-f, err_msg=f"f={f}")
    x = np.linspace(-8.0, 4.0, 25, dtype=np.float32)
    rt = {"fxp_exp_mode": "EXP_TAYLOR"}
    lo, hi = knob_range("fxp_exp_iters", {"fxp_fraction_bits": 18}, "FM64")
    assert (lo, hi) == (KNOB_RANGES["fxp_exp_iters"][0], 16)
    for n in (lo, hi):
        with open_session("spu", "SEMI2K", "FM64", runtime={**rt, "fxp_exp_iters": n}) as s:
            got = wrap(s, jnp.exp, owners=("alice",))(x)
        worst = np.max(np.abs(got - np.exp(x)) / np.maximum(np.exp(x), 1.0))
        assert worst < 0.15, (n, worst)  # measured: 0.11 at 6, 5e-3 at 16


def test_defaults_per_field():
    assert resolve("spu", "SEMI2K", "FM64").runtime["fxp_fraction_bits"] == 18
    assert resolve("spu", "ABY3", "FM128").runtime["fxp_fraction_bits"] == 26


def test_owner_errors():
    s = get_session("cpu")
    with pytest.raises(ConfigError, match="needs an owner"):
        s.put(np.ones(2, np.float32), owner=None)
    with pytest.raises(ConfigError, match="owner 'dave' is not a party"):
        s.put(np.ones(2, np.float32), owner="dave")
    with pytest.raises(ConfigError, match="owner 'dave' of input 1"):
        wrap(s, lambda a, b: a, owners=("alice", "dave"))
    with pytest.raises(ConfigError, match="2 positional inputs but 1 owners"):
        wrap(s, lambda a, b: a, owners=("alice",))(np.ones(1), np.ones(1))
    with pytest.raises(TypeError, match="put it in first"):
        s.call(lambda a: a, np.ones(2))


def test_secretflow_missing_is_reported_before_work(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "secretflow" else real(n, *a)
    )
    with pytest.raises(ConfigError, match="needs the secretflow package.*make setup"):
        open_session("secretflow")


def test_cli_reports_bad_runs_in_one_line(capsys):
    from ppml_torch.cli import main

    assert main(["homework-mlp", "--runs", "spu:NOPE"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ppml-torch homework-mlp: run 'spu:NOPE': unknown protocol 'NOPE'")
    assert "\n" not in err
