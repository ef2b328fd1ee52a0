"""Small helpers shared by the lowering families."""

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


def take_const(x: Any, idx: Any, axis: int) -> Any:
    """``take`` with constant (numpy) indices, normalized here so the program has no index math."""
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    n = x.shape[axis]
    idx = np.asarray(idx)
    idx = np.where(idx < 0, idx + n, idx).astype(np.int32)
    moved = jnp.moveaxis(x, axis, 0)
    dnums = lax.GatherDimensionNumbers(
        offset_dims=tuple(range(idx.ndim, idx.ndim + moved.ndim - 1)),
        collapsed_slice_dims=(0,),
        start_index_map=(0,),
    )
    out = lax.gather(
        moved,
        idx[..., None],
        dnums,
        slice_sizes=(1,) + moved.shape[1:],
        mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )  # idx.shape + rest
    return jnp.moveaxis(out, tuple(range(idx.ndim)), tuple(range(axis, axis + idx.ndim)))
