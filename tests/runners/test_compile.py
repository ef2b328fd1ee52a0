"""Compiling for SPU on either route, and running compiled programs in a session."""

from __future__ import annotations

import collections
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppml_torch.models.mlp import MLP
from ppml_torch.runners import IRS, ConfigError
from ppml_torch.runners.compile import compile_for_spu, compile_stablehlo, flat_visibilities
from ppml_torch.stablehlo import to_stablehlo
from ppml_torch.testing import Tolerance, assert_close
from tests.sessions import get_session

spu_pb2 = pytest.importorskip("spu.spu_pb2")
S, P = spu_pb2.Visibility.VIS_SECRET, spu_pb2.Visibility.VIS_PUBLIC

# exact GELU's erf is a polynomial in SPU: 3.7e-4 measured on [-2, 2] (SEMI2K/FM64)
APPROX = Tolerance(atol=5e-3, rtol=0.0)


@pytest.fixture(scope="module")
def mlp():
    model = MLP(features=(15, 8, 1), activation="relu")
    x = np.random.default_rng(0).normal(size=(16, 30)).astype(np.float32)
    params = model.init(jax.random.PRNGKey(0), x)
    return model, params, x


def run_on_spu(program, *args, owners):
    """Put ``args`` with ``owners``, run ``program``, reveal; returns (value, run report)."""
    s = get_session("spu", "SEMI2K", "FM64")
    handles = [s.put(a, owner=o) for a, o in zip(args, owners, strict=True)]
    out = s.run_program(program, *handles)
    report = s.last_report
    value = s.reveal(out)
    for h in (*handles, out):
        s.free(h)
    return value, report


def pphlo_ops(code: str) -> collections.Counter:
    return collections.Counter(re.findall(r"pphlo\.\w+", code))


def main_arg_visibilities(pphlo: str) -> list[str]:
    """'secret'/'public' of every argument of SPU's compiled main function, in order."""
    sig = re.search(r"func\.func @main\((.*?)\) ->", pphlo)[1]
    types = re.findall(r"%arg\d+: (tensor<[^>]*>+)", sig)
    return ["secret" if "!pphlo.secret" in t else "public" for t in types]


@pytest.mark.parametrize("ir", IRS)
def test_mlp_forward_runs_on_spu(mlp, ir):
    model, params, x = mlp
    prog = compile_for_spu(model.apply, (params, x), ["secret", "secret"], ir=ir)
    out, report = run_on_spu(prog, params, x, owners=("alice", "bob"))
    assert_close(out, model.apply(params, x), protocol="SEMI2K", field="FM64", what=f"MLP ({ir})")
    assert report.run_s > 0 and report.compile_s == 0.0  # compiled before the session saw it


@pytest.mark.parametrize("ir", IRS)
def test_mlp_grad_runs_on_spu(mlp, ir):
    model, params, x = mlp
    y = np.random.default_rng(1).normal(size=(16,)).astype(np.float32)

    def loss(p, x, y):
        return jnp.mean((y - model.apply(p, x)[:, 0]) ** 2 / 2)

    grad = jax.grad(loss)
    prog = compile_for_spu(grad, (params, x, y), "secret", ir=ir)
    out, _ = run_on_spu(prog, params, x, y, owners=("alice", "bob", "bob"))
    assert_close(out, grad(params, x, y), protocol="SEMI2K", field="FM64", what=f"grad ({ir})")


def test_routes_give_the_same_spu_program(mlp):
    model, params, x = mlp
    progs = [compile_for_spu(model.apply, (params, x), "secret", ir=ir) for ir in IRS]
    assert pphlo_ops(progs[0].pphlo) == pphlo_ops(progs[1].pphlo)


@pytest.mark.parametrize("ir", IRS)
def test_public_inputs_stay_public(mlp, ir):
    """Each parameter of SPU's program has the visibility asked for, argument by argument."""
    model, params, x = mlp
    n = len(jax.tree_util.tree_leaves(params))
    prog = compile_for_spu(model.apply, (params, x), ["public", "secret"], ir=ir)
    assert main_arg_visibilities(prog.pphlo) == ["public"] * n + ["secret"]
    assert list(prog.visibilities) == [P] * n + [S]
    all_secret = compile_for_spu(model.apply, (params, x), "secret", ir=ir)
    assert main_arg_visibilities(all_secret.pphlo) == ["secret"] * (n + 1)
    out, _ = run_on_spu(prog, params, x, owners=("public", "bob"))
    assert_close(out, model.apply(params, x), protocol="SEMI2K", field="FM64")


