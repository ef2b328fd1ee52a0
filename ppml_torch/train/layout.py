"""How the parties' blocks become the model input, and how an epoch cuts it into batches.

Both are public facts every party knows (shapes, column order, batch size, row counts), and
the compiled programs close over them:

* :class:`InputLayout`: inside a program, the model input is assembled from the parties'
  blocks (vertical: feature blocks concatenated in column order; horizontal: their rows one
  after the other), and the labels likewise.  With named inputs (``input_ids``,
  ``attention_mask``, ...) the model input is an :class:`Inputs` (positional and keyword
  arrays); :func:`take_rows`, :func:`row_range` and :func:`batched` cut either form;
* :class:`Batches`: ``n_full`` batches of ``batch_size`` rows (``lax.scan``), then the kept
  partial batch of ``partial`` rows (torch's ``DataLoader(drop_last=False)``), or ``dropped``
  rows left out (``drop_last=True``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np


class Inputs(NamedTuple):
    """A model input with keywords: ``apply(params, *args, **kwargs)`` (a JAX pytree)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def call(apply: Any, params: Any, x: Any, **extra: Any) -> Any:
    """``apply(params, x)`` for an array, ``apply(params, *x.args, **x.kwargs)`` for
    :class:`Inputs`; ``extra`` keywords (``labels=``) are passed too."""
    if isinstance(x, Inputs):
        return apply(params, *x.args, **x.kwargs, **extra)
    return apply(params, x, **extra)


def take_rows(x: Any, order: Any) -> Any:
    """The rows of ``x`` (an array or :class:`Inputs`) in ``order``."""
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(lambda a: jnp.take(a, order, axis=0), x)


def row_range(x: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of ``x`` (an array or :class:`Inputs`)."""
    import jax

    return jax.tree_util.tree_map(lambda a: a[start:stop], x)


def batched(x: Any, n: int, size: int) -> Any:
    """The first ``n * size`` rows of ``x`` as ``n`` batches of ``size`` (a leading axis)."""
    import jax

    return jax.tree_util.tree_map(lambda a: a[: n * size].reshape(n, size, *a.shape[1:]), x)


@dataclasses.dataclass(frozen=True)
class InputLayout:
    """Which blocks a program receives, and how they make ``(x, y)``."""

    split: str  # "vertical" or "horizontal"
    column_order: tuple[int, ...] | None  # vertical: model column of each concatenated column
    n_feature_blocks: int
    n_label_blocks: int
    names: tuple[str | None, ...] = ()  # per feature block, its keyword (empty: all positional)

    def assemble(self, blocks: tuple[Any, ...]) -> tuple[Any, Any]:
        """``(x, y)`` from the feature blocks then the label blocks (``y`` is ``None`` without
        label blocks).  A local operation on each party's shares: no communication.  With
        named blocks ``x`` is an :class:`Inputs`."""
        import jax.numpy as jnp

        feats = blocks[: self.n_feature_blocks]
        labs = blocks[self.n_feature_blocks : self.n_feature_blocks + self.n_label_blocks]
        y = None
        if labs:
            y = jnp.concatenate(labs, axis=0) if len(labs) > 1 else labs[0]
        if any(n is not None for n in self.names):
            return self._named(feats), y
        if self.split == "vertical":
            x = jnp.concatenate(feats, axis=1) if len(feats) > 1 else feats[0]
            if self.column_order is not None:  # public column order: a local permutation
                x = x[:, np.argsort(self.column_order)]
        else:
            x = jnp.concatenate(feats, axis=0) if len(feats) > 1 else feats[0]
        return x, y

    def _named(self, feats: tuple[Any, ...]) -> Inputs:
        """Positional blocks (vertical: columns) and named ones (rows in party order)."""
        unnamed = tuple(f for f, n in zip(feats, self.names, strict=True) if n is None)
        args: tuple[Any, ...] = ()
        if unnamed:
            plain = dataclasses.replace(self, n_feature_blocks=len(unnamed), n_label_blocks=0)
            args = (dataclasses.replace(plain, names=()).assemble(unnamed)[0],)
        kwargs = {}
        for name in dict.fromkeys(n for n in self.names if n is not None):
            parts = [f for f, n in zip(feats, self.names, strict=True) if n == name]
            kwargs[name] = _concat_rows(parts)
        return Inputs(args, kwargs)


def _concat_rows(parts: list[Any]) -> Any:
    import jax.numpy as jnp

    return jnp.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


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
