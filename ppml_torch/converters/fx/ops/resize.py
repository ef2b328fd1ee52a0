"""Upsampling: nearest and bilinear, 2-D (``nn.Upsample``, ``F.interpolate``).

The source positions and weights depend only on the sizes, so they are public constants
computed here with torch's formulas (in float32, as its CPU kernel): nearest is a public
gather per dim (free under MPC), bilinear a product with a public interpolation matrix per
dim (``align_corners`` either way).  Other modes reach the graph already decomposed into
public index ops and arithmetic (1-D nearest and linear, ``nearest-exact``, bicubic) and use
those lowerings; pixel shuffle is a view and a permute.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import torch

from ppml_torch.converters.fx import registry
from ppml_torch.models.pooling import along

aten = torch.ops.aten
lower, refuse = registry.family("resize")


def _sizes(x, output_size, scale_factors):
    """Output sizes and per-dim scales (None: none given) of the last two dims."""
    ins = jnp.shape(x)[-2:]
    scales = list(scale_factors) if scale_factors else [None, None]
    if output_size:
        return ins, tuple(int(o) for o in output_size), scales
    return ins, tuple(int(np.floor(n * s)) for n, s in zip(ins, scales, strict=True)), scales


def _scale(n, o, scale):
    """torch's ``compute_scales_value``: 1 / the given scale factor, else in / out (float32)."""
    if scale is not None and scale > 0:
        return np.float32(1.0 / scale)
    return np.float32(n) / np.float32(o)


def nearest_index(n, o, scale):
    """torch's ``nearest_neighbor_compute_source_index``: ``min(floor(dst * scale), n - 1)``."""
    s = _scale(n, o, scale)
    return np.minimum(np.floor(np.arange(o, dtype=np.float32) * s).astype(np.int64), n - 1)


def linear_matrix(n, o, align_corners, scale):
    """``(o, n)``: row i holds the two weights torch's bilinear kernel gives output i."""
    if align_corners:
        s = np.float32((n - 1) / (o - 1)) if o > 1 else np.float32(0)
        src = np.arange(o, dtype=np.float32) * s
    else:
        s = _scale(n, o, scale)
        src = np.maximum(s * (np.arange(o, dtype=np.float32) + np.float32(0.5)) - 0.5, 0)
    i0 = src.astype(np.int64)
    i1 = i0 + (i0 < n - 1)
    l1 = np.clip(src - i0, 0, 1).astype(np.float32)
    m = np.zeros((o, n), np.float32)
    np.add.at(m, (np.arange(o), i0), 1 - l1)
    np.add.at(m, (np.arange(o), i1), l1)
    return m


@lower(aten.upsample_nearest2d.vec, note="a public gather per dim")
def upsample_nearest2d_vec(x, output_size, scale_factors):
    ins, outs, scales = _sizes(x, output_size, scale_factors)
    ih, iw = (nearest_index(n, o, s) for n, o, s in zip(ins, outs, scales, strict=True))
    return jnp.take(jnp.take(x, ih, axis=-2), iw, axis=-1)


@lower(aten.upsample_nearest2d.default, note="a public gather per dim")
def upsample_nearest2d(x, output_size, scales_h=None, scales_w=None):
    return upsample_nearest2d_vec(x, output_size, [scales_h, scales_w])


@lower(
    aten.upsample_bilinear2d.vec,
    note="products with public interpolation matrices (one per dim)",
)
def upsample_bilinear2d_vec(x, output_size, align_corners, scale_factors):
    ins, outs, scales = _sizes(x, output_size, scale_factors)
    out = x
    for axis, n, o, s in zip((-2, -1), ins, outs, scales, strict=True):
        m = linear_matrix(n, o, align_corners, s)
        out = along(out, m, axis)
    return out


@lower(
    aten.upsample_bilinear2d.default,
    note="products with public interpolation matrices (one per dim)",
)
def upsample_bilinear2d(x, output_size, align_corners, scales_h=None, scales_w=None):
    return upsample_bilinear2d_vec(x, output_size, align_corners, [scales_h, scales_w])
