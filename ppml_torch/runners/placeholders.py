"""Shape-only placeholders: how a process stands in for another party's data.

One process per party (production mode): a value another party owns is described in this
process by its shapes and dtypes only, a pytree of ``jax.ShapeDtypeStruct``.  ``fit``,
``predict`` and ``generate`` build such placeholders (:func:`shapes_of`) and recognise them
(:func:`is_placeholder`); the session's ``put`` checks them against what the owner announces.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_placeholder(value: Any) -> bool:
    """A shape-only stand-in (``jax.ShapeDtypeStruct`` or alike): shape and dtype, no data."""
    return (
        not callable(value)
        and hasattr(value, "shape")
        and hasattr(value, "dtype")
        and not hasattr(value, "__array__")
        and not hasattr(value, "numpy")
    )


def shapes_of(tree: Any) -> Any:
    """The same pytree with every array replaced by its ``jax.ShapeDtypeStruct``."""
    import jax

    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), tree)
