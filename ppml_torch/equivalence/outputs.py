"""Outputs as ``{pytree path: array}`` and their comparison with torch's, element by element."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .inputs import EquivalenceError
from .report import Mismatch
from .tolerances import Tolerance


def flatten_outputs(tree: Any, name: str, where: str, *, raw: bool = False) -> dict[str, Any]:
    """``{"['logits']": array, "[0]": array}``; a bare tensor has path ``""``.

    Dicts (HF ``ModelOutput``) by key, tuples and lists by index; ``None`` is skipped.
    ``raw`` keeps torch tensors as they are (for autograd), otherwise numpy/JAX arrays.
    """
    out: dict[str, Any] = {}

    def visit(x: Any, path: str) -> None:
        if x is None:
            return
        if hasattr(x, "shape") and hasattr(x, "dtype"):
            if raw:
                out[path] = x
            elif hasattr(x, "detach"):
                out[path] = x.detach().cpu().numpy()
            else:
                out[path] = x
            return
        if isinstance(x, Mapping):
            for k, v in x.items():
                visit(v, f"{path}[{k!r}]")
            return
        if isinstance(x, (tuple, list)):
            for i, v in enumerate(x):
                visit(v, f"{path}[{i}]")
            return
        raise EquivalenceError(
            f"{name} ({where}) returns a {type(x).__name__} at output{path}; outputs must be "
            "tensors or tuples/lists/dicts of them (for HF models pass use_cache=False)"
        )

    visit(tree, "")
    return out


def compare(
    expected: Mapping[str, Any], got: Mapping[str, Any], tol: Tolerance, what: str
) -> tuple[float, Mismatch | None]:
    """Largest absolute error over every path, and the worst element out of tolerance.

    Outputs: an element passes when ``|got - e| <= atol + rtol * |e|``.  Gradients (``what ==
    "grad"``) are sums over the batch, whose fixed-point error grows with the sum, not with
    each element: ``rtol`` there is relative to the largest ``|e|`` of the parameter.
    """
    worst = 0.0
    first: Mismatch | None = None
    for path, e in expected.items():
        e = np.asarray(e, np.float64)
        a = np.asarray(got[path], np.float64)
        if a.shape != e.shape:
            raise AssertionError(f"{what}{path}: shape {a.shape}, torch gives {e.shape}")
        if not e.size:
            continue
        diff = np.abs(a - e)
        diff = np.where(np.isnan(diff), np.inf, diff)
        worst = max(worst, float(diff.max()))
        scale = np.abs(e).max() if what == "grad" else np.abs(e)
        bad = diff > tol.atol + tol.rtol * scale
        if bad.any() and first is None:
            idx = np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), e.shape)
            first = Mismatch(
                what, path, tuple(int(i) for i in idx), float(e[idx]), float(a[idx]),
                int(bad.sum()), int(e.size),
            )  # fmt: skip
    return worst, first
