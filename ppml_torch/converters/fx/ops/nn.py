"""nn functions: activations, softmax, embedding, attention, dropout (norms: :mod:`.norm`).

Loss modules (MSE, BCE, cross entropy, L1) need no lowering of their own: core
ATen decomposes them into elementwise ops, reductions, ``_log_softmax`` and
``gather`` (class labels; when they are inputs, lowered as ``index_lowering``
says, see :mod:`.index_lowering`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from jax import lax

from ppml_torch.converters.fx import registry
from ppml_torch.converters.fx.ops.args import is_const
from ppml_torch.converters.fx.ops.index_lowering import INPUT_INDEX_NOTE, take_const, take_input

aten = torch.ops.aten
lower, refuse = registry.family("nn")

_CMP = "secure comparison: exact, but costs communication rounds"
_SOFTMAX = (
    "exp and a reciprocal are approximate under SPU; the max subtracted for stability "
    "costs log2(n) rounds of secure comparisons"
)

# Large enough to lose any max against real scores, small enough for fixed point (FM32 too).
MASK_FILL = -16384.0


# --- activations ------------------------------------------------------------------------------


@lower(aten.relu.default, note=_CMP)
def relu(x):
    return jax.nn.relu(x)


@lower(aten.leaky_relu.default, note=_CMP)
def leaky_relu(x, negative_slope=0.01):
    return jnp.where(x > 0, x, x * negative_slope)


@lower(aten.hardtanh.default, note=_CMP)
def hardtanh(x, min_val=-1.0, max_val=1.0):
    # not jnp.clip: its gradient at a bound is 0.5 (lax.max/min split ties), torch's is 0
    # (ReLU6 after a batch norm meets exact zeros)
    return jnp.where(x <= min_val, min_val, jnp.where(x >= max_val, max_val, x))


@lower(
    aten.gelu.default,
    mpc="approximate='none' uses erf, approximate='tanh' uses tanh: both approximations under SPU",
)
def gelu(x, approximate="none"):
    return jax.nn.gelu(x, approximate=approximate == "tanh")


@lower(aten.silu.default, mpc="sigmoid approximation under SPU")
def silu(x):
    return x * jax.nn.sigmoid(x)


@lower(aten.elu.default, mpc="exp approximation under SPU")
def elu(x, alpha=1.0, scale=1.0, input_scale=1.0):
    return scale * jnp.where(x > 0, x, alpha * jnp.expm1(x * input_scale))


@lower(aten.softplus.default, mpc="log1p(exp(x)): approximate under SPU")
def softplus(x, beta=1.0, threshold=20.0):
    bx = x * beta
    return jnp.where(bx > threshold, x, jnp.log1p(jnp.exp(jnp.minimum(bx, threshold))) / beta)


# --- softmax ----------------------------------------------------------------------------------


@lower(aten._softmax.default, mpc=_SOFTMAX)
def softmax(x, dim, half_to_float=False):
    return jax.nn.softmax(x, axis=dim)


@lower(aten._log_softmax.default, mpc=_SOFTMAX + "; plus a log")
def log_softmax(x, dim, half_to_float=False):
    return jax.nn.log_softmax(x, axis=dim)


# --- embedding --------------------------------------------------------------------------------


@lower(
    aten.embedding.default,
    note="constant ids (e.g. positions): a public gather; ids that are inputs (token ids): "
    + INPUT_INDEX_NOTE,
    options=("index_lowering",),
)
def embedding(
    weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False, *, index_lowering
):
    if padding_idx is not None and padding_idx >= 0:
        # torch gives the padding row no gradient
        weight = weight.at[padding_idx].set(lax.stop_gradient(weight[padding_idx]))
    if is_const(indices):
        return take_const(weight, indices, 0)
    return take_input(weight, indices, 0, index_lowering)  # (..., V) rows -> (..., D)


# --- attention --------------------------------------------------------------------------------


def _sdpa_check(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
    if dropout_p:
        return (
            f"scaled_dot_product_attention with dropout_p={dropout_p} (attention dropout in "
            "training mode) needs random masks; call module.eval() or set the dropout to 0"
        )
    return None


def masked_softmax(scores, mask):
    """Softmax over the last axis where ``mask`` (bool) is False gives exactly 0.

    Written for MPC: no -inf or float32-min constants (they do not fit fixed point).
    The stabilizing max is taken with masked entries at ``MASK_FILL``; masked entries
    are then zeroed by multiplying with the mask.  Rows with no allowed entry give 0,
    like torch's math attention (``_safe_softmax``).  Equal to torch's -inf masking in
    float.
    """
    dtype = jnp.result_type(scores)
    peak = lax.stop_gradient(jnp.max(jnp.where(mask, scores, MASK_FILL), axis=-1, keepdims=True))
    if is_const(mask):
        fmask = np.asarray(mask, dtype=dtype)
        empty = (fmask.sum(axis=-1, keepdims=True) == 0).astype(dtype)  # public, numpy
    else:
        fmask = jnp.asarray(mask).astype(dtype)
        empty = (jnp.sum(fmask, axis=-1, keepdims=True) < 0.5).astype(dtype)
    e = jnp.exp(jnp.where(mask, scores - peak, 0.0)) * fmask
    return e / (jnp.sum(e, axis=-1, keepdims=True) + empty)


@lower(
    aten.scaled_dot_product_attention.default,
    mpc="softmax: exp and reciprocal approximate under SPU, max costs comparisons; the causal "
    "mask is a numpy constant and masking multiplies by it (no -inf constants)",
    check=_sdpa_check,
)
def scaled_dot_product_attention(
    query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False
):
    L, E = jnp.shape(query)[-2], jnp.shape(query)[-1]  # noqa: N806
    S = jnp.shape(key)[-2]  # noqa: N806
    if enable_gqa and jnp.ndim(query) >= 3 and jnp.shape(query)[-3] != jnp.shape(key)[-3]:
        rep = jnp.shape(query)[-3] // jnp.shape(key)[-3]
        key = jnp.repeat(key, rep, axis=-3)
        value = jnp.repeat(value, rep, axis=-3)
    scale = (1.0 / np.sqrt(E)) if scale is None else scale
    scores = jnp.matmul(query, jnp.swapaxes(key, -1, -2)) * np.float32(scale)  # (..., L, S)
    mask = None
    if is_causal:
        mask = np.tril(np.ones((L, S), dtype=bool))
    if attn_mask is not None:
        if jnp.result_type(attn_mask) == jnp.bool_:
            if mask is None:
                mask = attn_mask
            elif is_const(attn_mask):
                mask = np.logical_and(mask, attn_mask)
            else:
                mask = jnp.logical_and(mask, attn_mask)
        else:
            scores = scores + attn_mask
    with jax.named_scope(registry.op_scope(aten._softmax.default)):  # profiled as a softmax
        if mask is None:
            probs = jax.nn.softmax(scores, axis=-1)
        else:
            # a constant mask stays numpy: the masking is public selects, no secret comparisons
            bcast = np.broadcast_to if is_const(mask) else jnp.broadcast_to
            probs = masked_softmax(scores, bcast(mask, jnp.shape(scores)))
    return jnp.matmul(probs, value)


# --- dropout and random ops -------------------------------------------------------------------


def _dropout_check(x, p, train=None):
    if p and train is not False:
        return (
            f"dropout with p={p} in training mode draws a new random mask per call; MPC "
            "programs here are deterministic: call module.eval() (or set p=0) before convert"
        )
    return None


@lower(
    aten.native_dropout.default,
    note="identity when p=0 or not training; training-mode dropout with p>0 is refused at convert time",
    check=_dropout_check,
)
def native_dropout(x, p, train=None):
    return x, jnp.ones(jnp.shape(x), jnp.bool_)


_RANDOM = [
    aten.bernoulli.default,
    aten.bernoulli.p,
    aten.bernoulli.Tensor,
    aten.rand.default,
    aten.rand.generator,
    aten.randn.default,
    aten.randn.generator,
    aten.rand_like.default,
    aten.randn_like.default,
    aten.randint.default,
    aten.randint.low,
    aten.randint_like.default,
    aten.randint_like.low_dtype,
    aten.randperm.default,
    aten.normal.Tensor_float,
    aten.normal.float_Tensor,
    aten.normal.Tensor_Tensor,
    aten.normal.float_float,
    aten.uniform.default,
    aten.exponential.default,
    aten.multinomial.default,
]
refuse(
    *_RANDOM,
    reason="a random op: the converted program is a deterministic function of its inputs; "
    "draw the randomness outside the model and pass it in as an input",
)
