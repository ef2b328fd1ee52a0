"""Comparing MPC results with plaintext: one helper, tolerances in one table.

SPU computes in fixed point (18 fraction bits on FM64, 26 on FM128 by default), so every MPC
result is an approximation.  A result passes when, element by element, the absolute error is
within ``atol`` or the relative error within ``rtol`` (``|a - e| <= atol + rtol * |e|``).

The tolerances below were chosen from measured errors (tests/runners/test_parity.py prints
the largest error seen per protocol/field) with head-room; they are not loosened per test.
They hold for additions and products; a model's default tolerance in
``ppml_torch.check_equivalence`` adds the measured errors of the approximated ops its program
uses (exp, tanh, softmax, ...) to them (:mod:`ppml_torch.equivalence.tolerances`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


PLAINTEXT = Tolerance(atol=1e-5, rtol=1e-5)

# (protocol, field) -> tolerance for values of order 1 after a few fixed-point operations.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    # Largest errors measured on the parity suite (elementwise, matmul, reductions, MLP forward on
    # inputs in [-2, 2]): FM64 3.5e-5 (CHEETAH), 3.3e-5 (ABY3), 2.7e-5 (SEMI2K); FM128 4.8e-7.
    # Deep models (GPT-2's exp/division/rsqrt chains) exceed these: their tests measure the error
    # and check decisions against it (top-1 margins) instead of using this table.
    ("SEMI2K", "FM64"): Tolerance(atol=2e-4, rtol=1e-3),
    ("CHEETAH", "FM64"): Tolerance(atol=2e-4, rtol=1e-3),
    ("ABY3", "FM64"): Tolerance(atol=2e-4, rtol=1e-3),
    ("SEMI2K", "FM128"): Tolerance(atol=5e-6, rtol=1e-5),
    ("CHEETAH", "FM128"): Tolerance(atol=5e-6, rtol=1e-5),
    ("ABY3", "FM128"): Tolerance(atol=5e-6, rtol=1e-5),
}


def tolerance(protocol: str | None = None, field: str | None = None) -> Tolerance:
    """The tolerance for a protocol/field; ``None`` means plaintext."""
    if protocol is None:
        return PLAINTEXT
    key = (protocol.upper(), (field or "FM64").upper())
    if key not in TOLERANCES:
        raise KeyError(f"no tolerance for {key}; add one to ppml_torch/testing.py TOLERANCES")
    return TOLERANCES[key]


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
    setting = f"{protocol}/{field or 'FM64'}" if protocol else "plaintext"
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
