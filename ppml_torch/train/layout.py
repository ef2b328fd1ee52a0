"""How the parties' blocks become the model input, and how an epoch cuts it into batches.

Both are public facts every party knows (shapes, column order, batch size, row counts), and
the compiled programs close over them:

* :class:`InputLayout`: inside a program, the model input is assembled from the parties'
  blocks (vertical: feature blocks concatenated in column order; horizontal: their rows one
  after the other), and the labels likewise;
* :class:`Batches`: ``n_full`` batches of ``batch_size`` rows (``lax.scan``), then the kept
  partial batch of ``partial`` rows (torch's ``DataLoader(drop_last=False)``), or ``dropped``
  rows left out (``drop_last=True``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class InputLayout:
    """Which blocks a program receives, and how they make ``(x, y)``."""

    split: str  # "vertical" or "horizontal"
    column_order: tuple[int, ...] | None  # vertical: model column of each concatenated column
    n_feature_blocks: int
    n_label_blocks: int

    def assemble(self, blocks: tuple[Any, ...]) -> tuple[Any, Any]:
        """``(x, y)`` from the feature blocks then the label blocks (``y`` is ``None`` without
        label blocks).  A local operation on each party's shares: no communication."""
        import jax.numpy as jnp

        feats = blocks[: self.n_feature_blocks]
        labs = blocks[self.n_feature_blocks : self.n_feature_blocks + self.n_label_blocks]
        if self.split == "vertical":
            x = jnp.concatenate(feats, axis=1) if len(feats) > 1 else feats[0]
            if self.column_order is not None:  # public column order: a local permutation
                x = x[:, np.argsort(self.column_order)]
        else:
            x = jnp.concatenate(feats, axis=0) if len(feats) > 1 else feats[0]
        y = None
        if labs:
            y = jnp.concatenate(labs, axis=0) if len(labs) > 1 else labs[0]
        return x, y


@dataclasses.dataclass(frozen=True)
class Batches:
    """How one epoch runs ``n_rows`` rows in batches of ``batch_size``."""

    n_rows: int
    batch_size: int
    n_full: int  # full batches (lax.scan)
    partial: int  # rows of the kept last batch (0: none, or dropped)
    dropped: int  # rows left out each epoch (drop_last=True)
    shuffle: bool  # a public row order per epoch comes as the program's last input
    padded: bool = False  # the partial batch runs in the batch-shape program (see rows.py)

    @classmethod
    def of(cls, n_rows: int, batch_size: int, *, drop_last: bool, shuffle: bool) -> Batches:
        n_full, rest = divmod(n_rows, batch_size)
        partial = 0 if drop_last else rest
        return cls(n_rows, batch_size, n_full, partial, rest - partial, bool(shuffle))
