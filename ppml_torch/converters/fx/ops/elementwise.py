"""Elementwise arithmetic, math functions, comparisons and logic.

MPC notes: additions and multiplications are exact in fixed point (up to the
truncation after each multiply).  Transcendental functions (exp, log, tanh,
sigmoid, erf, sqrt, rsqrt, reciprocal, pow with a non-integer exponent) and
division by a secret are polynomial or iterative approximations under SPU.
Comparisons, max/min, abs and where on a secret condition need secure
comparison: exact, but communication-heavy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from jax import lax

from ppml_torch.converters.fx import registry
from ppml_torch.converters.fx.ops.args import is_const

aten = torch.ops.aten
lower, refuse = registry.family("elementwise")

_CMP = "secure comparison: exact, but costs communication rounds"


# --- arithmetic -------------------------------------------------------------------------------


@lower(aten.add.Tensor, aten.add.Scalar)
def add(x, y, alpha=1):
    return x + (y if alpha == 1 else y * alpha)


@lower(aten.sub.Tensor, aten.sub.Scalar)
def sub(x, y, alpha=1):
    return x - (y if alpha == 1 else y * alpha)


@lower(aten.rsub.Scalar, aten.rsub.Tensor)
def rsub(x, y, alpha=1):
    return y - (x if alpha == 1 else x * alpha)


@lower(aten.mul.Tensor, aten.mul.Scalar)
def mul(x, y):
    return x * y


def _safe_reciprocal(y):
    with np.errstate(divide="ignore"):
        return np.reciprocal(np.asarray(y, dtype=np.float64)).astype(np.float32)


@lower(
    aten.div.Tensor,
    aten.div.Scalar,
    mpc="exact multiply by the reciprocal when the divisor is a constant; "
    "a secret divisor uses SPU's iterative reciprocal (approximate)",
)
def div(x, y):
    # A public divisor becomes a multiplication: no secret division under MPC.
    if is_const(y) and not is_const(x) and jnp.issubdtype(jnp.result_type(x), jnp.floating):
        return x * _safe_reciprocal(y)
    return jnp.true_divide(x, y)


@lower(aten.div.Tensor_mode, aten.div.Scalar_mode, mpc="rounding division: approximate under MPC")
def div_mode(x, y, rounding_mode=None):
    if rounding_mode is None:
        return div(x, y)
    if rounding_mode == "floor":
        return jnp.floor_divide(x, y)
    q = jnp.true_divide(x, y)
    return jnp.trunc(q)


@lower(aten.neg.default)
def neg(x):
    return -x


@lower(aten.abs.default, note=_CMP)
def abs_(x):
    return jnp.abs(x)


@lower(aten.sign.default, note=_CMP)
def sign(x):
    return jnp.sign(x)


@lower(aten.maximum.default, note=_CMP)
def maximum(x, y):
    return jnp.maximum(x, y)


@lower(aten.minimum.default, note=_CMP)
def minimum(x, y):
    return jnp.minimum(x, y)


@lower(aten.clamp.default, aten.clamp.Tensor, note=_CMP)
def clamp(x, min=None, max=None):  # noqa: A002  (ATen argument names)
    if min is not None:
        x = jnp.maximum(x, min)
    if max is not None:
        x = jnp.minimum(x, max)
    return x


_ROUND = "exact on integers; on secret floats a fixed-point truncation"
for _op, _fn in (
    (aten.floor.default, jnp.floor),
    (aten.ceil.default, jnp.ceil),
    (aten.round.default, jnp.round),
    (aten.trunc.default, jnp.trunc),
):
    lower(_op, note=_ROUND)(_fn)


# --- powers and transcendental functions --------------------------------------------------------


def _pow_scalar_exponent(x, e):
    e = float(e)
    if e.is_integer() and abs(e) <= 64:
        # x**3 as multiplications: exact under MPC and right for negative x (lax.pow is exp(e*log x)).
        return lax.integer_pow(x, int(e))
    if e == 0.5:
        return jnp.sqrt(x)
    if e == -0.5:
        return lax.rsqrt(x)
    return jnp.power(x, e)


@lower(
    aten.pow.Tensor_Scalar,
    mpc="integer exponents become multiplications (exact); other exponents use exp(e*log x)",
)
def pow_tensor_scalar(x, exponent):
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        return jnp.power(x, exponent)
    return _pow_scalar_exponent(x, exponent)


@lower(aten.pow.Tensor_Tensor, mpc="exp(y*log x): approximate, x must be positive under MPC")
def pow_tensor_tensor(x, y):
    if is_const(y) and np.ndim(y) == 0:
        return pow_tensor_scalar(x, np.asarray(y).item())
    return jnp.power(x, y)


@lower(aten.pow.Scalar, mpc="exp(y*log base): approximate under MPC")
def pow_scalar(base, exponent):
    return jnp.power(base, exponent)


_APPROX = {
    aten.exp.default: (
        jnp.exp,
        "exp: Taylor/Pade approximation under SPU; large arguments lose precision",
    ),
    aten.exp2.default: (jnp.exp2, "exp2: approximation under SPU"),
    aten.expm1.default: (jnp.expm1, "exp approximation under SPU"),
    aten.log.default: (
        jnp.log,
        "log: iterative approximation under SPU; only accurate away from 0",
    ),
    aten.log2.default: (jnp.log2, "log approximation under SPU"),
    aten.log1p.default: (jnp.log1p, "log approximation under SPU"),
    aten.sqrt.default: (jnp.sqrt, "sqrt: iterative approximation under SPU"),
    aten.rsqrt.default: (lax.rsqrt, "rsqrt: iterative approximation under SPU"),
    aten.reciprocal.default: (jnp.reciprocal, "reciprocal: Newton iterations under SPU"),
    aten.tanh.default: (jnp.tanh, "tanh: approximation under SPU"),
    aten.sigmoid.default: (
        jax.nn.sigmoid,
        "sigmoid: approximation under SPU (SPU's default sigmoid mode)",
    ),
    aten.erf.default: (lax.erf, "erf: polynomial approximation under SPU"),
    aten.sin.default: (jnp.sin, "sin: approximation under SPU"),
    aten.cos.default: (jnp.cos, "cos: approximation under SPU"),
}
for _op, (_fn, _note) in _APPROX.items():
    lower(_op, mpc=_note)(_fn)


# --- comparisons and logic --------------------------------------------------------------------

for _ops, _fn in (
    ((aten.eq.Tensor, aten.eq.Scalar), jnp.equal),
    ((aten.ne.Tensor, aten.ne.Scalar), jnp.not_equal),
    ((aten.lt.Tensor, aten.lt.Scalar), jnp.less),
    ((aten.le.Tensor, aten.le.Scalar), jnp.less_equal),
    ((aten.gt.Tensor, aten.gt.Scalar), jnp.greater),
    ((aten.ge.Tensor, aten.ge.Scalar), jnp.greater_equal),
):
    lower(*_ops, note=_CMP)(_fn)


@lower(aten.logical_not.default)
def logical_not(x):
    return jnp.logical_not(x)


@lower(aten.logical_and.default, aten.bitwise_and.Tensor, aten.bitwise_and.Scalar)
def logical_and(x, y):
    return jnp.logical_and(x, y) if _both_bool(x, y) else jnp.bitwise_and(x, y)


@lower(aten.logical_or.default, aten.bitwise_or.Tensor, aten.bitwise_or.Scalar)
def logical_or(x, y):
    return jnp.logical_or(x, y) if _both_bool(x, y) else jnp.bitwise_or(x, y)


@lower(aten.bitwise_not.default)
def bitwise_not(x):
    return jnp.logical_not(x) if jnp.result_type(x) == jnp.bool_ else jnp.bitwise_not(x)


def _both_bool(x, y):
    return jnp.result_type(x) == jnp.bool_ and jnp.result_type(y) == jnp.bool_


@lower(
    aten.where.self,
    note="a constant condition is a public select (cheap), a secret one costs a multiplication",
)
def where(cond, x, y):
    return jnp.where(cond, x, y)
