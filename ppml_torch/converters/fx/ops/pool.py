"""Pooling: max (with indices only where the graph reads them), average, adaptive average and
adaptive max, over the last two (or three) dims (1-D pooling reaches the graph as 2-D).

The window arithmetic lives in :mod:`ppml_torch.models.pooling` (the Flax CNN twins run the
same functions): every window position is a *candidate*, a strided slice of the
(zero-padded) input with a public mask of the output positions where it lies inside the
input.  Slices, pads and masks are public data movement: free under MPC.

* **max**: a knockout tournament over the candidates (the form of
  :func:`ppml_torch.generation.ops.tree_argmax`): at each round neighbours meet, the right
  one survives only if STRICTLY greater, so a tie keeps the earlier window position, as
  torch's kernel does (its gradient and indices go to the first maximum).  A candidate
  outside the input never wins (the public mask decides, not a fill value: exact for any
  input range).  ``K - 1`` secure comparisons per output in ``ceil(log2 K)`` rounds for a
  window of ``K``, one select per comparison; the backward pass reuses the comparisons (no
  new ones).  SPU's own ``reduce_window`` max and its gradient (select-and-scatter) are the
  alternative: ``bench/bench_cnn_ops.py`` measures both, and SPU 0.9.3's gradient is wrong
  when the window overlaps padding (ResNet's stem pool); figures in ``bench/README.md``.
* **average**: the sum of the candidates times a public reciprocal per output position
  (torch's divisor: ``count_include_pad``, ``ceil_mode`` and ``divisor_override``
  included): additions and one public product.
* **adaptive average**: windows of varying size (``floor(i*n/o)`` to ``ceil((i+1)*n/o)``)
  as a product with a public averaging matrix per dim; equal windows as a reshape and a mean.
* **adaptive max**: each candidate a public gather (a window shorter than the longest
  repeats its last position: the same value at the same index cannot change the result).
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import torch

from ppml_torch.converters.fx import registry
from ppml_torch.models import pooling

aten = torch.ops.aten
lower, refuse = registry.family("pool")

_TOURNAMENT = (
    "a knockout tournament of secure comparisons over the window (ceil(log2 K) rounds for K "
    "positions); ties go to the first position, as in torch; indices computed only where "
    "the graph reads them"
)


def _tuple(v, nd, default=None):
    """An ATen ``int[nd]`` argument (one value for all dims, or empty for ``default``)."""
    v = default if (v is None or (isinstance(v, (list, tuple)) and len(v) == 0)) else v
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return tuple(int(x) for x in (v * nd if len(v) == 1 else v))


def _max_pool(x, nd, kernel_size, stride, padding, dilation, ceil_mode, used_outputs):
    k = _tuple(kernel_size, nd)
    s, p, d = _tuple(stride, nd, k), _tuple(padding, nd), _tuple(dilation, nd)
    return pooling.max_pool(x, k, s, p, d, ceil_mode, with_indices=1 in used_outputs)


@lower(aten.max_pool2d_with_indices.default, note=_TOURNAMENT, used_outputs=True)
def max_pool2d_with_indices(
    x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False, *, used_outputs
):
    return _max_pool(x, 2, kernel_size, stride, padding, dilation, ceil_mode, used_outputs)


@lower(aten.max_pool3d_with_indices.default, note=_TOURNAMENT, used_outputs=True)
def max_pool3d_with_indices(
    x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False, *, used_outputs
):
    return _max_pool(x, 3, kernel_size, stride, padding, dilation, ceil_mode, used_outputs)


def _avg_pool(x, nd, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor):
    k = _tuple(kernel_size, nd)
    s, p = _tuple(stride, nd, k), _tuple(padding, nd)
    return pooling.avg_pool(x, k, s, p, ceil_mode, count_include_pad, divisor)


_AVG = "sums of window positions times a public reciprocal (torch's divisor)"


@lower(aten.avg_pool2d.default, note=_AVG)
def avg_pool2d(
    x,
    kernel_size,
    stride=(),
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    return _avg_pool(
        x, 2, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )


@lower(aten.avg_pool3d.default, note=_AVG)
def avg_pool3d(
    x,
    kernel_size,
    stride=(),
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    return _avg_pool(
        x, 3, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )


def _windows(n, o):
    """torch's adaptive windows along one dim: start ``floor(i n / o)``, end ``ceil((i+1) n / o)``."""
    start = np.array([(i * n) // o for i in range(o)])
    end = np.array([-(-((i + 1) * n) // o) for i in range(o)])
    return start, end


_ADAPTIVE_AVG = (
    "equal windows: a reshape and a mean; other sizes: products with public averaging "
    "matrices (one per dim)"
)


def _adaptive_avg(x, nd, output_size):
    sizes, outs = jnp.shape(x)[-nd:], _tuple(output_size, nd)
    if all(n % o == 0 for n, o in zip(sizes, outs, strict=True)):
        lead = jnp.shape(x)[:-nd]
        split = [v for n, o in zip(sizes, outs, strict=True) for v in (o, n // o)]
        axes = tuple(range(jnp.ndim(x) - nd + 1, jnp.ndim(x) + nd, 2))
        return jnp.mean(jnp.reshape(x, (*lead, *split)), axis=axes)
    out = x
    for axis, n, o in zip(range(-nd, 0), sizes, outs, strict=True):
        if n == o:
            continue
        start, end = _windows(n, o)
        m = np.zeros((o, n), np.float32)
        for i in range(o):
            m[i, start[i] : end[i]] = 1.0 / (end[i] - start[i])
        out = pooling.along(out, m, axis)
    return out


@lower(aten._adaptive_avg_pool2d.default, note=_ADAPTIVE_AVG)
def adaptive_avg_pool2d(x, output_size):
    return _adaptive_avg(x, 2, output_size)


@lower(aten._adaptive_avg_pool3d.default, note=_ADAPTIVE_AVG)
def adaptive_avg_pool3d(x, output_size):
    return _adaptive_avg(x, 3, output_size)


def _adaptive_max(x, nd, output_size, used_outputs):
    sizes, outs = jnp.shape(x)[-nd:], _tuple(output_size, nd)
    per_dim = []
    for n, o in zip(sizes, outs, strict=True):
        start, end = _windows(n, o)
        kmax = int((end - start).max())
        per_dim.append([np.minimum(start + a, end - 1) for a in range(kmax)])
    values, flats = [], []
    for combo in itertools.product(*per_dim):
        v = x
        flat = np.zeros((), np.int64)
        for axis, idx, n in zip(range(-nd, 0), combo, sizes, strict=True):
            v = jnp.take(v, idx, axis=axis)
            flat = np.add.outer(flat * n, idx)
        values.append(v)
        flats.append(flat)
    values = jnp.stack(values)
    indices = None
    if 1 in used_outputs:
        lead = (1,) * (jnp.ndim(x) - nd)
        flat = np.stack(flats).astype(np.int32).reshape(len(flats), *lead, *outs)
        indices = np.broadcast_to(flat, jnp.shape(values))
    return pooling.tournament(values, None, indices)


@lower(aten.adaptive_max_pool2d.default, note=_TOURNAMENT, used_outputs=True)
def adaptive_max_pool2d(x, output_size, *, used_outputs):
    return _adaptive_max(x, 2, output_size, used_outputs)


@lower(aten.adaptive_max_pool3d.default, note=_TOURNAMENT, used_outputs=True)
def adaptive_max_pool3d(x, output_size, *, used_outputs):
    return _adaptive_max(x, 3, output_size, used_outputs)


refuse(
    aten.fractional_max_pool2d.default,
    aten.fractional_max_pool3d.default,
    reason="fractional max pooling places its windows at random; MPC programs here are "
    "deterministic: use MaxPool2d, or AdaptiveMaxPool2d for a fixed output size",
)
