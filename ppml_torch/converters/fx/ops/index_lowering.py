"""The gather policy for secret indices: the one place that lowers gathers.

Gathers on constant indices (:func:`take_const`) are public under MPC.  Gathers on
indices computed from inputs (:func:`take_input`, :func:`take_along_input`; secret under
MPC: token ids, class labels) take the conversion option ``index_lowering``
(:class:`~ppml_torch.converters.fx.registry.LoweringOptions`):

* ``"take"``: a gather with secret indices; SPU runs it as a loop of secret-index slices,
  one per index (many rounds, bytes growing with log(table size) under ABY3, linearly
  under SEMI2K).
* ``"one_hot"``: ``one_hot(indices)`` times the table: one secret equality per (index,
  table entry) and a matmul or a sum, in a few rounds.
* ``"auto"``: ``"one_hot"`` up to ``AUTO_ONE_HOT_MAX`` table entries, ``"take"`` above.

Both give the same gradient with respect to the table, a one-hot product (for ``"take"``
a custom JVP whose tangent is the one-hot product): JAX's own gradient of a gather is a
scatter-add with secret indices, which costs orders of magnitude more bytes and time under
SPU.  What each form costs, per protocol: ``bench/README.md`` (``bench_index_lowering.py``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_IN_BOUNDS = lax.GatherScatterMode.PROMISE_IN_BOUNDS

# the op-table note of every lowering that gathers on input indices
INPUT_INDEX_NOTE = (
    "convert's index_lowering: 'auto' (default: one-hot up to 64 entries, else a gather), "
    "'take', a secret-index gather (cheapest under ABY3), "
    "or 'one_hot', a one-hot product (fewer bytes under SEMI2K/CHEETAH and for few classes); "
    "the gradient is a one-hot product in both"
)


def one_hot(index: Any, n: int, dtype: Any) -> Any:
    """``index[..., None] == arange(n)`` as ``dtype``; the arange is a numpy constant."""
    return (jnp.expand_dims(index, -1) == np.arange(n, dtype=np.int32)).astype(dtype)


def _gather_rows(x: Any, idx: Any) -> Any:
    """``x[idx]`` along axis 0 (result ``idx.shape + x.shape[1:]``); ``idx`` in [0, len(x))."""
    dnums = lax.GatherDimensionNumbers(
        offset_dims=tuple(range(idx.ndim, idx.ndim + x.ndim - 1)),
        collapsed_slice_dims=(0,),
        start_index_map=(0,),
    )
    # in-bounds promise: no bounds masking on top of the gather (jnp.take's default mode adds
    # compares and selects, secret under MPC; XLA clamps out-of-range starts anyway)
    return lax.gather(x, idx[..., None], dnums, (1,) + x.shape[1:], mode=_IN_BOUNDS)


def take_const(x: Any, idx: Any, axis: int) -> Any:
    """``take`` with constant (numpy) indices, normalized here so the program has no index math."""
    n = x.shape[axis]
    idx = np.asarray(idx)
    idx = np.where(idx < 0, idx + n, idx).astype(np.int32)
    return _take_moved(jnp.asarray(x), idx, axis, _gather_rows)


def resolve_index_lowering(index_lowering: str, n: int) -> str:
    """``"auto"`` -> ``"one_hot"`` for at most ``AUTO_ONE_HOT_MAX`` entries, else ``"take"``."""
    if index_lowering != "auto":
        return index_lowering
    from ppml_torch.converters.fx.registry import AUTO_ONE_HOT_MAX

    return "one_hot" if n <= AUTO_ONE_HOT_MAX else "take"


def take_input(x: Any, idx: Any, axis: int, index_lowering: str) -> Any:
    """``numpy.take(x, idx, axis)`` for indices computed from inputs (secret under MPC).

    Indices must lie in ``[0, x.shape[axis])``: torch raises for others, secret values
    cannot be checked, and the two forms differ there (``"take"`` clamps, ``"one_hot"``
    gives zeros).
    """
    form = resolve_index_lowering(index_lowering, x.shape[axis])
    rows = _one_hot_rows if form == "one_hot" else _gather_rows_one_hot_grad
    return _take_moved(jnp.asarray(x), jnp.asarray(idx).astype(jnp.int32), axis, rows)


def take_along_input(x: Any, idx: Any, axis: int, index_lowering: str) -> Any:
    """``numpy.take_along_axis(x, idx, axis)`` for indices computed from inputs.

    ``idx`` has ``x``'s rank and, off ``axis``, ``x``'s extents; its values lie in
    ``[0, x.shape[axis])`` (as for :func:`take_input`).
    """
    x = jnp.moveaxis(jnp.asarray(x), axis, -1)  # entries last
    idx = jnp.moveaxis(jnp.asarray(idx).astype(jnp.int32), axis, -1)
    if resolve_index_lowering(index_lowering, x.shape[-1]) == "one_hot":
        out = _take_along_last_one_hot(x, idx)
    else:
        out = _take_along_last_one_hot_grad(x, idx)
    return jnp.moveaxis(out, -1, axis)


# --- the two forms --------------------------------------------------------------------------


def _take_moved(x: Any, idx: Any, axis: int, rows: Any) -> Any:
    """Apply ``rows`` (a take along axis 0) to ``x`` with ``axis`` moved first, then move back."""
    out = rows(jnp.moveaxis(x, axis, 0), idx)  # idx.shape + rest
    nd = np.ndim(idx)
    return jnp.moveaxis(out, tuple(range(nd)), tuple(range(axis, axis + nd)))


def _one_hot_rows(x: Any, idx: Any) -> Any:
    """``one_hot(idx) @ x``: (..., n) x (n, rest) -> (..., rest)."""
    return jnp.tensordot(one_hot(idx, x.shape[0], x.dtype), x, axes=1)


@jax.custom_jvp
def _gather_rows_one_hot_grad(x: Any, idx: Any) -> Any:
    """``x[idx]`` as a gather, differentiated as a one-hot product (no secret-index scatter)."""
    return _gather_rows(x, idx)


@_gather_rows_one_hot_grad.defjvp
def _gather_rows_jvp(primals: Any, tangents: Any) -> tuple[Any, Any]:
    (x, idx), (dx, _) = primals, tangents
    return _gather_rows(x, idx), _one_hot_rows(dx, idx)  # transposes to one_hot(idx)^T @ ct


def _take_along_last_one_hot(x: Any, idx: Any) -> Any:
    """``out[..., j] = sum_c x[..., c] * (idx[..., j] == c)``."""
    hot = one_hot(idx, x.shape[-1], x.dtype)  # (..., k, n)
    return jnp.sum(hot * jnp.expand_dims(x, -2), axis=-1)


def _gather_along_last(x: Any, idx: Any) -> Any:
    """``out[..., j] = x[..., idx[..., j]]`` as one gather: public iotas for the leading dims."""
    shape = idx.shape + (1,)
    starts = [lax.broadcasted_iota(jnp.int32, shape, d) for d in range(idx.ndim - 1)]
    dnums = lax.GatherDimensionNumbers(
        offset_dims=(),
        collapsed_slice_dims=tuple(range(x.ndim)),
        start_index_map=tuple(range(x.ndim)),
    )
    starts = lax.concatenate([*starts, idx[..., None]], idx.ndim)
    return lax.gather(x, starts, dnums, (1,) * x.ndim, mode=_IN_BOUNDS)


@jax.custom_jvp
def _take_along_last_one_hot_grad(x: Any, idx: Any) -> Any:
    """:func:`_gather_along_last`, differentiated as a one-hot product."""
    return _gather_along_last(x, idx)


@_take_along_last_one_hot_grad.defjvp
def _take_along_jvp(primals: Any, tangents: Any) -> tuple[Any, Any]:
    (x, idx), (dx, _) = primals, tangents
    return _gather_along_last(x, idx), _take_along_last_one_hot(dx, idx)
