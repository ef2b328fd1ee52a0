"""Pooling: max (with indices only where the graph reads them), average, adaptive average and
adaptive max, over the last two (or three) dims (1-D pooling reaches the graph as 2-D).

Every window position is a *candidate*: a strided slice of the (zero-padded) input, one per
offset inside the window, in torch's row-major window order, with a public mask of the
output positions where it lies inside the input.  Slices, pads and masks are public data
movement: free under MPC.

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


def out_size(n, k, s, p, d, ceil_mode):
    """torch's pooling output size along one dim."""
    o = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= n + p:  # the last window may not start in the padding
        o -= 1
    return o


def _candidates(x, kernel, stride, padding, dilation, outs):
    """Per window offset (row-major): the strided slice of ``x`` zero-padded, the public mask
    of output positions inside the input (None: all), and the flat input index there."""
    nd = len(kernel)
    sizes = jnp.shape(x)[-nd:]
    widths = []
    for n, k, s, p, d, o in zip(sizes, kernel, stride, padding, dilation, outs, strict=True):
        need = (o - 1) * s + d * (k - 1) + 1
        widths.append((p, max(need - n - p, 0)))
    xp = jnp.pad(x, [(0, 0)] * (jnp.ndim(x) - nd) + widths)
    lead = (slice(None),) * (jnp.ndim(x) - nd)
    per_dim = []  # per dim: for each offset, (slice, positions in the input)
    for k, s, p, d, o in zip(kernel, stride, padding, dilation, outs, strict=True):
        offs = []
        for a in range(k):
            start = a * d
            pos = np.arange(o) * s + start - p
            offs.append((slice(start, start + (o - 1) * s + 1, s), pos))
        per_dim.append(offs)
    out = []
    for combo in itertools.product(*per_dim):
        value = xp[lead + tuple(sl for sl, _ in combo)]
        grids = np.meshgrid(*[pos for _, pos in combo], indexing="ij")
        inside = np.ones(outs, bool)
        flat = np.zeros(outs, np.int64)
        for g, n in zip(grids, sizes, strict=True):
            inside &= (g >= 0) & (g < n)
            flat = flat * n + g
        out.append((value, None if inside.all() else inside, flat))
    return out


def tournament(values, masks, indices=None):
    """The first maximum over the leading axis of ``values`` ``(K, ...)``, and its index.

    ``masks``: public bool ``(K, *out)`` (False: this candidate is not in the window there)
    or None; ``indices``: public ``(K, *out)`` labels of the candidates, or None.  Each round
    pairs neighbours ``(2j, 2j+1)``; the right one survives only if strictly greater (or the
    left is outside the window), so every survivor stands for a contiguous run of positions
    and ties keep the first.  One secure comparison per pair, all pairs of a round at once.
    """
    while jnp.shape(values)[0] > 1:
        k = jnp.shape(values)[0]
        h = k // 2
        pairs = jnp.reshape(values[: 2 * h], (h, 2, *jnp.shape(values)[1:]))
        a, b = pairs[:, 0], pairs[:, 1]
        right = b > a
        new_mask = None
        if masks is not None:
            ma, mb = masks[: 2 * h : 2], masks[1 : 2 * h : 2]
            right = jnp.where(mb & ~ma, True, jnp.where(ma & ~mb, False, right))
            new_mask = ma | mb
        new_values = jnp.where(right, b, a)
        new_indices = None
        if indices is not None:
            ia, ib = indices[: 2 * h : 2], indices[1 : 2 * h : 2]
            new_indices = jnp.where(right, ib, ia)
        if k % 2:  # the last one has no partner this round; it stays last
            new_values = jnp.concatenate([new_values, values[-1:]], axis=0)
            if masks is not None:
                new_mask = np.concatenate([new_mask, masks[-1:]], axis=0)
            if indices is not None:
                new_indices = jnp.concatenate([new_indices, indices[-1:]], axis=0)
        values, masks, indices = new_values, new_mask, new_indices
    return values[0], (None if indices is None else indices[0])


def _stack_masks(cands, outs):
    if all(m is None for _, m, _ in cands):
        return None
    return np.stack([np.ones(outs, bool) if m is None else m for _, m, _ in cands])


def _max_pool(x, nd, kernel_size, stride, padding, dilation, ceil_mode, used_outputs):
    k = _tuple(kernel_size, nd)
    s, p, d = _tuple(stride, nd, k), _tuple(padding, nd), _tuple(dilation, nd)
    sizes = jnp.shape(x)[-nd:]
    outs = tuple(
        out_size(n, *a, ceil_mode) for n, a in zip(sizes, zip(k, s, p, d, strict=True), strict=True)
    )
    cands = _candidates(x, k, s, p, d, outs)
    values = jnp.stack([v for v, _, _ in cands])
    lead = (1,) * (jnp.ndim(x) - nd)
    masks = _stack_masks(cands, outs)
    masks = None if masks is None else masks.reshape(len(cands), *lead, *outs)
    indices = None
    if 1 in used_outputs:
        flat = np.stack([f for _, _, f in cands]).astype(np.int32)
        shape = (len(cands), *jnp.shape(values)[1:])
        indices = np.broadcast_to(flat.reshape(len(cands), *lead, *outs), shape)
    return tournament(values, masks, indices)


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
    sizes = jnp.shape(x)[-nd:]
    outs = tuple(
        out_size(n, kk, ss, pp, 1, ceil_mode) for n, kk, ss, pp in zip(sizes, k, s, p, strict=True)
    )
    cands = _candidates(x, k, s, p, (1,) * nd, outs)
    total = cands[0][0]
    for v, _, _ in cands[1:]:
        total = total + v
    return total * _avg_reciprocal(sizes, k, s, p, outs, count_include_pad, divisor)


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


def _avg_reciprocal(sizes, k, s, p, outs, count_include_pad, divisor_override):
    """1 / torch's divisor per output position, float32."""
    if divisor_override:
        return np.float32(1.0 / divisor_override)
    counts = []
    for n, kk, ss, pp, o in zip(sizes, k, s, p, outs, strict=True):
        start = np.arange(o) * ss - pp
        end = np.minimum(start + kk, n + pp)
        if count_include_pad:
            counts.append(end - start)
        else:
            counts.append(np.minimum(end, n) - np.maximum(start, 0))
    grid = np.ones((), np.int64)
    for c in counts:
        grid = np.multiply.outer(grid, c)
    return (1.0 / grid).astype(np.float32)


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
        out = jnp.moveaxis(jnp.tensordot(out, m, axes=([axis], [1])), -1, axis)
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
    return tournament(values, None, indices)


@lower(aten.adaptive_max_pool2d.default, note=_TOURNAMENT, used_outputs=True)
def adaptive_max_pool2d(x, output_size, *, used_outputs):
    return _adaptive_max(x, 2, output_size, used_outputs)


@lower(aten.adaptive_max_pool3d.default, note=_TOURNAMENT, used_outputs=True)
def adaptive_max_pool3d(x, output_size, *, used_outputs):
    return _adaptive_max(x, 3, output_size, used_outputs)
