"""nn lowerings vs torch: activations, softmax, embedding, attention, dropout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from fx_op_cases import ONE_HOT, case, ints, primitives, randn, run

from ppml_torch.converters.fx import registry

aten = torch.ops.aten
x = randn(3, 4, 6)
q, k, v = randn(2, 2, 5, 4), randn(2, 2, 7, 4), randn(2, 2, 7, 4)
mask = torch.rand(2, 1, 5, 7, generator=torch.Generator().manual_seed(1)) > 0.3
mask[..., 0] = True  # every query row sees one key

CASES = [
    case(aten.relu.default, x),
    case(aten.leaky_relu.default, x, 0.1),
    case(aten.hardtanh.default, x, -0.5, 0.5),
    case(
        aten.hardtanh.default,
        torch.tensor([-1.0, 0.0, 0.5, 6.0, 7.0]),
        0.0,
        6.0,
        label="relu6-at-bounds",
    ),
    case(aten.gelu.default, x),
    case(aten.gelu.default, x, approximate="tanh", label="tanh"),
    case(aten.silu.default, x),
    case(aten.elu.default, x, 0.7),
    case(aten.softplus.default, x * 10, 1.0, 20.0),
    case(aten._softmax.default, x, -1, False),
    case(aten._softmax.default, x, 1, False, label="dim1"),
    case(aten._log_softmax.default, x, -1, False),
    case(aten.embedding.default, randn(10, 4), ints(10, 2, 3), grad=(0,)),
    case(aten.embedding.default, randn(10, 4), ints(10, 2, 3), options=ONE_HOT, label="one-hot"),
    case(aten.embedding.default, randn(10, 4), ints(10, 2, 3), const=(1,), label="const-ids"),
    case(aten.embedding.default, randn(10, 4), ints(3, 2, 5), 1, label="padding-idx"),
    case(
        aten.embedding.default,
        randn(10, 4),
        ints(3, 2, 5),
        1,
        options=ONE_HOT,
        label="padding-idx-one-hot",
    ),
    case(aten.scaled_dot_product_attention.default, q, k, v, grad=(0, 1, 2)),
    case(
        aten.scaled_dot_product_attention.default,
        q,
        k[..., :5, :],
        v[..., :5, :],
        is_causal=True,
        grad=(0, 1, 2),
        label="causal",
    ),
    case(
        aten.scaled_dot_product_attention.default, q, k, v, mask, grad=(0, 1, 2), label="bool-mask"
    ),
    case(
        aten.scaled_dot_product_attention.default,
        q,
        k,
        v,
        mask,
        const=(3,),
        label="const-bool-mask",
    ),
    case(
        aten.scaled_dot_product_attention.default,
        q,
        k,
        v,
        randn(5, 7),
        scale=0.3,
        grad=(0, 1, 2, 3),
        label="float-mask",
    ),
    case(aten.native_dropout.default, x, 0.0, True, label="p0"),
    case(aten.native_dropout.default, x, 0.5, False, label="eval"),
]


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_nn(c):
    run(c)


def test_sdpa_fully_masked_rows_give_zero_like_torch():
    m = mask.clone()
    m[0, 0, 1] = False
    run(case(aten.scaled_dot_product_attention.default, q, k, v, m, grad=(0,)))


@pytest.mark.parametrize("how", ["take", "one_hot"])
def test_embedding_of_input_ids_follows_index_lowering_and_never_scatters(how):
    """Input (secret) ids: a gather or a one-hot product; the gradient is a one-hot product
    either way (a scatter-add with secret indices costs thousands of times more under SPU)."""
    fn = registry.load()[aten.embedding.default].bind(registry.LoweringOptions(how))
    table, ids = randn(10, 4).numpy(), np.array([[1, 2]], np.int32)
    forward = primitives(fn, table, ids)
    grad = primitives(jax.grad(lambda t, i: jnp.sum(fn(t, i) ** 2)), table, ids)
    if how == "take":
        assert "gather" in forward and "eq" not in forward
    else:
        assert "gather" not in forward and {"eq", "dot_general"} <= forward
    assert "eq" in grad and not any(p.startswith("scatter") for p in grad)


def test_masked_softmax_has_no_huge_constants():
    from ppml_torch.converters.fx.ops.nn import masked_softmax

    jaxpr = jax.make_jaxpr(masked_softmax)(randn(2, 5).numpy(), np.tril(np.ones((2, 5), bool)))
    consts = [float(np.min(np.asarray(c))) for c in jaxpr.consts if np.size(c)]
    literals = [e for e in str(jaxpr).split() if "e+38" in e or "inf" in e]
    assert not literals and all(c > -1e6 for c in consts)
