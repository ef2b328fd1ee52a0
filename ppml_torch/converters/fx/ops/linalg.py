"""Matrix products.

MPC notes: a secret x secret product is one Beaver-triple multiplication per
output element batch plus one fixed-point truncation; a secret x public product
is local.  Exact up to the truncation.
"""

from __future__ import annotations

import jax.numpy as jnp
import torch

from ppml_torch.converters.fx import registry

aten = torch.ops.aten
lower, refuse = registry.family("linalg")


@lower(aten.mm.default)
def mm(x, y):
    return jnp.matmul(x, y)


@lower(aten.bmm.default)
def bmm(x, y):
    return jnp.matmul(x, y)


@lower(aten.addmm.default)
def addmm(bias, x, y, beta=1, alpha=1):
    out = jnp.matmul(x, y)
    if alpha != 1:
        out = out * alpha
    return out + (bias if beta == 1 else bias * beta)


@lower(aten.baddbmm.default)
def baddbmm(bias, x, y, beta=1, alpha=1):
    return addmm(bias, x, y, beta=beta, alpha=alpha)


@lower(aten.mv.default)
def mv(x, v):
    return jnp.matmul(x, v)


@lower(aten.dot.default)
def dot(x, y):
    return jnp.dot(x, y)


@lower(aten.matmul.default)
def matmul(x, y):
    return jnp.matmul(x, y)
