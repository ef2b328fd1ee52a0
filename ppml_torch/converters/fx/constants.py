"""Constants of a converted program: folded values as numpy, made safe for fixed point.

Masking code fills with finfo.min (HF eager attention) or -inf.  Neither fits fixed point,
and SPU's exp returns garbage below about -1000, so tensor constants' entries <= -1e30 become
``MPC_FILL``: exp(MPC_FILL) is 0 in float32 and in fixed point, and a few of them added
together stay far above -1000.  (Python scalar arguments, e.g. clamp bounds, are left alone.)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ppml_torch.converters.fx.dtypes import to_numpy


@dataclasses.dataclass(frozen=True)
class Ref:
    """A reference to the value of a graph node at run time (a step's result or a constant)."""

    name: str


MPC_FILL = -100.0
HUGE = 1e30


def sanitize(a: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace masking stand-ins (<= -1e30, -inf) in a float constant by MPC_FILL."""
    if a.size == 0 or not np.issubdtype(a.dtype, np.floating):
        return a, 0
    huge = a <= -HUGE
    n = int(np.count_nonzero(huge))
    return (np.where(huge, np.asarray(MPC_FILL, a.dtype), a) if n else a), n


def _to_np_const(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return sanitize(to_numpy(value))[0]
    if isinstance(value, (list, tuple)):
        return type(value)(_to_np_const(v) for v in value)
    return value


def used_constants(read: Any, torch_consts: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Numpy versions of the constants ``read`` refers to (the JAX steps' arguments and the
    outputs), and the names of those whose masking stand-ins became ``MPC_FILL``."""
    used = {r.name for r in refs(read)}
    constants = {k: _to_np_const(v) for k, v in torch_consts.items() if k in used}
    sanitized = sorted(
        k
        for k, v in torch_consts.items()
        if k in used
        and isinstance(v, torch.Tensor)
        and v.is_floating_point()
        and bool((v <= -HUGE).any())
    )
    return constants, sanitized


def refs(x: Any) -> list[Ref]:
    """Every :class:`Ref` inside nested lists, tuples and dicts."""
    if isinstance(x, Ref):
        return [x]
    if isinstance(x, (list, tuple)):
        return [r for v in x for r in refs(v)]
    if isinstance(x, dict):
        return [r for v in x.values() for r in refs(v)]
    return []
