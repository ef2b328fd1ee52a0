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
        ({"fxp_fraction_bits": 62}, "FM64", "use an integer in 1..30"),
        ({"fxp_fraction_bits": 31}, "FM64", "use an integer in 1..30"),
        ({"fxp_fraction_bits": -5}, "FM64", "use an integer in 1..30"),
        ({"fxp_fraction_bits": 0}, "FM64", "use an integer in 1..30 (default 18)"),
        ({"fxp_fraction_bits": 64}, "FM128", "use an integer in 1..62 (default 26)"),
        ({"fxp_fraction_bits": 18.0}, "FM64", "use an integer in 1..30"),
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
        "spu", "SEMI2K", "FM64", runtime={"fxp_fraction_bits": 30, "beaver_type": "MultiParty"}
    )
    assert cfg.runtime["fxp_fraction_bits"] == 30
    assert resolve("spu", "ABY3", "FM128", runtime={"fxp_fraction_bits": 62}).runtime


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
