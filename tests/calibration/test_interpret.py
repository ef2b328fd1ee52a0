"""The jaxpr interpreter gives jit's numbers and shows every non-constant equation, loops included."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppml_torch.calibration import interpret


def _run(fn, *args):
    closed = jax.make_jaxpr(fn)(*args)
    seen: list[tuple[str, str]] = []

    def record(eqn, scope, invals, in_const, outs):
        seen.append((eqn.primitive.name, scope))

    outs = interpret.run(closed, jax.tree_util.tree_leaves(args), record)
    return outs, seen


def test_loops_calls_and_branches_are_entered():
    def fn(x):
        def body(c, xi):
            with jax.named_scope("step"):
                return c * xi, c + xi

        c, ys = jax.lax.scan(body, x[0], x)
        w = jax.lax.while_loop(lambda v: v < 100.0, lambda v: v * 3.0, c)
        b = jax.lax.cond(w > 0, lambda v: jnp.sqrt(v), lambda v: v, w)
        return jax.jit(lambda a, b: jnp.tanh(a) + b)(ys, b)

    x = jnp.array([1.5, 2.0, 3.0], jnp.float32)
    outs, seen = _run(fn, x)
    np.testing.assert_allclose(outs[0], jax.jit(fn)(x), rtol=1e-6)
    names = [n for n, _ in seen]
    assert names.count("mul") >= 3 + 1  # 3 scan steps, at least one while step
    assert "sqrt" in names and "tanh" in names
    assert ("mul", "step") in seen  # the scope inside the scan body


def test_constant_equations_are_not_recorded():
    def fn(x):
        mask = jnp.triu(jnp.ones((3, 3)), 1) * -1e9  # constants only: XLA folds them
        return x + mask

    outs, seen = _run(fn, jnp.zeros((3, 3)))
    assert [n for n, _ in seen] == ["add"]
    assert float(outs[0][0, 2]) == pytest.approx(-1e9)


def test_scopes_of_nested_calls_are_joined():
    def fn(x):
        with jax.named_scope("outer"):
            return jax.jit(lambda v: v * v)(x)

    _, seen = _run(fn, jnp.ones(2))
    assert seen == [("mul", "outer")]


def test_a_converted_gpt2_gives_the_same_logits_as_jit():
    from ppml_torch import to_flax
    from ppml_torch.apps.calibration_presets import tiny_gpt2

    model, (ids,), _ = tiny_gpt2(seed=0, tokens=8)
    cm = to_flax(model)
    ids = ids.astype(np.int32)
    closed = jax.make_jaxpr(cm.apply)(cm.params, ids)
    leaves = jax.tree_util.tree_leaves((cm.params, ids))
    outs = interpret.run(closed, leaves, lambda *a: None)
    ref = jax.tree_util.tree_leaves(jax.jit(cm.apply)(cm.params, ids))
    np.testing.assert_allclose(outs[0], ref[0], rtol=1e-5, atol=1e-6)


def test_the_jitted_path_records_what_the_eager_one_does(monkeypatch):
    """A program without while/cond runs in one jit (fast in a fresh process); it shows the
    recorder the same equations, scopes and values as the equation-by-equation path."""

    def fn(x, w):
        def body(c, xi):
            with jax.named_scope("step"):
                return c * xi + jnp.sqrt(jnp.abs(c)), jnp.tanh(c)

        c, ys = jax.lax.scan(body, x[0], x)
        return jnp.dot(ys, w) / (c + 2.0)

    args = (jnp.array([1.5, 2.0, 3.0]), jnp.array([0.5, -1.0, 2.0]))
    closed = jax.make_jaxpr(fn)(*args)
    assert interpret._jittable(closed.jaxpr)
    seen = {}
    for mode in ("jit", "eager"):
        if mode == "eager":
            monkeypatch.setattr(interpret, "JIT_MAX_EQUATIONS", 0)
            assert not interpret._jittable(closed.jaxpr)
        rows = []

        def record(eqn, scope, invals, in_const, outs, rows=rows):
            rows.append((eqn.primitive.name, scope, in_const, [np.asarray(o) for o in outs]))

        seen[mode] = (interpret.run(closed, list(args), record), rows)
    (out_j, rows_j), (out_e, rows_e) = seen["jit"], seen["eager"]
    np.testing.assert_allclose(out_j[0], out_e[0], rtol=1e-6)
    assert [r[:3] for r in rows_j] == [r[:3] for r in rows_e] and len(rows_j) > 10
    for a, b in zip(rows_j, rows_e, strict=True):
        for x, y in zip(a[3], b[3], strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_while_and_cond_stay_on_the_eager_path():
    while_fn = jax.make_jaxpr(lambda v: jax.lax.while_loop(lambda a: a < 9.0, lambda a: a * 2, v))
    cond_fn = jax.make_jaxpr(lambda v: jax.lax.cond(v > 0, jnp.sin, jnp.cos, v))
    assert not interpret._jittable(while_fn(1.0).jaxpr)
    assert not interpret._jittable(cond_fn(1.0).jaxpr)
