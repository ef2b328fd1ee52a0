"""Elementwise lowerings vs torch: values, and gradients for the differentiable ones."""

from __future__ import annotations

import pytest
import torch
from fx_op_cases import bools, case, ints, positive, randn, run, unit

aten = torch.ops.aten
x, y = randn(3, 4), randn(3, 4)
p = positive(3, 4)
u = unit(3, 4)
i, j = ints(5, 3, 4) + 1, ints(5, 3, 4) + 1
b, c = bools(3, 4), bools(3, 4)

CASES = [
    case(aten.add.Tensor, x, y, grad=(0, 1)),
    case(aten.add.Tensor, x, y, alpha=2.0, grad=(0, 1), label="alpha"),
    case(aten.add.Scalar, x, 1.5),
    case(aten.sub.Tensor, x, y, grad=(0, 1)),
    case(aten.sub.Scalar, x, 1.5),
    case(aten.rsub.Scalar, x, 2.0),
    case(aten.rsub.Tensor, x, y, grad=(0, 1)),
    case(aten.mul.Tensor, x, y, grad=(0, 1)),
    case(aten.mul.Scalar, x, 0.5),
    case(aten.div.Tensor, x, p, grad=(0, 1)),
    case(aten.div.Tensor, x, p, const=(1,), label="const-divisor"),
    case(aten.div.Tensor, i, j, grad=(), label="int"),
    case(aten.div.Scalar, x, 3.0),
    case(aten.div.Tensor_mode, x, p, rounding_mode="floor", grad=()),
    case(aten.div.Tensor_mode, x, p, rounding_mode="trunc", grad=(), label="trunc"),
    case(aten.div.Scalar_mode, i, 2, rounding_mode="floor", grad=()),
    case(aten.neg.default, x),
    case(aten.abs.default, x),
    case(aten.sign.default, x, grad=()),
    case(aten.maximum.default, x, y, grad=(0, 1)),
    case(aten.minimum.default, x, y, grad=(0, 1)),
    case(aten.clamp.default, x, -0.5, 0.5),
    case(aten.clamp.Tensor, x, y - 1, y + 1),
    case(aten.floor.default, x, grad=()),
    case(aten.ceil.default, x, grad=()),
    case(aten.round.default, x, grad=()),
    case(aten.trunc.default, x, grad=()),
    case(aten.pow.Tensor_Scalar, x, 3.0, label="cube-negative-base"),
    case(aten.pow.Tensor_Scalar, x, 2, label="int"),
    case(aten.pow.Tensor_Scalar, p, 0.5, label="sqrt"),
    case(aten.pow.Tensor_Scalar, p, -0.5, label="rsqrt"),
    case(aten.pow.Tensor_Scalar, p, 1.7, label="general"),
    case(aten.pow.Tensor_Tensor, p, y, grad=(0, 1)),
    case(aten.pow.Scalar, 2.0, y, grad=(1,)),
    case(aten.exp.default, x),
    case(aten.exp2.default, x),
    case(aten.expm1.default, x),
    case(aten.log.default, p),
    case(aten.log2.default, p),
    case(aten.log1p.default, p),
    case(aten.sqrt.default, p),
    case(aten.rsqrt.default, p),
    case(aten.reciprocal.default, p),
    case(aten.tanh.default, x),
    case(aten.sigmoid.default, x),
    case(aten.erf.default, x),
    case(aten.sin.default, x),
    case(aten.cos.default, x),
    case(aten.eq.Tensor, i, j, grad=()),
    case(aten.eq.Scalar, i, 2, grad=()),
    case(aten.ne.Tensor, i, j, grad=()),
    case(aten.ne.Scalar, i, 2, grad=()),
    case(aten.lt.Tensor, x, y, grad=()),
    case(aten.lt.Scalar, x, 0.1, grad=()),
    case(aten.le.Tensor, i, j, grad=()),
    case(aten.le.Scalar, x, 0.1, grad=()),
    case(aten.gt.Tensor, x, y, grad=()),
    case(aten.gt.Scalar, x, 0.1, grad=()),
    case(aten.ge.Tensor, i, j, grad=()),
    case(aten.ge.Scalar, x, 0.1, grad=()),
    case(aten.logical_not.default, b, grad=()),
    case(aten.logical_and.default, b, c, grad=()),
    case(aten.logical_or.default, b, c, grad=()),
    case(aten.bitwise_and.Tensor, b, c, grad=()),
    case(aten.bitwise_and.Tensor, i, j, grad=(), label="int"),
    case(aten.bitwise_and.Scalar, i, 3, grad=()),
    case(aten.bitwise_or.Tensor, b, c, grad=()),
    case(aten.bitwise_or.Scalar, i, 3, grad=()),
    case(aten.bitwise_not.default, b, grad=()),
    case(aten.where.self, b, x, y, grad=(1, 2)),
    case(aten.where.self, b, x, y, const=(0,), grad=(1, 2), label="const-cond"),
    case(aten.sigmoid.default, u * 10 - 5, label="wide"),
]


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_elementwise(c):
    run(c)


def test_pow_integer_exponent_is_multiplication():
    """x**3.0 must not become exp(3 log x): that is NaN for negative x and approximate under MPC."""
    import jax

    from ppml_torch.converters.fx.ops.elementwise import pow_tensor_scalar

    jaxpr = str(jax.make_jaxpr(lambda v: pow_tensor_scalar(v, 3.0))(x.numpy()))
    assert "integer_pow" in jaxpr and "log" not in jaxpr


def test_division_by_constant_is_multiplication():
    import jax

    from ppml_torch.converters.fx.ops.elementwise import div

    jaxpr = str(jax.make_jaxpr(lambda v: div(v, p.numpy()))(x.numpy()))
    assert " div " not in jaxpr and "mul" in jaxpr
