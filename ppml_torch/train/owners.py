"""Blocks of a session that holds only some parties' data (one process per party).

Each owner loads its own blocks and announces their shapes and dtypes to every party (public
metadata, :meth:`Session.announce`); every other block becomes a ``jax.ShapeDtypeStruct``
placeholder of the announced shape.  A loader's failure is announced too, so every process
stops with the same one line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ppml_torch.errors import PpmlError
from ppml_torch.runners.placeholders import is_placeholder

Block = Any  # a ppml_torch.train.data.Block (not imported: data imports this module)


def _placeholder(shape: tuple[int, ...], dtype: str) -> Any:
    import jax

    return jax.ShapeDtypeStruct(tuple(shape), np.dtype(dtype))


def local_blocks(
    blocks: Sequence[Block], local: Sequence[str]
) -> tuple[dict[int, np.ndarray], dict[str, Any]]:
    """Load the blocks of the ``local`` parties: ``({block index: array}, {party: metadata})``,
    the metadata being ``{block index: (shape, dtype)}`` or ``{"error": one line}``."""
    arrays: dict[int, np.ndarray] = {}
    meta: dict[str, Any] = {p: {} for p in local}
    for i, b in enumerate(blocks):
        if b.owner not in local or "error" in meta[b.owner]:
            continue
        try:
            arrays[i] = b.load()
        except PpmlError as e:
            meta[b.owner] = {"error": str(e)}
            continue
        meta[b.owner][i] = (tuple(int(d) for d in arrays[i].shape), arrays[i].dtype.str)
    return arrays, meta


def owners_blocks(
    blocks: Sequence[Block],
    local: Sequence[str],
    announce: Callable[[Callable], dict] | None,
    error: type[Exception],
) -> list[Any]:
    """Each block as an array where its owner's process is this one, else as a placeholder
    with the shape and dtype its owner announced (public metadata); problems are ``error``."""
    arrays, meta = local_blocks(blocks, local)
    if announce is None:
        every = meta
    else:
        every = announce(functools.partial(_meta_of, meta))
    for b in blocks:  # the first error in block order, the same line in every process
        err = (every.get(b.owner) or {}).get("error")
        if err:
            raise error(err)
    out = []
    for i, b in enumerate(blocks):
        if i in arrays:
            out.append(arrays[i])
            continue
        shape, dtype = every[b.owner][i]
        out.append(_placeholder(shape, dtype))
        if not callable(b.value):  # a placeholder (or an array): its shape must match
            _check_declared(b, shape, dtype, error)
    return out


def _meta_of(meta: dict[str, Any], party: str) -> dict[int, Any]:
    return meta.get(party, {})


def _check_declared(
    block: Block, shape: tuple[int, ...], dtype: str, error: type[Exception]
) -> None:
    from ppml_torch.dtypes import jax_dtype_name

    v = block.value
    if hasattr(v, "detach"):  # a torch tensor given outside its owner's process
        v = v.detach().cpu().numpy()
    got_shape = tuple(int(d) for d in np.shape(v)) if not is_placeholder(v) else tuple(v.shape)
    got_dtype = np.dtype(v.dtype if hasattr(v, "dtype") else np.asarray(v).dtype)
    if got_shape != tuple(shape) or jax_dtype_name(got_dtype) != jax_dtype_name(dtype):
        raise error(
            f"data: this process describes {block.owner}'s block as {jax_dtype_name(got_dtype)}"
            f"{list(got_shape)} but {block.owner} holds {jax_dtype_name(dtype)}{list(shape)}; "
            "describe the owner's data exactly (or give a loader)"
        )
