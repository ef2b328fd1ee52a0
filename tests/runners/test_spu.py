"""Running an exported program (.mlir + manifest + weights) in an SPU session."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from ppml_torch.errors import InputFileError
from ppml_torch.runners import ConfigError
from ppml_torch.runners.spu import run_exported
from ppml_torch.stablehlo import describe_leaves, to_stablehlo, write_export
from ppml_torch.testing import assert_close
from tests.sessions import get_session

W = {"fc.bias": np.array([0.5, -1.0], np.float32), "fc.weight": np.eye(2, 3, dtype=np.float32)}


def fc(p, x):
    return x @ p["fc.weight"].T + p["fc.bias"]


@pytest.fixture
def exported(tmp_path):
    x = jax.ShapeDtypeStruct((4, 3), np.float32)
    inputs = describe_leaves(W, "params") + describe_leaves((x,), "args")
    outputs = describe_leaves(jax.eval_shape(fc, W, x), "out")
    mlir, _, _ = write_export(tmp_path, "fc", to_stablehlo(fc, W, x), W, inputs, outputs, "fc")
    return mlir


@pytest.mark.parametrize("weights_owner", ["alice", "public"])
def test_exported_program_runs_with_owners(exported, weights_owner):
    s = get_session("spu", "SEMI2K", "FM64")
    x = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    got = run_exported(s, exported, {"args[0]": x}, weights_owner=weights_owner, inputs_owner="bob")
    assert set(got) == {"out"}
    assert_close(got["out"], fc(W, x), protocol="SEMI2K", field="FM64", what="exported fc")
    r = s.last_report
    assert r.what == "fc" and r.compile_s > 0 and r.comm.send_bytes > 0


def test_bad_inputs_are_refused_before_sharing(exported):
    s = get_session("spu", "SEMI2K", "FM64")
    x = np.ones((4, 3), np.float32)
    n_reports = len(s.reports)
    kw = {"weights_owner": "alice", "inputs_owner": "bob"}
    with pytest.raises(ConfigError, match=r"no value for input args\[0\]"):
        run_exported(s, exported, {}, **kw)
    with pytest.raises(ConfigError, match=r"input args\[0\] is float32\[2, 3\]"):
        run_exported(s, exported, {"args[0]": x[:2]}, **kw)
    with pytest.raises(ConfigError, match=r"are not inputs of fc.mlir"):
        run_exported(s, exported, {"args[0]": x, "x": x}, **kw)
    with pytest.raises(ConfigError, match="owner 'dave'"):
        run_exported(s, exported, {"args[0]": x}, weights_owner="dave", inputs_owner="bob")
    with pytest.raises(ConfigError, match="needs an 'spu' session"):
        run_exported(get_session("cpu"), exported, {"args[0]": x}, **kw)
    exported.write_text(exported.read_text().replace("stablehlo.add", "stablehlo.bogus"))
    with pytest.raises(InputFileError, match="SPU cannot compile it") as e:
        run_exported(s, exported, {"args[0]": x}, **kw)
    assert "\n" not in str(e.value)
    assert len(s.reports) == n_reports, "nothing may be put before the checks pass"
