"""Weight checks shared by models and converters: the error type and the check before any copy.

Whatever moves tensors between two naming schemes (a HF checkpoint into nanoGPT, torch
``state_dict`` names into Flax paths, a params file into a torch module) compares the two
sides key by key and shape by shape *before* anything is copied, and reports every
disagreement in one message, so a wrong config is fixed in one go.

This module is low in the layers: it imports no model, converter or runner (numpy at
import, torch only inside :func:`load_into_torch`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import PpmlError

__all__ = ["Shape", "WeightMapError", "check_shapes", "load_into_torch", "shape_of"]

Shape = tuple[int, ...]
_SHOWN = 40  # shape mismatches named in one message


class WeightMapError(PpmlError, ValueError):
    """Weights and target model disagree (keys, shapes or layers); nothing was copied."""


def shape_of(x: object) -> Shape:
    """The shape of a torch tensor, numpy or JAX array as a plain tuple of ints."""
    return tuple(int(d) for d in np.shape(x))


def check_shapes(
    expected: Mapping[str, Shape],
    actual: Mapping[str, Shape],
    *,
    what: str,
    fix: str,
    expected_name: str = "model",
    actual_name: str = "weights",
) -> None:
    """Raise :class:`WeightMapError` unless both sides have the same keys and shapes.

    ``expected`` is what the target model needs, ``actual`` what the weights provide.
    The message (one line) lists missing keys, unexpected keys and the shape
    disagreements (``key: model (a, b) vs weights (c, d)``, the first 40), then ``fix``.
    """
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    mismatched = [
        (k, tuple(expected[k]), tuple(actual[k]))
        for k in sorted(set(expected) & set(actual))
        if tuple(expected[k]) != tuple(actual[k])
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = [f"{what}: the weights do not fit the model; nothing was copied"]
    if missing:
        parts.append(f"missing in {actual_name} ({len(missing)}): " + _short(missing))
    if unexpected:
        parts.append(f"not in {expected_name} ({len(unexpected)}): " + _short(unexpected))
    if mismatched:
        shown = ", ".join(f"{k}: {e} vs {a}" for k, e, a in mismatched[:_SHOWN])
        more = f", ... and {len(mismatched) - _SHOWN} more" if len(mismatched) > _SHOWN else ""
        parts.append(
            f"shape mismatches ({len(mismatched)}), {expected_name} vs {actual_name}: {shown}{more}"
        )
    parts.append(f"fix: {fix}")
    raise WeightMapError("; ".join(parts))


def _short(keys: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_into_torch(
    module: Any, arrays: Mapping[str, Any], *, what: str, fix: str | None = None
) -> None:
    """``module.load_state_dict(arrays, strict=True)`` after checking every key and shape.

    torch's own ``load_state_dict`` copies the tensors that fit before it reports those
    that do not; this copies nothing unless everything fits.  ``arrays``: numpy arrays or
    torch tensors.
    """
    import torch

    target = module.state_dict()
    check_shapes(
        {k: tuple(v.shape) for k, v in target.items()},
        {k: shape_of(v) for k, v in arrays.items()},
        what=what,
        fix=fix or "build the torch module with the same config as the weights' model",
        expected_name="torch module",
        actual_name="weights",
    )
    module.load_state_dict(
        {
            k: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.array(v, copy=True))
            for k, v in arrays.items()
        },
        strict=True,
    )
