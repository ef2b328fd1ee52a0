"""conv lowerings vs torch: ``aten.convolution`` (1-D, 2-D, 3-D; plain and transposed), plus
PyTorch's OpInfo samples of ``F.conv*d`` / ``F.conv_transpose*d`` through ``convert``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn
from fx_op_cases import case, primitives, randn, run
from opinfo_cases import check, samples

from ppml_torch.converters.fx import convert, registry
from ppml_torch.converters.fx.ops.conv import block_diagonal
from ppml_torch.testing import Tolerance, assert_close

aten = torch.ops.aten
conv = aten.convolution.default
x1, x2, x3 = randn(2, 4, 11), randn(2, 4, 9, 8), randn(1, 2, 5, 6, 4)
_ALL = (0, 1, 2)

CASES = [
    # (x, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    case(conv, x2, randn(6, 4, 3, 3), randn(6), [1, 1], [0, 0], [1, 1], False, [0, 0], 1, grad=_ALL),
    case(
        conv, x2, randn(6, 4, 3, 2), None, [2, 1], [1, 2], [1, 1], False, [0, 0], 1,
        grad=(0, 1), label="stride-pad-no-bias",
    ),
    case(
        conv, x2, randn(6, 4, 3, 3), randn(6), [1, 1], [2, 2], [2, 2], False, [0, 0], 1,
        grad=_ALL, label="dilated",
    ),
    case(
        conv, x2, randn(6, 2, 3, 3), randn(6), [1, 1], [1, 1], [1, 1], False, [0, 0], 2,
        grad=_ALL, label="groups",
    ),
    case(
        conv, x2, randn(8, 1, 3, 3), randn(8), [2, 2], [1, 1], [1, 1], False, [0, 0], 4,
        grad=_ALL, label="depthwise-multiplier-2",
    ),
    case(conv, x1, randn(5, 4, 3), randn(5), [2], [1], [1], False, [0], 1, grad=_ALL, label="1d"),
    case(
        conv, x1, randn(4, 1, 5), None, [1], [2], [1], False, [0], 4, grad=(0, 1),
        label="1d-depthwise",
    ),
    case(conv, x3, randn(3, 2, 2, 3, 2), randn(3), [1, 1, 1], [0, 1, 0], [1, 1, 1], False,
         [0, 0, 0], 1, grad=_ALL, label="3d"),
    case(
        conv, x2, randn(4, 3, 3, 3), randn(3), [2, 2], [1, 1], [1, 1], True, [1, 0], 1,
        grad=_ALL, label="transposed",
    ),
    case(
        conv, x2, randn(4, 3, 3, 2), randn(6), [2, 3], [2, 0], [2, 1], True, [1, 2], 2,
        grad=_ALL, label="transposed-groups-dilated",
    ),
    case(
        conv, x2, randn(4, 2, 1, 1), None, [1, 1], [1, 1], [1, 1], True, [0, 0], 1,
        grad=(0, 1), label="transposed-padding-crops",
    ),
    case(
        conv, x1, randn(4, 2, 4), randn(2), [3], [1], [1], True, [2], 1, grad=_ALL,
        label="transposed-1d",
    ),
]  # fmt: skip


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_conv(c):
    run(c)


_OPINFO = [
    s
    for name in ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d")
    for s in samples(f"nn.functional.{name}", limit=6)
] + samples("nn.functional.conv_transpose3d", limit=3)


@pytest.mark.parametrize("sid, info, sample", _OPINFO, ids=[s[0] for s in _OPINFO])
def test_opinfo_samples(sid, info, sample):
    check(info, sample)


def test_grouped_gradient_uses_no_grouped_convolution():
    """SPU 0.9.3 cannot compile a convolution with batch_group_count (JAX's weight gradient
    of a grouped convolution) nor a grouped one in the backward pass: the lowering's backward
    is the dense block-diagonal convolution; catches a custom VJP dropped (jax's own rule)."""
    fn = registry.load()[conv].fn
    xx, w = jnp.asarray(x2.numpy()), jnp.asarray(randn(8, 1, 3, 3).numpy())

    def loss(xx, w):
        return jnp.sum(fn(xx, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 4) ** 2)

    jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(xx, w)
    convs = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    inner = [str(e) for e in convs]
    assert "conv_general_dilated" in primitives(jax.grad(loss, argnums=(0, 1)), xx, w)
    text = str(jaxpr)
    assert "batch_group_count=1" in text and "batch_group_count=4" not in text, inner
    assert text.count("feature_group_count=4") == 1  # the forward pass only


def test_block_diagonal_places_each_group_and_zeros_elsewhere():
    w = np.arange(2 * 3 * 2 * 1, dtype=np.float32).reshape(6, 1, 2, 1) + 1
    full = np.asarray(block_diagonal(jnp.asarray(w), 3))
    assert full.shape == (6, 3, 2, 1)
    for o in range(6):
        g = o // 2
        assert np.array_equal(full[o, g], w[o, 0]) and not full[o, np.arange(3) != g].any()


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [1, "same"])
def test_padding_modes_and_same_convert(mode, padding):
    """``padding_mode`` reaches the graph as public index/slice ops before the convolution,
    ``"same"`` as explicit (possibly asymmetric) padding: all lowered, forward and gradient."""
    torch.manual_seed(0)
    m = nn.Conv2d(3, 4, 4 if padding == "same" else 3, padding=padding, padding_mode=mode)
    xb = torch.randn(2, 3, 7, 6)
    cm = convert(m, (xb,))
    tol = Tolerance(atol=2e-5, rtol=2e-5)
    assert_close(np.asarray(cm.apply(cm.params, xb.numpy())), m(xb).detach().numpy(), tol=tol)
    m(xb).sum().backward()
    g = jax.grad(lambda p: jnp.sum(cm.apply(p, xb.numpy())))(cm.params)
    assert_close(np.asarray(g["weight"]), m.weight.grad.numpy(), tol=Tolerance(1e-4, 1e-4))
