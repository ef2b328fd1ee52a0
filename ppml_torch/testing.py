"""Comparing MPC results with plaintext in tests: one helper, :func:`assert_close`.

SPU computes in fixed point (18 fraction bits on FM64, 26 on FM128 by default), so every MPC
result is an approximation.  A result passes when, element by element, the absolute error is
within ``atol`` or the relative error within ``rtol`` (``|a - e| <= atol + rtol * |e|``).

The per-protocol tolerances are the library's own (``TOLERANCES`` in
:mod:`ppml_torch.equivalence.tolerances`, where ``ppml_torch.check_equivalence`` adds the
measured errors of the approximated ops a program uses); :func:`tolerance` picks one, or the
plaintext one of a test comparing plaintext with plaintext.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ppml_torch.equivalence.tolerances import Tolerance, base
from ppml_torch.runners.config import DEFAULT_FIELD

__all__ = ["PLAINTEXT", "Tolerance", "assert_close", "max_abs_error", "tolerance"]

# plaintext against plaintext (a test's own reference): float32 rounding only
PLAINTEXT = Tolerance(atol=1e-5, rtol=1e-5)


def tolerance(protocol: str | None = None, field: str | None = None) -> Tolerance:
    """The tolerance for a protocol/field (the library's table); ``None`` means plaintext."""
    return PLAINTEXT if protocol is None else base(protocol, field)


def max_abs_error(actual: Any, expected: Any) -> float:
    """Largest absolute difference over all leaves of two pytrees of the same structure."""
    a_leaves = jax.tree_util.tree_leaves(actual)
    e_leaves = jax.tree_util.tree_leaves(expected)
    if len(a_leaves) != len(e_leaves):
        raise AssertionError(f"different structures: {len(a_leaves)} vs {len(e_leaves)} arrays")
    err = 0.0
    for a, e in zip(a_leaves, e_leaves, strict=True):
        a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
        if a.size:
            err = max(err, float(np.max(np.abs(a - e))))
    return err


def assert_close(
    actual: Any,
    expected: Any,
    *,
    protocol: str | None = None,
    field: str | None = None,
    tol: Tolerance | None = None,
    what: str = "",
) -> float:
    """Assert two pytrees agree within the protocol/field tolerance; return the max abs error.

    The failure message names what was compared, the tolerance, the largest error, where it
    is and the two values there.
    """
    tol = tol or tolerance(protocol, field)
    a_leaves, a_tree = jax.tree_util.tree_flatten(actual)
    e_leaves, e_tree = jax.tree_util.tree_flatten(expected)
    label = f"{what} " if what else ""
    setting = f"{protocol}/{field or DEFAULT_FIELD}" if protocol else "plaintext"
    if a_tree != e_tree:
        raise AssertionError(f"{label}structure differs: {a_tree} vs {e_tree}")
    worst = 0.0
    for i, (a, e) in enumerate(zip(a_leaves, e_leaves, strict=True)):
        a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
        if a.shape != e.shape:
            raise AssertionError(f"{label}leaf {i}: shape {a.shape} vs expected {e.shape}")
        if not a.size:
            continue
        diff = np.abs(a - e)
        worst = max(worst, float(diff.max()))
        bad = diff > tol.atol + tol.rtol * np.abs(e)
        if bad.any():
            idx = np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), a.shape)
            raise AssertionError(
                f"{label}({setting}, atol={tol.atol:g}, rtol={tol.rtol:g}): leaf {i} shape "
                f"{a.shape}: {int(bad.sum())} of {a.size} elements out of tolerance; largest "
                f"error {diff.max():.3g}; at {tuple(int(j) for j in idx)} got {a[idx]:.6g}, "
                f"expected {e[idx]:.6g} (expected values span [{e.min():.4g}, {e.max():.4g}])"
            )
    return worst
