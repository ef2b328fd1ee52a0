"""Training torch modules inside a session: :func:`fit`, :func:`predict` and the data description.

``from ppml_torch.train import fit, vertical`` is cheap: torch, JAX and optax are imported when
``fit`` runs.  See :mod:`ppml_torch.train.loop` for how a training runs and what it discloses.
"""

from __future__ import annotations

from typing import Any

from .data import Block, Data, DataError, horizontal, vertical

__all__ = [
    "Block",
    "Data",
    "DataError",
    "EpochRecord",
    "FitError",
    "History",
    "fit",
    "horizontal",
    "predict",
    "vertical",
]


def __getattr__(name: str) -> Any:
    if name in ("fit", "predict", "FitError", "History", "EpochRecord"):
        from . import loop as _loop

        return getattr(_loop, name)
    raise AttributeError(f"module 'ppml_torch.train' has no attribute {name!r}")
