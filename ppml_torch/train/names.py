"""The torch names of a converted model's leaves, both ways.

A :class:`~ppml_torch.model.ConvertedModel`'s ``params`` is a pytree whose layout depends on
the route (graph: flat, keyed by ``state_dict`` names; Flax: nested, some kernels
transposed).  ``fit`` keeps its state by torch name (the optimizer's param groups name torch
parameters), so it needs, for each leaf, the torch name it comes from, and at the end, the
torch names a trained leaf feeds.  Both come from one experiment, :func:`marks`: fill leaf
``i`` with the value ``i + 1`` and read where ``model.params_to_torch`` puts it (transposes
and reshapes keep the value).  A tied weight (one leaf, several torch names) feeds every name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def marks(model: Any) -> dict[str, np.ndarray]:
    """``{torch name: array}`` where each value is the number (from 1) of the leaf of
    ``model.params`` (``tree_leaves`` order) it came from; non-float entries are left out."""
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(model.params)
    marked = [np.full(np.shape(x), i + 1, np.float32) for i, x in enumerate(leaves)]
    out = {}
    for name, arr in model.params_to_torch(jax.tree_util.tree_unflatten(treedef, marked)).items():
        a = np.asarray(arr)
        if a.size and np.issubdtype(a.dtype, np.floating):
            out[name] = a
    return out


def leaf_names(model: Any) -> tuple[str, ...]:
    """The torch name of each leaf of ``model.params`` (``tree_leaves`` order): the first name
    (in ``params_to_torch``'s order) that the leaf's value starts; ``"<leaf i>"`` for a leaf
    that feeds no torch name."""
    n_leaves = len(_leaves(model.params))
    names: list[str | None] = [None] * n_leaves
    for name, a in marks(model).items():
        i = int(a.flat[0]) - 1
        if 0 <= i < n_leaves and names[i] is None:
            names[i] = name
    return tuple(n if n is not None else f"<leaf {i}>" for i, n in enumerate(names))


def torch_names_of(model: Any, leaf_ids: set[int]) -> set[str]:
    """The torch names whose values come (in part) from the leaves ``leaf_ids`` of
    ``model.params``."""
    return {
        name
        for name, a in marks(model).items()
        if any(int(v) - 1 in leaf_ids for v in np.unique(a))
    }


def _leaves(tree: Any) -> list[Any]:
    import jax

    return jax.tree_util.tree_leaves(tree)


@dataclasses.dataclass(frozen=True)
class Leaves:
    """A converted model's params as named leaves: which are trained, which stay fixed.

    ``names[i]`` is the torch name of leaf ``i`` of the params (:func:`leaf_names`),
    ``treedef`` their structure; ``trainable`` the torch names the optimizer trains.
    """

    names: tuple[str, ...]
    treedef: Any
    trainable: frozenset[str]

    @classmethod
    def of(cls, model: Any, trainable: set[str] | frozenset[str]) -> Leaves:
        import jax

        return cls(
            leaf_names(model), jax.tree_util.tree_structure(model.params), frozenset(trainable)
        )

    def split(self, params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(trained, fixed)``: the leaves of ``params`` by torch name, in leaf order."""
        named = dict(zip(self.names, _leaves(params), strict=True))
        trained = {n: named[n] for n in self.names if n in self.trainable}
        fixed = {n: named[n] for n in self.names if n not in self.trainable}
        return trained, fixed

    def merge(self, *parts: Mapping[str, Any]) -> Any:
        """The params pytree from named leaves (each name in one of ``parts``)."""
        import jax

        found: dict[str, Any] = {}
        for part in parts:
            found.update(part)
        return jax.tree_util.tree_unflatten(self.treedef, [found[n] for n in self.names])

    def trained_struct(self, params: Any) -> dict[str, Any]:
        """The trained leaves' shapes and dtypes (``jax.ShapeDtypeStruct``), by torch name."""
        import jax

        return {
            n: jax.ShapeDtypeStruct(np.shape(a), a.dtype) for n, a in self.split(params)[0].items()
        }


def layouts(model: Any, names: Sequence[str], wanted: Sequence[str]) -> tuple[Any, Any]:
    """``(to_leaf, to_torch)`` for the torch names ``wanted`` (each the name of its own leaf):
    move an array between torch's layout of that parameter and its leaf's layout in
    ``model.params`` (the Flax route transposes kernels), element for element.

    Found by the experiment :func:`marks` makes, with each element's flat index as its mark
    (in two float32-exact parts): ``params_to_torch`` shows where every element goes.
    """
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(model.params)
    index = {n: i for i, n in enumerate(names)}
    parts = []
    for part in (lambda k: k % 4096, lambda k: k // 4096):
        marked = [
            part(np.arange(np.size(x), dtype=np.int64)).astype(np.float32).reshape(np.shape(x))
            for x in leaves
        ]
        parts.append(model.params_to_torch(jax.tree_util.tree_unflatten(treedef, marked)))
    where: dict[str, np.ndarray] = {}
    for n in wanted:
        size = int(np.size(leaves[index[n]]))
        idx = np.asarray(parts[1][n]).astype(np.int64) * 4096 + np.asarray(parts[0][n]).astype(
            np.int64
        )
        if idx.size != size or not np.array_equal(np.sort(idx.ravel()), np.arange(size)):
            raise ValueError(
                f"parameter {n!r} is not one leaf rearranged; its state cannot be moved"
            )
        where[n] = idx

    def to_leaf(name: str, array: np.ndarray) -> np.ndarray:
        leaf = leaves[index[name]]
        out = np.empty(int(np.size(leaf)), np.float32)
        out[where[name].ravel()] = np.asarray(array, np.float32).ravel()
        return out.reshape(np.shape(leaf))

    def to_torch(name: str, array: np.ndarray) -> np.ndarray:
        return np.asarray(array, np.float32).ravel()[where[name]]

    return to_leaf, to_torch


def load_trained(
    module: Any, model: Any, params: Any, names: Sequence[str], trained: Mapping[str, Any]
) -> None:
    """Load revealed trained leaves (``{torch name: array}``) into ``module``.

    ``params`` are the module's weights in ``model``'s layout (the leaves not in ``trained``
    come from there), ``names`` its :func:`leaf_names`.  The torch names the trained leaves feed (a tied weight feeds several)
    get the new values; every other entry of the state dict (frozen parameters, buffers) is
    loaded back from the module itself, bit for bit (``load_state_dict(strict=True)``).
    """
    import jax

    leaves = _leaves(params)
    full = [np.asarray(trained[n]) if n in trained else leaves[i] for i, n in enumerate(names)]
    new = model.state_dict(jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), full))
    fed = torch_names_of(model, {i for i, n in enumerate(names) if n in trained})
    state = module.state_dict()
    for k in fed:
        state[k] = new[k]
    module.load_state_dict(state, strict=True)
