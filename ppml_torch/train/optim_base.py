"""What the optimizer's mapping (:mod:`.optim`), its carried state (:mod:`.carry`) and its
LR schedules (:mod:`.schedules`) share: the one error they raise and the leaf paths."""

from __future__ import annotations

from typing import Any

from ppml_torch.errors import PpmlError

__all__ = ["OptimizerMappingError", "Path", "plain_path"]

Path = tuple[Any, ...]


class OptimizerMappingError(PpmlError, ValueError):
    """The torch optimizer (or a setting of it) has no mapping; the message says what to do."""


def plain_path(keypath: tuple) -> Path:
    """A ``tree_flatten_with_path`` key path as a tuple of plain keys."""
    out = []
    for k in keypath:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                out.append(getattr(k, attr))
                break
        else:
            out.append(k)
    return tuple(out)
