"""Reductions: sums, means, variances, max/min and their indices, any/all, cumsum.

MPC notes: sums and means are exact (a mean divides by a public count).  max,
min, argmax and argmin need secure comparisons along the reduced axis (a
tournament: log2(n) rounds).  var/std are exact; std adds a sqrt approximation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import torch

from ppml_torch.converters.fx import registry
from ppml_torch.converters.fx.dtypes import to_jnp
from ppml_torch.converters.fx.ops.args import norm_dim, norm_dims

aten = torch.ops.aten
lower, refuse = registry.family("reductions")

_CMP = "secure comparisons along the axis (log2(n) rounds)"


def _cast(x, dtype):
    return x if dtype is None else x.astype(to_jnp(dtype))


@lower(aten.sum.default)
def sum_(x, dtype=None):
    return jnp.sum(_cast(x, dtype))


@lower(aten.sum.dim_IntList)
def sum_dim(x, dim=None, keepdim=False, dtype=None):
    return jnp.sum(_cast(x, dtype), axis=norm_dims(dim, jnp.ndim(x)), keepdims=keepdim)


@lower(aten.mean.default)
def mean(x, dtype=None):
    return jnp.mean(_cast(x, dtype))


@lower(aten.mean.dim)
def mean_dim(x, dim=None, keepdim=False, dtype=None):
    return jnp.mean(_cast(x, dtype), axis=norm_dims(dim, jnp.ndim(x)), keepdims=keepdim)


@lower(aten.prod.default, note="n-1 secret multiplications")
def prod(x, dtype=None):
    return jnp.prod(_cast(x, dtype))


@lower(aten.prod.dim_int, note="n-1 secret multiplications")
def prod_dim(x, dim, keepdim=False, dtype=None):
    return jnp.prod(_cast(x, dtype), axis=norm_dim(dim, jnp.ndim(x)), keepdims=keepdim)


def _correction(correction):
    return 1 if correction is None else correction


@lower(aten.var.correction)
def var(x, dim=None, correction=None, keepdim=False):
    return jnp.var(
        x, axis=norm_dims(dim, jnp.ndim(x)), ddof=_correction(correction), keepdims=keepdim
    )


@lower(aten.var_mean.correction)
def var_mean(x, dim=None, correction=None, keepdim=False):
    axes = norm_dims(dim, jnp.ndim(x))
    return (
        jnp.var(x, axis=axes, ddof=_correction(correction), keepdims=keepdim),
        jnp.mean(x, axis=axes, keepdims=keepdim),
    )


@lower(aten.std.correction, mpc="sqrt of the variance: sqrt is approximate under SPU")
def std(x, dim=None, correction=None, keepdim=False):
    return jnp.std(
        x, axis=norm_dims(dim, jnp.ndim(x)), ddof=_correction(correction), keepdims=keepdim
    )


@lower(aten.amax.default, note=_CMP)
def amax(x, dim=(), keepdim=False):
    return jnp.max(x, axis=norm_dims(dim, jnp.ndim(x)), keepdims=keepdim)


@lower(aten.amin.default, note=_CMP)
def amin(x, dim=(), keepdim=False):
    return jnp.min(x, axis=norm_dims(dim, jnp.ndim(x)), keepdims=keepdim)


@lower(aten.max.default, note=_CMP)
def max_(x):
    return jnp.max(x)


@lower(aten.min.default, note=_CMP)
def min_(x):
    return jnp.min(x)


@lower(aten.max.dim, note=_CMP)
def max_dim(x, dim, keepdim=False):
    d = norm_dim(dim, jnp.ndim(x))
    return jnp.max(x, axis=d, keepdims=keepdim), jnp.argmax(x, axis=d, keepdims=keepdim)


@lower(aten.min.dim, note=_CMP)
def min_dim(x, dim, keepdim=False):
    d = norm_dim(dim, jnp.ndim(x))
    return jnp.min(x, axis=d, keepdims=keepdim), jnp.argmin(x, axis=d, keepdims=keepdim)


@lower(aten.argmax.default, note=_CMP)
def argmax(x, dim=None, keepdim=False):
    if dim is None:
        return jnp.argmax(jnp.ravel(x))
    return jnp.argmax(x, axis=norm_dim(dim, jnp.ndim(x)), keepdims=keepdim)


@lower(aten.argmin.default, note=_CMP)
def argmin(x, dim=None, keepdim=False):
    if dim is None:
        return jnp.argmin(jnp.ravel(x))
    return jnp.argmin(x, axis=norm_dim(dim, jnp.ndim(x)), keepdims=keepdim)


@lower(aten.any.default)
def any_(x):
    return jnp.any(x)


@lower(aten.any.dim, aten.any.dims)
def any_dim(x, dim=None, keepdim=False):
    return jnp.any(x, axis=norm_dims(dim, jnp.ndim(x)), keepdims=keepdim)


@lower(aten.all.default)
def all_(x):
    return jnp.all(x)


@lower(aten.all.dim, aten.all.dims)
def all_dim(x, dim=None, keepdim=False):
    return jnp.all(x, axis=norm_dims(dim, jnp.ndim(x)), keepdims=keepdim)


@lower(aten.cumsum.default)
def cumsum(x, dim, dtype=None):
    return jnp.cumsum(_cast(x, dtype), axis=norm_dim(dim, jnp.ndim(x)))


@lower(
    aten.logsumexp.default,
    mpc="max-shifted exp and log: approximate under SPU, max costs comparisons",
)
def logsumexp(x, dim, keepdim=False):
    return jax.nn.logsumexp(x, axis=norm_dims(dim, jnp.ndim(x)), keepdims=keepdim)
