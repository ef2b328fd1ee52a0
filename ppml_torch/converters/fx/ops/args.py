"""Helpers for the arguments the lowerings receive: constants or arrays, ATen dims."""

from __future__ import annotations

from typing import Any

import jax


def is_const(x: Any) -> bool:
    """True for values folded at convert time (numpy arrays, Python scalars): public under MPC."""
    return not isinstance(x, jax.Array)


def norm_dim(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def norm_dims(dims: Any, ndim: int) -> tuple[int, ...]:
    """ATen ``int[]? dim``: None or [] means all dims (for reductions)."""
    if dims is None:
        return tuple(range(ndim))
    if isinstance(dims, int):
        dims = [dims]
    if len(dims) == 0:
        return tuple(range(ndim))
    return tuple(norm_dim(d, max(ndim, 1)) for d in dims)