def test_a_program_refuses_inputs_of_another_visibility_or_shape(mlp):
    model, params, x = mlp
    prog = compile_for_spu(model.apply, (params, x), ["public", "secret"])
    s = get_session("spu", "SEMI2K", "FM64")
    hp, hx = s.put(params, owner="alice"), s.put(x, owner="bob")
    with pytest.raises(
        ConfigError, match="input 0 is secret, the program was compiled for a public"
    ):
        s.run_program(prog, hp, hx)
    hp2, hx2 = s.put(params, owner="public"), s.put(x[:3], owner="bob")
    with pytest.raises(ConfigError, match=r"float32\[3, 30\], the program reads float32\[16, 30\]"):
        s.run_program(prog, hp2, hx2)
    with pytest.raises(ConfigError, match="input arrays for a program reading"):
        s.run_program(prog, hp2)
    for h in (hp, hx, hp2, hx2):
        s.free(h)


def test_spu_rejects_raw_chlo_and_legalization_fixes_it():
    """JAX leaves erf in the CHLO dialect; SPU 0.9.3's parser has no CHLO."""
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)

    def gelu(x):
        return jax.nn.gelu(x, approximate=False)

    aval = [jax.ShapeDtypeStruct(x.shape, x.dtype)]
    raw = to_stablehlo(gelu, x, legalize=False)
    assert "chlo.erf" in raw
    with pytest.raises(RuntimeError, match="MLIR parser failure"):
        compile_stablehlo(raw.encode(), aval, ["secret"], aval[0])
    prog = compile_stablehlo(raw, aval, ["secret"], aval[0])  # text is legalized first
    out, _ = run_on_spu(prog, x, owners=("alice",))
    assert_close(out, gelu(x), tol=APPROX, what="exact GELU")


def test_run_reports_communication(mlp):
    model, params, x = mlp
    prog = compile_for_spu(model.apply, (params, x), "secret")
    _, report = run_on_spu(prog, params, x, owners=("alice", "bob"))
    assert report.comm.send_bytes > 0 and report.comm.send_actions > 0


def test_visibilities_per_argument_or_per_leaf(mlp):
    _, params, x = mlp
    n = len(jax.tree_util.tree_leaves(params))
    assert flat_visibilities(["public", "secret"], (params, x)) == [P] * n + [S]
    assert flat_visibilities("public", (params, x)) == [P] * (n + 1)
    assert flat_visibilities([S] * (n + 1), (params, x)) == [S] * (n + 1)
    with pytest.raises(ConfigError, match="one per argument"):
        flat_visibilities(["secret"] * 3, (params, x))
    with pytest.raises(ConfigError, match="unknown visibility"):
        flat_visibilities("hidden", (params, x))


def test_unknown_ir_is_refused(mlp):
    model, params, x = mlp
    with pytest.raises(ConfigError, match="unknown ir 'hlo'"):
        compile_for_spu(model.apply, (params, x), ir="hlo")


# -- constants: SPU 0.9.3 transposes a constant wrongly; fold_constants computes them first -----

_RNG = np.random.default_rng(1)
_W = _RNG.standard_normal((8, 64)).astype(np.float32)
_X = _RNG.standard_normal((4, 64)).astype(np.float32)


def _closure_cases():
    w = jnp.asarray(_W)
    return {
        "jax array .T": lambda a: a @ w.T,
        "numpy jnp.transpose": lambda a: a @ jnp.transpose(_W),
        "(w + 0).T": lambda a: a @ (w + 0.0).T,
        "iota mask": lambda a: a[:, :8] * (jnp.arange(8.0) < 4),
    }


@pytest.mark.parametrize("ir", ["xla", "stablehlo"])
def test_constants_the_function_closes_over_give_the_right_numbers(ir):
    """Without the fold, `x @ w.T` with `w` a closed-over array came back off by 33.5."""
    from ppml_torch.runners import open_session, wrap

    with open_session("spu", "SEMI2K", "FM64", ir=ir) as s:
        for name, f in _closure_cases().items():
            got = wrap(s, f, ["alice"])(_X)
            assert_close(got, np.asarray(f(_X)), protocol="SEMI2K", field="FM64", what=name)


def test_fold_constants_leaves_input_only_functions_alone():
    from ppml_torch.runners.compile import fold_constants

    def f(a):
        return a * 2.0

    assert fold_constants(f, (jax.ShapeDtypeStruct((2,), np.float32),), {}) is f


@pytest.mark.secretflow
def test_constants_are_folded_under_secretflow_too():
    from ppml_torch.runners import wrap

    s = get_session("secretflow", "SEMI2K", "FM64")
    f = _closure_cases()["jax array .T"]
    assert_close(wrap(s, f, ["alice"])(_X), np.asarray(f(_X)), protocol="SEMI2K", field="FM64")
