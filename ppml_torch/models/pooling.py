"""Pooling written for MPC, over the last ``nd`` dims of an array: the converter's lowerings
(:mod:`ppml_torch.converters.fx.ops.pool`) and the Flax CNN twins (:mod:`.flax_cnn`) both run
these, so a max pool costs the same and ties break the same way on either route.

Every window position is a *candidate*: a strided slice of the (zero-padded) input, one per
offset inside the window, in torch's row-major window order, with a public mask of the
output positions where it lies inside the input.  Slices, pads and masks are public data
movement: free under MPC.  Max pooling is a knockout :func:`tournament` over them (exact,
ties to the first position, as torch); average pooling their sum times torch's reciprocal
divisor (a public constant).
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
from jax import lax


def out_size(n, k, s, p, d, ceil_mode):
    """torch's pooling output size along one dim."""
    o = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= n + p:  # the last window may not start in the padding
        o -= 1
    return o


def candidates(x, kernel, stride, padding, dilation, outs):
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
        # lax.slice, not xp[a:b:s]: a strided __getitem__ is a gather, whose gradient is a
        # scatter-add (a loop under SPU); lax.slice's is a pad with interior zeros (local)
        sls = [slice(None)] * len(lead) + [sl for sl, _ in combo]
        value = lax.slice(
            xp,
            [0 if sl.start is None else sl.start for sl in sls],
            [jnp.shape(xp)[i] if sl.stop is None else sl.stop for i, sl in enumerate(sls)],
            [1 if sl.step is None else sl.step for sl in sls],
        )
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


def stack_masks(cands, outs):
    if all(m is None for _, m, _ in cands):
        return None
    return np.stack([np.ones(outs, bool) if m is None else m for _, m, _ in cands])


# windows of more positions are summed with 0/1 matrices (one product per dim) instead of one
# slice per position (a program of k*k slices)
MAX_CANDIDATES = 64


def max_pool(x, kernel, stride, padding, dilation, ceil_mode=False, with_indices=False):
    """torch's max pooling over the last ``len(kernel)`` dims: ``(out, indices or None)``;
    indices are flat positions in the input's pooled dims, as torch's."""
    nd = len(kernel)
    sizes = jnp.shape(x)[-nd:]
    outs = tuple(
        out_size(n, *a, ceil_mode)
        for n, a in zip(sizes, zip(kernel, stride, padding, dilation, strict=True), strict=True)
    )
    cands = candidates(x, kernel, stride, padding, dilation, outs)
    values = jnp.stack([v for v, _, _ in cands])
    lead = (1,) * (jnp.ndim(x) - nd)
    masks = stack_masks(cands, outs)
    masks = None if masks is None else masks.reshape(len(cands), *lead, *outs)
    indices = None
    if with_indices:
        flat = np.stack([f for _, _, f in cands]).astype(np.int32)
        shape = (len(cands), *jnp.shape(values)[1:])
        indices = np.broadcast_to(flat.reshape(len(cands), *lead, *outs), shape)
    return tournament(values, masks, indices)


def avg_pool(x, kernel, stride, padding, ceil_mode=False, count_include_pad=True, divisor=None):
    """torch's average pooling over the last ``len(kernel)`` dims."""
    nd = len(kernel)
    sizes = jnp.shape(x)[-nd:]
    outs = tuple(
        out_size(n, k, s, p, 1, ceil_mode)
        for n, k, s, p in zip(sizes, kernel, stride, padding, strict=True)
    )
    if int(np.prod(kernel)) <= MAX_CANDIDATES:
        cands = candidates(x, kernel, stride, padding, (1,) * nd, outs)
        total = cands[0][0]
        for v, _, _ in cands[1:]:
            total = total + v
    else:  # a large window (EfficientNet's pooler: 128x128 over 1x1): 0/1 window sums per dim
        total = x
        for axis, n, k, s, p, o in zip(
            range(-nd, 0), sizes, kernel, stride, padding, outs, strict=True
        ):
            start = np.arange(o) * s - p
            m = np.zeros((o, n), np.float32)
            for i in range(o):
                m[i, max(start[i], 0) : min(start[i] + k, n)] = 1.0
            total = along(total, m, axis)
    return total * avg_reciprocal(sizes, kernel, stride, padding, outs, count_include_pad, divisor)


def avg_reciprocal(sizes, k, s, p, outs, count_include_pad, divisor_override):
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


def along(x, m, axis):
    """``m`` ``(o, n)`` applied along ``axis`` of ``x`` (``n`` there -> ``o``), as ``m @ x`` with
    the axis moved next to last.  Not ``jnp.tensordot(x, m, ([axis], [1]))``: SPU 0.9.3 returns
    wrong numbers for a dot product contracting a middle axis of the secret operand (measured:
    errors of 3 on values of 1; its gradient was right), while a batched ``m @ x`` is exact."""
    moved = jnp.moveaxis(x, axis, -2)
    return jnp.moveaxis(m @ moved, -2, axis)
