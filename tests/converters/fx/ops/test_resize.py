"""resize lowerings vs torch: nearest and bilinear upsampling (2-D); the modes torch
decomposes (1-D nearest/linear, nearest-exact, bicubic, area) and pixel (un)shuffle through
``convert``; PyTorch's OpInfo samples of ``F.interpolate`` and friends."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from fx_op_cases import case, randn, run
from opinfo_cases import check, samples

from ppml_torch.converters.fx import convert
from ppml_torch.testing import Tolerance, assert_close

aten = torch.ops.aten
x = randn(2, 3, 5, 7)

CASES = [
    case(aten.upsample_nearest2d.vec, x, None, [2.0, 2.0], label="x2"),
    case(aten.upsample_nearest2d.vec, x, [8, 9], None, label="size"),
    case(aten.upsample_nearest2d.vec, x, None, [1.7, 2.5], label="fractional-scale"),
    case(aten.upsample_nearest2d.vec, x, [3, 4], None, label="downsample"),
    case(aten.upsample_nearest2d.default, x, [11, 6]),
    case(aten.upsample_bilinear2d.vec, x, None, False, [2.0, 2.0], label="x2"),
    case(aten.upsample_bilinear2d.vec, x, [8, 13], True, None, label="align-corners"),
    case(aten.upsample_bilinear2d.vec, x, None, False, [1.7, 1.3], label="fractional-scale"),
    case(aten.upsample_bilinear2d.vec, x, [3, 4], False, None, label="downsample"),
    case(aten.upsample_bilinear2d.vec, x, [1, 9], True, None, label="align-corners-one-row"),
    case(aten.upsample_bilinear2d.default, x, [9, 10], False, 1.8, None),
]


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_resize(c):
    run(c)


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, a):
        return self.fn(a)


@pytest.mark.parametrize(
    "fn, shape",
    [
        (lambda a: F.interpolate(a, scale_factor=2.5), (1, 2, 5)),
        (lambda a: F.interpolate(a, size=9, mode="linear"), (1, 2, 5)),
        (lambda a: F.interpolate(a, size=(8, 9), mode="nearest-exact"), (1, 2, 5, 7)),
        (lambda a: F.interpolate(a, scale_factor=2, mode="bicubic"), (1, 2, 4, 5)),
        (lambda a: F.interpolate(a, size=(3, 3), mode="area"), (1, 2, 5, 7)),
        (nn.PixelShuffle(2), (2, 8, 3, 4)),
        (nn.PixelUnshuffle(2), (2, 2, 6, 4)),
    ],
    ids=["nearest1d", "linear1d", "nearest-exact", "bicubic", "area", "shuffle", "unshuffle"],
)
def test_decomposed_modes_convert(fn, shape):
    """These reach the graph as public index ops, views and arithmetic: forward and gradient."""
    module = _Fn(fn) if not isinstance(fn, nn.Module) else fn
    xb = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    cm = convert(module, (xb.detach(),))
    tol = Tolerance(atol=2e-5, rtol=2e-5)
    out = module(xb)
    assert_close(
        np.asarray(cm.apply(cm.params, xb.detach().numpy())), out.detach().numpy(), tol=tol
    )
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * cot).sum().backward()
    g = jax.grad(lambda a: jnp.sum(cm.apply(cm.params, a) * cot.numpy()))(xb.detach().numpy())
    assert_close(np.asarray(g), xb.grad.numpy(), tol=tol)


_OPINFO = [
    s
    for name, variant in [
        ("interpolate", "nearest"),
        ("interpolate", "nearest-exact"),
        ("interpolate", "linear"),
        ("interpolate", "bilinear"),
        ("interpolate", "bicubic"),
        ("interpolate", "area"),
        ("upsample_bilinear", ""),
        ("upsample_nearest", ""),
        ("pixel_shuffle", ""),
        ("pixel_unshuffle", ""),
    ]
    for s in samples(f"nn.functional.{name}", variant, limit=5)
]


@pytest.mark.parametrize("sid, info, sample", _OPINFO, ids=[s[0] for s in _OPINFO])
def test_opinfo_samples(sid, info, sample):
    check(info, sample)
