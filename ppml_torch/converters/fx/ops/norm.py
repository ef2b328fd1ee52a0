"""Normalization: layer norm, batch norm (eval and training), group norm, instance norm.

Instance norm reaches the graph as batch norm without running statistics over a
``(1, N*C, ...)`` view; group norm has its own op.  Every lowering computes one scale per
normalized group first (``weight * rsqrt(var + eps)``: a few values) and then multiplies
the activations once, so under MPC each costs one secret product over the activations
(plus the rsqrt over the groups, an approximation under SPU).

Batch norm in training mode also returns the updated running statistics, as torch
computes them (``(1 - momentum) * running + momentum * batch``, the variance unbiased);
``convert(..., buffer_updates="return")`` hands them back (see
:mod:`~ppml_torch.converters.fx.converter`).
"""

from __future__ import annotations

import jax.numpy as jnp
import torch
from jax import lax

from ppml_torch.converters.fx import registry

aten = torch.ops.aten
lower, refuse = registry.family("norm")

_RSQRT = "rsqrt of the variance: approximate under SPU"
_BATCH = (
    "batch statistics: mean and variance over the batch and positions, rsqrt approximate "
    "under SPU; one secret product over the activations"
)


def _channel(v, ndim):
    """A per-channel vector ``(C,)`` shaped to broadcast over ``(N, C, ...)``."""
    return jnp.reshape(v, _channel_shape(ndim))


def rsqrt(v):
    """``1 / sqrt(v)`` with one Newton step, ``r (1.5 - v r^2 / 2)``: SPU's rsqrt is an
    approximation, and the step squares its relative error for three products over the
    statistics (a few values per group, not the activations).  Measured under SPU (FM64):
    batch norm's weight gradients 7.2e-3 off without it (``tests/converters/fx/test_cnn_mpc.py``)."""
    r = lax.rsqrt(v)
    return r * (1.5 - 0.5 * v * r * r)


def _channel_shape(nd):
    return (1, -1) + (1,) * (nd - 2)


def _affine(x, mean, rstd, weight, bias, shape):
    """``(x - mean) * rstd * weight + bias`` with ONE product over ``x``: the scale and the
    shift are computed on the (few) statistics first."""
    scale = rstd if weight is None else rstd * jnp.reshape(weight, shape)
    shift = -mean * scale
    if bias is not None:
        shift = shift + jnp.reshape(bias, shape)
    return x * scale + shift


@lower(aten.native_layer_norm.default, mpc=_RSQRT)
def native_layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    axes = tuple(range(jnp.ndim(x) - len(normalized_shape), jnp.ndim(x)))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    var = jnp.mean(centered * centered, axis=axes, keepdims=True)
    rstd = rsqrt(var + eps)
    out = centered * rstd
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out, mean, rstd


@lower(
    aten._native_batch_norm_legit_no_training.default,
    mpc="rsqrt of the running variance: approximate under SPU (the running statistics are "
    "the weights' owner's secret); one secret product over the activations",
)
def batch_norm_eval(x, weight, bias, running_mean, running_var, momentum, eps):
    nd = jnp.ndim(x)
    rstd = rsqrt(_channel(running_var, nd) + eps)
    out = _affine(x, _channel(running_mean, nd), rstd, weight, bias, _channel_shape(nd))
    empty = jnp.zeros((0,), jnp.result_type(x))
    return out, empty, empty


def _batch_stats(x, eps):
    """Mean, biased variance and rstd per channel over the batch and positions: ``(C,)``."""
    axes = (0,) + tuple(range(2, jnp.ndim(x)))
    mean = jnp.mean(x, axis=axes)
    centered = x - _channel(mean, jnp.ndim(x))
    var = jnp.mean(centered * centered, axis=axes)
    return mean, var, rsqrt(var + eps)


def _batch_norm_train(x, weight, bias, eps):
    nd = jnp.ndim(x)
    mean, var, rstd = _batch_stats(x, eps)
    out = _affine(x, _channel(mean, nd), _channel(rstd, nd), weight, bias, _channel_shape(nd))
    return out, mean, var, rstd


@lower(
    aten._native_batch_norm_legit_functional.default,
    mpc=_BATCH + "; returns the updated running statistics (convert with "
    "buffer_updates='return' to receive them)",
)
def batch_norm_train(x, weight, bias, running_mean, running_var, training, momentum, eps):
    if not training:
        out, _, _ = batch_norm_eval(x, weight, bias, running_mean, running_var, momentum, eps)
        empty = jnp.zeros((0,), jnp.result_type(x))
        return out, empty, empty, running_mean, running_var
    out, mean, var, rstd = _batch_norm_train(x, weight, bias, eps)
    n = x.size // jnp.shape(x)[1]
    unbiased = var * (n / max(n - 1, 1))  # torch updates the running variance unbiased
    new_mean = (1 - momentum) * running_mean + momentum * mean
    new_var = (1 - momentum) * running_var + momentum * unbiased
    return out, mean, rstd, new_mean, new_var


@lower(aten._native_batch_norm_legit.no_stats, mpc=_BATCH + " (instance norm comes this way)")
def batch_norm_no_stats(x, weight, bias, training, momentum, eps):
    out, mean, _, rstd = _batch_norm_train(x, weight, bias, eps)
    return out, mean, rstd


refuse(
    aten._native_batch_norm_legit.default,
    aten.native_batch_norm.default,
    reason="batch norm that updates its running statistics in place (a non-functional graph); "
    "convert exports functional graphs, where training-mode batch norm is lowered: convert "
    "the module itself, not a graph captured otherwise",
)


@lower(aten.native_group_norm.default, mpc=_RSQRT + "; one secret product over the activations")
def native_group_norm(x, weight, bias, N, C, HxW, group, eps):  # noqa: N803 (ATen's names)
    shape = jnp.shape(x)
    per_group = C // group
    g = jnp.reshape(x, (N, group, per_group * HxW))  # (N, G, C/G * spatial)
    mean = jnp.mean(g, axis=-1, keepdims=True)
    centered = g - mean
    var = jnp.mean(centered * centered, axis=-1, keepdims=True)
    rstd = rsqrt(var + eps)  # (N, G, 1)
    # per (n, channel) scale and shift: the group's statistics times the channel's affine
    scale = jnp.repeat(rstd, per_group, axis=1)  # (N, C, 1)
    shift = -jnp.repeat(mean, per_group, axis=1) * scale
    if weight is not None:
        scale = scale * jnp.reshape(weight, (1, C, 1))
        shift = shift * jnp.reshape(weight, (1, C, 1))
    if bias is not None:
        shift = shift + jnp.reshape(bias, (1, C, 1))
    out = jnp.reshape(x, (N, C, HxW)) * scale + shift
    return jnp.reshape(out, shape), jnp.reshape(mean, (N, group)), jnp.reshape(rstd, (N, group))
