"""Is padding a batch exact for this model?  A plaintext check, run before any session work.

A graph-route program has the batch shape of its conversion.  ``fit`` runs the kept partial
batch of ``p`` rows through the batch-shape program instead of converting the module again:
the step takes the last ``batch_size`` rows of the epoch (the partial batch's ``p`` rows are
the last of them, the rows before are real rows of the previous batch used as padding) and
computes the loss on the last ``p`` outputs only.  That equals the unpadded step when the model
is *row-wise*: the output of a row depends on that row alone, the same way at every position
and batch size.  Then the ``p`` outputs, the loss and its gradient are those of the ``p`` rows
alone (the padding rows get a zero output gradient, and a row-wise model adds nothing from
them to the parameters' gradients).

What is row-wise is not always visible from the module's classes (a ``forward`` may normalise
over the batch, or reshape rows together), so :func:`padding_is_exact` checks the converted
program itself, in plaintext, on random inputs of the batch's shape:

1. the last ``p`` outputs do not change, bit for bit, when the other rows are drawn again
   (no output reads another row);
2. they match the torch module run on those ``p`` rows alone (nothing depends on the
   position or on the batch size).

Batch norm in training mode (batch statistics) is refused by the converter before this check;
batch norm in eval mode is row-wise and passes.  ``fit`` does not try a model with
training-mode dropout, named inputs or its own loss (it converts the partial shape instead:
a mask is drawn for the batch's shape, and an own loss reads every row).

Under MPC the padding rows' output gradient is an exact (shared) zero, but truncating a shared
zero may leave one fixed-point step (2^-18 on FM64): truncation noise of the size each real
row's terms already carry, not a change of the result.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# (1) is exact: same program, same shapes, so the same arithmetic on the same row.  (2) compares
# JAX with torch (different kernels): float32 rounding only.
_RTOL = 1e-4
_ATOL = 1e-5


def random_rows(model: Any, shape: tuple[int, ...], dtype: Any, rng: np.random.Generator):
    """Random model inputs of ``shape``: normal floats, or ids inside the input's table."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    if np.issubdtype(dtype, np.integer):
        specs = getattr(model, "inputs", ()) or ()
        size = specs[0].index_size if specs and specs[0].index_size else 2
        return rng.integers(0, size, size=shape).astype(dtype)
    return rng.normal(size=shape).astype(dtype)


def padding_is_exact(
    module: Any,
    model: Any,
    params: Any,
    batch_size: int,
    rows: int,
    row_shape: tuple[int, ...],
    dtype: Any,
) -> str | None:
    """``None`` if the last ``rows`` outputs of ``model``'s batch-shape program are those of the
    ``rows`` rows alone (see the module docstring), else the reason they are not (one line)."""
    import torch

    rng = np.random.default_rng(0)
    pad = batch_size - rows
    x1 = random_rows(model, (batch_size, *row_shape), dtype, rng)
    x2 = x1.copy()
    x2[:pad] = random_rows(model, (pad, *row_shape), dtype, rng)
    try:
        o1, o2 = (np.asarray(model.apply(params, x)) for x in (x1, x2))
    except Exception as e:  # noqa: BLE001 - a reason, not a failure: fit converts the shape
        return f"the program did not run on random rows ({type(e).__name__}: {e})"
    if o1.ndim == 0 or o1.shape[0] != batch_size:
        return f"its output {o1.shape} does not have the batch's {batch_size} rows first"
    if not np.array_equal(o1[pad:], o2[pad:]):
        return "the output of a row changes with the other rows of the batch"
    xt = torch.as_tensor(x1[pad:])
    if xt.dtype == torch.int32:
        xt = xt.long()
    try:
        with torch.no_grad():
            ref = module(xt)
    except Exception as e:  # noqa: BLE001
        return f"the module does not run on {rows} rows ({type(e).__name__}: {e})"
    if not isinstance(ref, torch.Tensor) or tuple(ref.shape) != o1[pad:].shape:
        return f"the module's output on {rows} rows is not the program's last {rows} rows"
    ref = ref.detach().float().numpy()
    tol = _ATOL * max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    if not np.allclose(o1[pad:], ref, rtol=_RTOL, atol=tol):
        diff = float(np.max(np.abs(o1[pad:] - ref)))
        return (
            f"the batch-shape program's last {rows} rows differ from the module on those rows "
            f"alone (max |diff| {diff:.3g}): it depends on the position or the batch size"
        )
    return None


def chunked(apply_fn: Any, batch: int, n: int):
    """``apply(params, x)`` for ``n`` rows through a program of ``batch`` rows, row-wise models.

    The rows are cut into ``ceil(n / batch)`` chunks (the last one filled up with the first
    rows again: real inputs, their outputs dropped) and run as ONE batched computation
    (``jax.vmap``: the same number of MPC rounds as one call on every row), then cut back to
    ``n`` rows.
    """
    import jax
    import jax.numpy as jnp

    k = -(-n // batch)
    idx = np.arange(k * batch) % n  # public row order

    def run(params, x):
        xs = jnp.take(x, idx, axis=0) if k * batch != n else x
        xs = xs.reshape(k, batch, *x.shape[1:])
        out = jax.vmap(apply_fn, in_axes=(None, 0))(params, xs)
        return jax.tree_util.tree_map(lambda o: o.reshape(k * batch, *o.shape[2:])[:n], out)

    return run


def chunks_are_exact(
    module: Any,
    model: Any,
    params: Any,
    batch: int,
    n: int,
    row_shape: tuple[int, ...],
    dtype: Any,
) -> str | None:
    """``None`` if :func:`chunked` of ``model`` (``batch`` rows) equals the torch module on
    ``n`` rows: :func:`padding_is_exact`, then both run on the same random ``n`` rows."""
    import torch

    reason = padding_is_exact(module, model, params, batch, max(1, batch // 2), row_shape, dtype)
    if reason is not None:
        return reason
    x = random_rows(model, (n, *row_shape), dtype, np.random.default_rng(1))
    got = np.asarray(chunked(model.apply, batch, n)(params, x))
    xt = torch.as_tensor(x)
    if xt.dtype == torch.int32:
        xt = xt.long()
    try:
        with torch.no_grad():
            ref = module(xt)
    except Exception as e:  # noqa: BLE001
        return f"the module does not run on {n} rows ({type(e).__name__}: {e})"
    if not isinstance(ref, torch.Tensor) or tuple(ref.shape) != got.shape:
        return f"the module's output on {n} rows is not {got.shape}"
    ref = ref.detach().float().numpy()
    tol = _ATOL * max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    if not np.allclose(got, ref, rtol=_RTOL, atol=tol):
        return f"{n} rows in chunks of {batch} differ from the module on {n} rows"
    return None
