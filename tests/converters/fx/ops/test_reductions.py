"""Reduction lowerings vs torch: values, and gradients for the differentiable ones."""

from __future__ import annotations

import pytest
import torch
from fx_op_cases import bools, case, randn, run

aten = torch.ops.aten
x = randn(3, 4, 5)
b = bools(3, 4)

CASES = [
    case(aten.sum.default, x),
    case(aten.sum.dim_IntList, x, [1]),
    case(aten.sum.dim_IntList, x, [0, -1], True, label="keepdim"),
    case(aten.sum.dim_IntList, b, [1], grad=(), label="bool"),
    case(aten.mean.default, x),
    case(aten.mean.dim, x, [-1], True),
    case(aten.prod.default, x[0, 0]),
    case(aten.prod.dim_int, x, 1),
    case(aten.var.correction, x, [1], correction=1),
    case(aten.var.correction, x, [2], correction=0, keepdim=True, label="biased"),
    case(aten.var_mean.correction, x, [1], correction=0),
    case(aten.std.correction, x, [1], correction=1),
    case(aten.amax.default, x, [1]),
    case(aten.amin.default, x, [1, 2], True),
    case(aten.max.default, x),
    case(aten.min.default, x),
    case(aten.max.dim, x, 1),
    case(aten.min.dim, x, -1, True),
    case(aten.argmax.default, x, 1, grad=()),
    case(aten.argmax.default, x, grad=(), label="flat"),
    case(aten.argmin.default, x, 2, True, grad=()),
    case(aten.argmin.default, x, grad=(), label="flat"),
    case(aten.any.default, b, grad=()),
    case(aten.any.dim, b, 1, grad=()),
    case(aten.any.dims, b, [0], grad=()),
    case(aten.all.default, b, grad=()),
    case(aten.all.dim, b, 0, grad=()),
    case(aten.all.dims, b, [1], True, grad=()),
    case(aten.cumsum.default, x, 1),
    case(aten.logsumexp.default, x, [2]),
]


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_reductions(c):
    run(c)
