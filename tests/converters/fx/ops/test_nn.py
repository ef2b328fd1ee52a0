"""nn lowerings vs torch: activations, softmax, norms, embedding, attention, dropout."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from fx_op_cases import case, ints, positive, randn, run

aten = torch.ops.aten
x = randn(3, 4, 6)
q, k, v = randn(2, 2, 5, 4), randn(2, 2, 7, 4), randn(2, 2, 7, 4)
mask = torch.rand(2, 1, 5, 7, generator=torch.Generator().manual_seed(1)) > 0.3
mask[..., 0] = True  # every query row sees one key

CASES = [
    case(aten.relu.default, x),
    case(aten.leaky_relu.default, x, 0.1),
    case(aten.hardtanh.default, x, -0.5, 0.5),
    case(aten.gelu.default, x),
    case(aten.gelu.default, x, approximate="tanh", label="tanh"),
    case(aten.silu.default, x),
    case(aten.elu.default, x, 0.7),
    case(aten.softplus.default, x * 10, 1.0, 20.0),
    case(aten._softmax.default, x, -1, False),
    case(aten._softmax.default, x, 1, False, label="dim1"),
    case(aten._log_softmax.default, x, -1, False),
    # mean and rstd (outputs 1, 2) are not differentiable in torch; graphs only use output 0
    case(
        aten.native_layer_norm.default,
        x,
        [6],
        randn(6),
        randn(6),
        1e-5,
        grad=(0, 2, 3),
        grad_outputs=(0,),
    ),
    case(
        aten.native_layer_norm.default,
        x,
        [4, 6],
        None,
        None,
        1e-5,
        label="no-affine-2d",
        grad_outputs=(0,),
    ),
    case(
        aten._native_batch_norm_legit_no_training.default,
        randn(4, 3, 5),
        randn(3),
        randn(3),
        randn(3),
        positive(3),
        0.1,
        1e-5,
        grad=(0, 1, 2),
        grad_outputs=(0,),
    ),
    case(aten.embedding.default, randn(10, 4), ints(10, 2, 3), grad=(0,)),
    case(aten.embedding.default, randn(10, 4), ints(10, 2, 3), const=(1,), label="const-ids"),
    case(aten.embedding.default, randn(10, 4), ints(3, 2, 5), 1, label="padding-idx"),
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


def test_embedding_with_input_ids_is_one_hot():
    """Secret ids cannot index a table under MPC: the lowering is a one-hot product."""
    from ppml_torch.converters.fx.ops.nn import embedding

    jaxpr = str(jax.make_jaxpr(embedding)(randn(10, 4).numpy(), np.array([[1, 2]], np.int32)))
    assert "gather" not in jaxpr and "dot_general" in jaxpr


def test_masked_softmax_has_no_huge_constants():
    from ppml_torch.converters.fx.ops.nn import masked_softmax

    jaxpr = jax.make_jaxpr(masked_softmax)(randn(2, 5).numpy(), np.tril(np.ones((2, 5), bool)))
    consts = [float(np.min(np.asarray(c))) for c in jaxpr.consts if np.size(c)]
    literals = [e for e in str(jaxpr).split() if "e+38" in e or "inf" in e]
    assert not literals and all(c > -1e6 for c in consts)
