"""Matrix product lowerings vs torch: values and gradients."""

from __future__ import annotations

import pytest
import torch
from fx_op_cases import case, randn, run

aten = torch.ops.aten

CASES = [
    case(aten.mm.default, randn(3, 4), randn(4, 5), grad=(0, 1)),
    case(aten.bmm.default, randn(2, 3, 4), randn(2, 4, 5), grad=(0, 1)),
    case(aten.addmm.default, randn(5), randn(3, 4), randn(4, 5), grad=(0, 1, 2)),
    case(
        aten.addmm.default,
        randn(3, 5),
        randn(3, 4),
        randn(4, 5),
        beta=0.5,
        alpha=2.0,
        grad=(0, 1, 2),
        label="scaled",
    ),
    case(aten.baddbmm.default, randn(2, 3, 5), randn(2, 3, 4), randn(2, 4, 5), grad=(0, 1, 2)),
    case(aten.mv.default, randn(3, 4), randn(4), grad=(0, 1)),
    case(aten.dot.default, randn(4), randn(4), grad=(0, 1)),
    case(aten.matmul.default, randn(2, 3, 4), randn(4, 5), grad=(0, 1)),
]


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_linalg(c):
    run(c)
