"""The same JAX functions on cpu, spu (SEMI2K, CHEETAH, ABY3; FM64, FM128) and secretflow."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppml_torch.runners import wrap
from ppml_torch.testing import assert_close
from tests.sessions import get_session, record_error


def elementwise(x, y):
    return x * y + x - 0.5 * y


def matmul(x, w):
    return x @ w


def reductions(x, y):
    return {"sum": jnp.sum(x, axis=0), "mean": jnp.mean(x * y), "max": jnp.max(x, axis=1)}


def mlp_forward(params, x):
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def _inputs():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (8, 6)).astype(np.float32)
    y = rng.uniform(-2, 2, (8, 6)).astype(np.float32)
    w = rng.uniform(-1, 1, (6, 4)).astype(np.float32)
    params = {
        "w1": rng.normal(0, 0.5, (6, 5)).astype(np.float32),
        "b1": rng.normal(0, 0.1, (5,)).astype(np.float32),
        "w2": rng.normal(0, 0.5, (5, 2)).astype(np.float32),
        "b2": rng.normal(0, 0.1, (2,)).astype(np.float32),
    }
    return {
        "elementwise": (elementwise, (x, y)),
        "matmul": (matmul, (x, w)),
        "reductions": (reductions, (x, y)),
        "mlp_forward": (mlp_forward, (params, x)),
    }


CASES = _inputs()
SETTINGS = [
    ("spu", "SEMI2K", "FM64"),
    ("spu", "CHEETAH", "FM64"),
    ("spu", "ABY3", "FM64"),
    ("spu", "SEMI2K", "FM128"),
    ("spu", "ABY3", "FM128"),
    pytest.param("secretflow", "SEMI2K", "FM64", marks=pytest.mark.secretflow),
]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("backend,protocol,field", SETTINGS)
def test_parity_with_cpu(backend, protocol, field, case):
    fn, args = CASES[case]
    owners = ("alice", "bob")
    expected = wrap(get_session("cpu"), fn, owners)(*args)
    mpc = wrap(get_session(backend, protocol, field), fn, owners)
    got = mpc(*args)
    err = assert_close(got, expected, protocol=protocol, field=field, what=f"{case} on {backend}")
    record_error(f"{backend} {protocol}/{field}", err)
    assert mpc.last_report.comm is not None and mpc.last_report.comm.send_bytes > 0
    print(f"\n{backend} {protocol}/{field} {case}: max abs error {err:.2e}")


def test_cpu_is_exact_against_plain_jax():
    for case, (fn, args) in CASES.items():
        got = wrap(get_session("cpu"), fn, ("alice", "bob"))(*args)
        assert_close(got, jax.jit(fn)(*args), what=case)


# The parity suite's MLP as a torch module, through the project's own pytest plugin: one test per
# run of --ppml-runs (default cpu, spu:SEMI2K, spu:ABY3), both conversion routes, outputs and
# gradients against torch eager, with the plugin's shared sessions.
def test_torch_mlp_equivalence(ppml_equivalence):
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)
    ).eval()
    x = torch.as_tensor(CASES["mlp_forward"][1][1])
    report = ppml_equivalence(module, x, grads=True)
    assert {r.route for r in report.rows} == {"graph", "flax"}
