"""The one table of dtype casts: JAX (and SPU) run 32-bit types, so 64-bit values are cast.

Every place that turns a user's 64-bit value into what JAX runs reads :data:`CASTS_64_TO_32`:
``Session.put`` (runners/base.py), the graph converter's torch-dtype table
(converters/fx/dtypes.py) and the ``--input`` specs of ``export-stablehlo``.

A cast that loses a value is an error (:func:`cast_to_32bit`): an integer outside the 32-bit
range, a finite float that becomes ``inf``, a nonzero float that becomes 0.  Ordinary float
rounding (float64 -> float32 keeps about 7 significant digits) is not an error; callers warn
about it once.  Imports numpy only (cheap, usable from every layer).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError

# 64-bit dtype name -> the 32-bit dtype name JAX runs it as (x64 is disabled).
CASTS_64_TO_32: dict[str, str] = {"float64": "float32", "int64": "int32", "uint64": "uint32"}


def jax_dtype_name(dtype: Any) -> str:
    """The dtype name JAX runs ``dtype`` as: ``int64`` -> ``int32``, others unchanged."""
    try:
        name = np.dtype(dtype).name
    except TypeError:  # e.g. 'bfloat16' without ml_dtypes registered
        name = str(dtype)
    return CASTS_64_TO_32.get(name, name)


def lossy_cast(arr: np.ndarray) -> str | None:
    """Why casting ``arr`` to its 32-bit type would lose a value, or None if it would not.

    Integers: a value outside the 32-bit range.  Floats: a finite value that becomes ``inf``
    or a nonzero that becomes 0 (NaN/inf inputs are someone else's check).
    """
    target = CASTS_64_TO_32.get(arr.dtype.name)
    if target is None or arr.size == 0:
        return None
    t = np.dtype(target)
    if t.kind in "iu":
        info = np.iinfo(t)
        lo, hi = arr.min(), arr.max()
        if lo < info.min or hi > info.max:
            bad = lo if lo < info.min else hi
            return (
                f"{arr.dtype.name} value {int(bad)} is outside {target}'s range "
                f"[{info.min}, {info.max}] (JAX runs 32-bit integers)"
            )
        return None
    finite = np.isfinite(arr)
    a = np.abs(np.where(finite, arr, 0))
    big = np.float64(np.finfo(t).max)
    if (a > big).any():
        return (
            f"{arr.dtype.name} value {float(a.max()):.4g} (in magnitude) becomes inf as {target} "
            f"(largest {big:.4g})"
        )
    tiny = np.float64(np.finfo(t).smallest_subnormal) / 2
    nonzero = a[a > 0]
    if nonzero.size and (nonzero <= tiny).any():
        return f"{arr.dtype.name} value {float(nonzero.min()):.4g} becomes 0 as {target}"
    return None


def cast_to_32bit(arr: np.ndarray, where: str) -> np.ndarray:
    """``arr`` in its 32-bit type; :class:`InputError` (naming ``where``) if a value is lost."""
    target = CASTS_64_TO_32.get(arr.dtype.name)
    if target is None:
        return arr
    reason = lossy_cast(arr)
    if reason:
        raise InputError(f"{where}: {reason}; scale or clip the value before passing it in")
    return arr.astype(target)
