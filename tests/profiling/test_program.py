"""Cutting a traced program into parts (plaintext JAX only: fast)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import ppml_torch
from ppml_torch.profiling import model_scope, part_scope
from ppml_torch.profiling.program import Const, Cut, cut
from tests.profiling import toy


def run_parts(c: Cut, flat_args: list) -> list:
    """The parts one after the other, in plaintext, as the session runs them."""
    env = dict(enumerate(flat_args))
    for part in c.parts:
        outs = part.function()(*[env[v] for v in part.inputs])
        assert len(outs) == len(part.outputs)
        env.update(zip(part.outputs, outs, strict=True))
    return [r.value if isinstance(r, Const) else env[r] for r in c.outputs]


def traced(fn, *args):
    closed = jax.make_jaxpr(fn)(*args)
    return closed, jax.tree_util.tree_leaves(args)


def graph_fn(module, example, grads):
    cm = ppml_torch.convert(module, (torch.as_tensor(example),))

    def forward(params, x):
        with model_scope():
            return cm.apply(params, x)

    def with_grads(params, x):
        def total(p):
            out = forward(p, x)
            with part_scope("loss"):
                return sum(jnp.sum(o) for o in jax.tree_util.tree_leaves(out))

        return jax.value_and_grad(total)(params)

    return cm, with_grads if grads else forward


@pytest.mark.parametrize("grads", [False, True])
@pytest.mark.parametrize("model", ["mlp", "tiny_gpt2"])
def test_the_parts_compute_what_the_whole_computes(model, grads):
    """Run in order, the parts give the function's outputs exactly (catches a part reading a
    value no earlier part returned, or an output left out)."""
    module = getattr(toy, model)()
    x = (
        np.random.default_rng(0).integers(0, 128, (1, 6)).astype(np.int32)
        if model == "tiny_gpt2"
        else np.random.default_rng(0).random((4, 30), dtype=np.float32)
    )
    cm, fn = graph_fn(module, x, grads)
    closed, flat = traced(fn, cm.params, x)
    c = cut(closed)
    assert len(c.parts) >= 5
    want = jax.tree_util.tree_leaves(fn(cm.params, x))
    got = run_parts(c, flat)
    assert len(got) == len(want)
    # float32, and XLA fuses the parts differently from the whole (seen: 1.9e-6 on a logit of
    # 0.44); a part reading a wrong value is off by orders more
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5)
    rows = {p.row for p in c.parts}
    assert "(loss)" in rows if grads else "(loss)" not in rows
    assert any(p.backward for p in c.parts) == grads


def test_parts_follow_modules_direction_and_kind():
    """Each part is one module's work of one kind in one direction; layout ops join them."""
    module = toy.mlp()
    x = np.ones((4, 30), np.float32)
    cm, fn = graph_fn(module, x, grads=True)
    c = cut(traced(fn, cm.params, x)[0])
    got = [(p.row, p.backward, p.kind) for p in c.parts]
    assert ("0", False, "matmul") in got and ("0", True, "matmul") in got
    assert ("1", False, "comparisons") in got  # ReLU
    assert all(k != "layout" for _, _, k in got)
    for p in c.parts:  # no part mixes rows, directions or kinds
        assert {op.place.row for op in p.ops} == {p.row}
        assert {op.place.backward for op in p.ops} == {p.backward}


def test_a_boolean_cast_moves_to_the_part_reading_it():
    """A one-hot of secret ids cast to float and read by a later part: the cast is copied into
    that part and the boolean crosses (SPU multiplies by a boolean directly; left behind, the
    cast is a conversion of its own: 5% more bytes on a tiny GPT-2's gradient, ABY3)."""

    def fn(w, ids):
        with part_scope("lookup"):
            hot = (ids[:, None] == jnp.arange(8)).astype(jnp.float32)
        with part_scope("use"):
            return hot @ w

    closed, flat = traced(fn, np.ones((8, 3), np.float32), np.arange(4, dtype=np.int32))
    c = cut(closed)
    use = next(p for p in c.parts if p.row == "(use)")
    assert "convert_element_type" in use.primitives
    for p in c.parts:
        if p.row == "(lookup)":
            assert "convert_element_type" not in p.primitives
    np.testing.assert_allclose(run_parts(c, flat)[0], fn(*[np.asarray(a) for a in flat]))


def test_work_on_a_childs_weight_in_the_parent_is_the_childs():
    """``x @ self.proj.weight.T`` in the parent's forward is row ``proj`` (a matmul), the
    ReLU stays the parent's."""
    module = toy.uses_child_weight()
    x = np.ones((2, 8), np.float32)
    cm, fn = graph_fn(module, x, grads=False)
    closed, _ = traced(fn, cm.params, x)
    names = jax.tree_util.tree_flatten_with_path(cm.params)[0]
    weights = {i: str(path[0].key).rsplit(".", 1)[0] for i, (path, _) in enumerate(names)}
    c = cut(closed, weights=weights)
    rows = {(p.row, p.kind) for p in c.parts}
    assert ("proj", "matmul") in rows
    assert ("", "comparisons") in rows
    without = {(p.row, p.kind) for p in cut(closed).parts}
    assert ("proj", "matmul") not in without


def test_constants_are_folded_and_dead_work_dropped():
    def fn(x):
        mask = jnp.tril(jnp.ones((4, 4)))  # constant: computed when cutting
        unused = jnp.exp(x)  # noqa: F841 - dead: dropped as XLA drops it
        with part_scope("masked"):
            return x * mask

    closed, flat = traced(fn, np.ones((4, 4), np.float32))
    c = cut(closed)
    assert [p.primitives for p in c.parts] == [["mul"]]
    assert isinstance(c.parts[0].ops[0].ins[1], Const)
