"""Shapes, indexing, copies, dtype casts and tensor creation.

MPC notes: reshapes, permutes, slices and concatenations move shares around
locally (free).  Indexing with constant indices is a public gather (free);
``gather``, ``index_select`` and ``index`` with indices computed from inputs
(secret) take the conversion option ``index_lowering`` (a gather or a one-hot
product, see :mod:`.index_lowering`).  Creation ops (full, arange, scalar_tensor) have no
tensor inputs, so the converter always folds them to constants at convert time.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import torch

from ppml_torch.converters.fx import registry
from ppml_torch.converters.fx.dtypes import to_jnp
from ppml_torch.converters.fx.ops.args import is_const, norm_dim
from ppml_torch.converters.fx.ops.index_lowering import (
    INPUT_INDEX_NOTE,
    take_along_input,
    take_const,
    take_input,
)

aten = torch.ops.aten
lower, refuse = registry.family("shapes")

_FOLDED = "no tensor inputs: always folded to a constant at convert time"
_INDEX = "constant indices: a public gather (free); indices that are inputs: " + INPUT_INDEX_NOTE
_OPT = ("index_lowering",)

# --- views and copies -------------------------------------------------------------------------


@lower(aten.view.default, aten._unsafe_view.default, aten.reshape.default)
def view(x, shape):
    return jnp.reshape(x, tuple(shape))


@lower(aten.permute.default)
def permute(x, dims):
    return jnp.transpose(x, tuple(dims))


@lower(aten.transpose.int)
def transpose(x, dim0, dim1):
    return jnp.swapaxes(x, dim0, dim1)


@lower(aten.t.default)
def t(x):
    return jnp.transpose(x)


@lower(aten.expand.default)
def expand(x, size, implicit=False):
    size = tuple(size)
    lead = len(size) - jnp.ndim(x)
    shape = tuple(
        jnp.shape(x)[i - lead] if (s == -1 and i >= lead) else s for i, s in enumerate(size)
    )
    return jnp.broadcast_to(x, shape)


@lower(aten.unsqueeze.default)
def unsqueeze(x, dim):
    return jnp.expand_dims(x, norm_dim(dim, jnp.ndim(x) + 1))


@lower(aten.squeeze.default)
def squeeze(x):
    return jnp.squeeze(x)


@lower(aten.squeeze.dim, aten.squeeze.dims)
def squeeze_dims(x, dim):
    dims = [dim] if isinstance(dim, int) else list(dim)
    nd = max(jnp.ndim(x), 1)
    axes = tuple(d for d in (norm_dim(d, nd) for d in dims) if jnp.ndim(x) and jnp.shape(x)[d] == 1)
    return jnp.squeeze(x, axis=axes) if axes else x


@lower(aten.clone.default, aten.alias.default, aten.lift_fresh_copy.default, aten.detach.default)
def clone(x, memory_format=None):
    return x


@lower(aten._to_copy.default, note="a dtype conversion (never a bitcast)")
def to_copy(
    x, dtype=None, layout=None, device=None, pin_memory=None, non_blocking=False, memory_format=None
):
    return x if dtype is None else jnp.asarray(x).astype(to_jnp(dtype))


@lower(aten.copy.default)
def copy(x, src, non_blocking=False):
    return jnp.broadcast_to(jnp.asarray(src).astype(jnp.result_type(x)), jnp.shape(x))


def _as_strided_check(x, size, stride, storage_offset=None):
    val = x.meta.get("val") if hasattr(x, "meta") else None
    if val is not None and not val.is_contiguous():
        return (
            f"as_strided on a non-contiguous tensor (strides {list(val.stride())}): converted "
            "arrays are row-major, so its memory layout is not known here; call .contiguous() "
            "before the strided view"
        )
    return None


@lower(
    aten.as_strided.default,
    note="a public gather from the row-major input (refused on non-contiguous inputs)",
    check=_as_strided_check,
)
def as_strided(x, size, stride, storage_offset=None):
    idx = np.full(tuple(size), storage_offset or 0, np.int64)
    for d, (n, st) in enumerate(zip(size, stride, strict=True)):
        shape = [1] * len(size)
        shape[d] = n
        idx = idx + np.arange(n).reshape(shape) * st
    if np.array_equal(idx.ravel(), np.arange(idx.size)) and idx.size == np.size(x):
        return jnp.reshape(x, tuple(size))  # the same elements in the same order
    return jnp.take(jnp.ravel(x), idx.astype(np.int32))


@lower(aten._assert_tensor_metadata.default, note="a trace-time check; nothing at run time")
def assert_tensor_metadata(*args, **kwargs):
    return None


# --- slicing, joining, splitting ----------------------------------------------------------------


def _index_along(ndim, dim, idx):
    return (slice(None),) * norm_dim(dim, ndim) + (idx,)


def _slice(x, dim, start, end, step):
    """Python slice semantics, normalized to the dim size (torch passes end=2**63-1 for ':')."""
    n = jnp.shape(x)[norm_dim(dim, jnp.ndim(x))]
    return _index_along(jnp.ndim(x), dim, slice(*slice(start, end, step).indices(n)))


@lower(aten.slice.Tensor)
def slice_(x, dim=0, start=None, end=None, step=1):
    return x[_slice(x, dim, start, end, step)]


@lower(aten.select.int)
def select(x, dim, index):
    return x[_index_along(jnp.ndim(x), dim, index)]


@lower(aten.slice_scatter.default)
def slice_scatter(x, src, dim=0, start=None, end=None, step=1):
    return jnp.asarray(x).at[_slice(x, dim, start, end, step)].set(src)


@lower(aten.select_scatter.default)
def select_scatter(x, src, dim, index):
    return jnp.asarray(x).at[_index_along(jnp.ndim(x), dim, index)].set(src)


@lower(aten.cat.default)
def cat(tensors, dim=0):
    tensors = [
        t for t in tensors if not (jnp.ndim(t) == 1 and jnp.shape(t)[0] == 0)
    ]  # torch skips empty 1-d
    return jnp.concatenate(tensors, axis=dim)


@lower(aten.stack.default)
def stack(tensors, dim=0):
    return jnp.stack(tensors, axis=dim)


@lower(aten.split_with_sizes.default)
def split_with_sizes(x, split_sizes, dim=0):
    bounds = np.cumsum(split_sizes)[:-1].tolist()
    return tuple(jnp.split(x, bounds, axis=dim))


@lower(aten.split.Tensor)
def split(x, split_size, dim=0):
    n = jnp.shape(x)[dim]
    sizes = [min(split_size, n - i) for i in range(0, n, split_size)]
    return split_with_sizes(x, sizes, dim)


@lower(aten.unbind.int)
def unbind(x, dim=0):
    return tuple(jnp.moveaxis(x, dim, 0))


@lower(aten.flip.default)
def flip(x, dims):
    return jnp.flip(x, axis=tuple(dims))


@lower(aten.roll.default)
def roll(x, shifts, dims=()):
    if not dims:
        return jnp.roll(jnp.ravel(x), tuple(shifts)).reshape(jnp.shape(x))
    return jnp.roll(x, tuple(shifts), axis=tuple(dims))


@lower(aten.repeat.default)
def repeat(x, repeats):
    repeats = tuple(repeats)
    x = jnp.reshape(x, (1,) * (len(repeats) - jnp.ndim(x)) + jnp.shape(x))
    return jnp.tile(x, repeats)


@lower(aten.constant_pad_nd.default)
def constant_pad_nd(x, pad, value=0):
    nd = jnp.ndim(x)
    widths = [(0, 0)] * nd
    for i in range(len(pad) // 2):  # torch pads the last dim first
        widths[nd - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    if any(lo < 0 or hi < 0 for lo, hi in widths):
        raise NotImplementedError("constant_pad_nd with negative padding (cropping) is not lowered")
    return jnp.pad(x, widths, constant_values=value)


@lower(aten.tril.default)
def tril(x, diagonal=0):
    return jnp.tril(x, diagonal)


@lower(aten.triu.default)
def triu(x, diagonal=0):
    return jnp.triu(x, diagonal)


# --- indexing ---------------------------------------------------------------------------------


@lower(
    aten.index.Tensor, note=_INDEX + "; negative input indices cost a comparison each", options=_OPT
)
def index(x, indices, *, index_lowering):
    key = tuple(slice(None) if i is None else i for i in indices)
    if all(is_const(i) for i in key if not isinstance(i, slice)):
        return jnp.asarray(x)[key]
    # out = x[i1, ..., ik] over the indexed dims d1..dk, as ONE take of the merged dims
    dims = [d for d, i in enumerate(indices) if i is not None]
    sizes = [jnp.shape(x)[d] for d in dims]
    flat = 0
    for d, n in zip(dims, sizes, strict=True):
        i = indices[d]
        if is_const(i):
            i = np.asarray(i)
            i = np.where(i < 0, i + n, i).astype(np.int32)
        else:  # torch counts negative indices from the end: a secret comparison under MPC
            i = jnp.asarray(i).astype(jnp.int32)
            i = jnp.where(i < 0, i + n, i)
        flat = flat * n + i
    moved = jnp.moveaxis(jnp.asarray(x), dims, tuple(range(len(dims))))
    merged = jnp.reshape(moved, (int(np.prod(sizes)),) + jnp.shape(moved)[len(dims) :])
    out = take_input(merged, flat, 0, index_lowering)  # broadcast index shape + other dims
    if dims != list(range(dims[0], dims[0] + len(dims))):
        return out  # indexed dims apart: the index dims go first (numpy and torch rule)
    nb = jnp.ndim(flat)
    return jnp.moveaxis(out, tuple(range(nb)), tuple(range(dims[0], dims[0] + nb)))


@lower(aten.index_select.default, note=_INDEX, options=_OPT)
def index_select(x, dim, idx, *, index_lowering):
    dim = norm_dim(dim, jnp.ndim(x))
    if is_const(idx):
        return take_const(jnp.asarray(x), np.reshape(idx, (-1,)), dim)
    return take_input(x, jnp.reshape(idx, (-1,)), dim, index_lowering)


@lower(
    aten.gather.default,
    note="constant index: a public gather; index that is an input (e.g. the class labels of "
    "a cross entropy): " + INPUT_INDEX_NOTE,
    options=_OPT,
)
def gather(x, dim, idx, sparse_grad=False, *, index_lowering):
    dim = norm_dim(dim, jnp.ndim(x))
    # torch allows index extents smaller than x's in the other dims
    x = jnp.asarray(x)[
        tuple(slice(0, s) if d != dim else slice(None) for d, s in enumerate(np.shape(idx)))
    ]
    if is_const(idx):
        return jnp.take_along_axis(x, np.asarray(idx), axis=dim)
    return take_along_input(x, idx, dim, index_lowering)


# --- creation (always folded; kept so a graph can be interpreted without folding) ----------------


def _dtype_or(dtype, default):
    return to_jnp(dtype) if dtype is not None else default


@lower(aten.full.default, note=_FOLDED)
def full(size, fill_value, dtype=None, layout=None, device=None, pin_memory=None):
    default = (
        jnp.float32
        if isinstance(fill_value, float)
        else (jnp.bool_ if isinstance(fill_value, bool) else jnp.int32)
    )
    return jnp.full(tuple(size), fill_value, dtype=_dtype_or(dtype, default))


@lower(aten.full_like.default)
def full_like(
    x, fill_value, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None
):
    return jnp.full(jnp.shape(x), fill_value, dtype=_dtype_or(dtype, jnp.result_type(x)))


@lower(aten.scalar_tensor.default, note=_FOLDED)
def scalar_tensor(s, dtype=None, layout=None, device=None, pin_memory=None):
    return jnp.asarray(s, dtype=_dtype_or(dtype, jnp.float32))


@lower(aten.arange.start_step, note=_FOLDED)
def arange(start, end=None, step=1, dtype=None, layout=None, device=None, pin_memory=None):
    is_float = any(isinstance(v, float) for v in (start, end, step))
    return jnp.arange(
        start, end, step, dtype=_dtype_or(dtype, jnp.float32 if is_float else jnp.int32)
    )


@lower(aten.arange.default, note=_FOLDED)
def arange_end(end, dtype=None, layout=None, device=None, pin_memory=None):
    return arange(0, end, 1, dtype=dtype)


@lower(aten.arange.start, note=_FOLDED)
def arange_start(start, end, dtype=None, layout=None, device=None, pin_memory=None):
    return arange(start, end, 1, dtype=dtype)


# --- refused ----------------------------------------------------------------------------------

refuse(
    aten.nonzero.default,
    aten.masked_select.default,
    reason="the output shape depends on the data; MPC programs need static shapes "
    "(use torch.where with a fixed-size result instead)",
)
refuse(
    aten._local_scalar_dense.default,
    reason="reads a tensor value into Python (.item(), int(t), bool(t)); secret values cannot "
    "steer the program: keep the computation in tensors",
)
refuse(
    aten.view.dtype,
    reason="a bitcast between float and int reinterprets bits; fixed-point shares have no such bits",
)
