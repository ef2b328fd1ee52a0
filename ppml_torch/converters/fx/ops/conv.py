"""Convolutions: ``aten.convolution`` in 1-D, 2-D and 3-D, plain and transposed.

Everything ``nn.Conv*d`` / ``nn.ConvTranspose*d`` / ``F.conv*d`` express reaches the graph as
this one op: stride, padding (``"same"`` is resolved by torch at export; ``padding_mode``
``reflect``/``replicate``/``circular`` arrive as public index and slice ops before it),
dilation, groups (depthwise included), bias, output padding.  Under MPC a convolution of a
secret input with secret weights is one secret product (SPU's convolution: its bytes grow
with the input, weight and output sizes, not with the multiply-adds).

Groups: the forward pass is SPU's grouped convolution (``feature_group_count``).  Its
gradient, as JAX derives it, needs a convolution with ``batch_group_count``, which SPU 0.9.3
refuses (``hlo_legalize_to_pphlo``: "getFeatureGroupCount() == 1 && getBatchGroupCount() ==
1"), so the backward pass is that of the same convolution written with a block-diagonal
dense kernel (zeros outside the groups: exact; SPU's plain convolution gradient).  A
transposed convolution with groups runs dense in both passes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import torch
from jax import lax

from ppml_torch.converters.fx import registry

aten = torch.ops.aten
lower, refuse = registry.family("conv")


def _tuple(v, n):
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return tuple(int(x) for x in (v * n if len(v) == 1 else v))


def _dims(nd):
    spatial = "DHW"[3 - nd :] if nd <= 3 else None
    if spatial is None:
        raise NotImplementedError(f"aten.convolution with {nd} spatial dims is not lowered")
    return ("NC" + spatial, "OI" + spatial, "NC" + spatial)


def block_diagonal(w, groups):
    """A grouped kernel ``(Cout, Cin/G, *k)`` as the dense kernel ``(Cout, Cin, *k)`` with zeros
    outside the groups' blocks (pads and a concatenation: no arithmetic on the weights)."""
    cout, cin_g = jnp.shape(w)[:2]
    og, rest = cout // groups, [(0, 0)] * (jnp.ndim(w) - 2)
    blocks = [
        jnp.pad(w[g * og : (g + 1) * og], [(0, 0), (g * cin_g, (groups - 1 - g) * cin_g), *rest])
        for g in range(groups)
    ]
    return jnp.concatenate(blocks, axis=0)


def conv(x, w, stride, pads, lhs_dilation, rhs_dilation, groups):
    """``lax.conv_general_dilated`` in torch's NC... / OI... layout, groups as explained above."""
    nd = jnp.ndim(x) - 2
    dn = _dims(nd)

    def run(x, w, g):
        return lax.conv_general_dilated(
            x,
            w,
            stride,
            pads,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dn,
            feature_group_count=g,
        )

    def dense(x, w):
        return run(x, block_diagonal(w, groups), 1)

    if groups == 1:
        return run(x, w, 1)
    if any(d != 1 for d in lhs_dilation):
        return dense(x, w)

    @jax.custom_vjp
    def grouped(x, w):
        return run(x, w, groups)

    def fwd(x, w):
        return run(x, w, groups), (x, w)

    def bwd(res, g):
        x, w = res
        (gx,) = jax.linear_transpose(lambda x: dense(x, w), x)(g)
        (gw,) = jax.linear_transpose(lambda w: dense(x, w), w)(g)
        return gx, gw

    grouped.defvjp(fwd, bwd)
    return grouped(jnp.asarray(x), jnp.asarray(w))


def _transposed(x, w, stride, padding, dilation, output_padding, groups):
    """torch's transposed convolution as a convolution of the input dilated by the stride,
    with the kernel flipped and its in/out channels swapped per group."""
    nd = jnp.ndim(x) - 2
    cin, og = jnp.shape(w)[:2]
    k = jnp.shape(w)[2:]
    ig = cin // groups
    w = jnp.reshape(w, (groups, ig, og, *k))
    w = jnp.reshape(jnp.swapaxes(w, 1, 2), (groups * og, ig, *k))
    w = jnp.flip(w, axis=tuple(range(2, 2 + nd)))
    full = [d * (kk - 1) for d, kk in zip(dilation, k, strict=True)]
    pads = [(f - p, f - p + op) for f, p, op in zip(full, padding, output_padding, strict=True)]
    crop = [(max(-lo, 0), max(-hi, 0)) for lo, hi in pads]
    pads = [(max(lo, 0), max(hi, 0)) for lo, hi in pads]
    out = conv(x, w, (1,) * nd, pads, stride, dilation, groups)
    if any(lo or hi for lo, hi in crop):  # padding beyond the kernel's reach crops the output
        out = out[
            (slice(None),) * 2
            + tuple(slice(lo, s - hi) for (lo, hi), s in zip(crop, jnp.shape(out)[2:], strict=True))
        ]
    return out


@lower(
    aten.convolution.default,
    note="one secret product (SPU's convolution); groups: grouped forward, block-diagonal "
    "dense backward (SPU has no grouped-convolution gradient); transposed: a convolution of "
    "the stride-dilated input",
)
def convolution(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    nd = jnp.ndim(weight) - 2
    stride, dilation = _tuple(stride, nd), _tuple(dilation, nd)
    padding, output_padding = _tuple(padding, nd), _tuple(output_padding, nd)
    if transposed:
        out = _transposed(x, weight, stride, padding, dilation, output_padding, groups)
    else:
        out = conv(x, weight, stride, [(p, p) for p in padding], (1,) * nd, dilation, groups)
    if bias is not None:
        out = out + jnp.reshape(bias, (1, -1) + (1,) * nd)
    return out
