"""What every Flax family shares: the :class:`WeightMap` (torch name <-> Flax path) and trees.

The key and shape check that runs before any copy, and its error type, live one layer
down in :mod:`ppml_torch.weights` (models use them too); they are re-exported here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ppml_torch.weights import Shape, WeightMapError, check_shapes, load_into_torch, shape_of

__all__ = [
    "Shape",
    "WeightMap",
    "WeightMapError",
    "check_shapes",
    "flatten",
    "flax_shapes",
    "load_into_torch",
    "shape_of",
    "unflatten",
    "variable_shapes",
]


def flatten(tree: Mapping, prefix: Iterable[str] = ()) -> dict[tuple[str, ...], object]:
    """A nested dict of arrays as ``{("transformer", "h", "0", ...): array}``."""
    out: dict[tuple[str, ...], object] = {}
    for k, v in tree.items():
        path = (*prefix, str(k))
        if isinstance(v, Mapping):
            out.update(flatten(v, path))
        else:
            out[path] = v
    return out


def unflatten(flat: Mapping[tuple[str, ...], object]) -> dict:
    """Inverse of :func:`flatten`."""
    tree: dict = {}
    for path, v in flat.items():
        node = tree
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = v
    return tree


# ---- the weight map: one table per model family, used in both directions -------------------


@dataclasses.dataclass(frozen=True)
class WeightMap:
    """torch ``state_dict`` name <-> Flax parameter path, for one concrete model.

    Attributes:
      pairs: torch name -> Flax path (inside ``{"params": ...}``), e.g.
        ``"0.weight" -> ("Dense_0", "kernel")``.
      transposed: the torch names whose arrays are transposed on the way (``nn.Linear``
        stores ``(out, in)``, ``nn.Dense`` ``(in, out)``).
      tied: torch name -> the torch name it shares storage with (``lm_head.weight`` ->
        ``transformer.wte.weight``); not in ``pairs``: Flax holds one array for both.
      what: the model in error messages, e.g. ``"GPT2LMHeadModel"``.
      permuted: torch name -> the axes permutation from the torch array to the Flax one
        (a convolution's ``(O, I, H, W)`` -> Flax's ``(H, W, I, O)``: ``(2, 3, 1, 0)``).
      collections: the Flax paths in ``pairs`` start with their variable collection
        (``("params", ...)``, ``("batch_stats", ...)``: batch norm's running statistics)
        instead of lying inside ``{"params": ...}``; ``flax_shapes`` then covers every
        collection (:func:`variable_shapes`).
    """

    pairs: Mapping[str, tuple[str, ...]]
    transposed: frozenset[str]
    tied: Mapping[str, str] = dataclasses.field(default_factory=dict)
    what: str = "weight map"
    permuted: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    collections: bool = False

    def __post_init__(self) -> None:
        keys = set(self.transposed) | set(self.tied.values()) | set(self.permuted)
        stray = sorted(keys - set(self.pairs))
        if stray:
            raise ValueError(f"weight map of {self.what}: transposed/tied keys not in it: {stray}")

    def torch_keys(self) -> set[str]:
        return set(self.pairs) | set(self.tied)

    def torch_to_flax(
        self, state_dict: Mapping[str, Any], flax_shapes: Mapping[tuple[str, ...], Shape]
    ) -> dict:
        """Numpy Flax tree ``{"params": ...}`` from a torch ``state_dict``.

        ``flax_shapes`` are the shapes the Flax model expects (from ``jax.eval_shape`` of
        its ``init``).  Keys and shapes are checked before anything is copied; tied keys
        must hold the same values as their partner.
        """
        check_shapes(
            {k: self._torch_shape(k, flax_shapes) for k in self.torch_keys()},
            {k: shape_of(v) for k, v in state_dict.items()},
            what=f"to_flax({self.what})",
            fix="the module's layers or config differ from what this map was built for",
            expected_name="weight map",
            actual_name="torch state_dict",
        )
        arrays = {k: _to_numpy(v) for k, v in state_dict.items()}
        for k, partner in self.tied.items():
            if not np.array_equal(arrays[k], arrays[partner]):
                raise WeightMapError(
                    f"to_flax({self.what}): {k} is expected to be tied to {partner} but holds other "
                    f"values; tie them (e.g. model.tie_weights()) or convert an untied model"
                )
        flat = {path: self._to_flax(k, arrays[k]).copy() for k, path in self.pairs.items()}
        return unflatten(flat) if self.collections else {"params": unflatten(flat)}

    def flax_to_torch(
        self,
        variables: Mapping,
        flax_shapes: Mapping[tuple[str, ...], Shape],
    ) -> dict[str, np.ndarray]:
        """Numpy arrays keyed by torch names from a Flax tree ``{"params": ...}``.

        Checked against ``flax_shapes`` first (missing/unexpected paths, shapes).  Tied torch
        names get the same array as their partner.  Values are copied bit for bit.
        """
        if not isinstance(variables, Mapping) or "params" not in variables:
            raise WeightMapError(
                f"from_flax({self.what}): expected Flax variables {{'params': ...}}, got "
                f"{type(variables).__name__} with keys {list(getattr(variables, 'keys', list)())}"
            )
        flat = flatten(variables if self.collections else variables["params"])
        check_shapes(
            {"/".join(p): s for p, s in flax_shapes.items()},
            {"/".join(p): shape_of(v) for p, v in flat.items()},
            what=f"from_flax({self.what})",
            fix="the Flax parameters come from a model with another config; "
            "convert with the matching torch module",
            expected_name="model",
            actual_name="Flax params",
        )
        out: dict[str, np.ndarray] = {}
        for k, path in self.pairs.items():
            out[k] = np.array(self._to_torch(k, np.asarray(flat[path])), copy=True)
        for k, partner in self.tied.items():
            out[k] = out[partner]
        return out

    def _to_flax(self, key: str, a: np.ndarray) -> np.ndarray:
        if key in self.permuted:
            return a.transpose(self.permuted[key])
        return a.T if key in self.transposed else a

    def _to_torch(self, key: str, a: np.ndarray) -> np.ndarray:
        if key in self.permuted:
            return a.transpose(np.argsort(self.permuted[key]))
        return a.T if key in self.transposed else a

    def _torch_shape(self, key: str, flax_shapes: Mapping[tuple[str, ...], Shape]) -> Shape:
        key = self.tied.get(key, key)
        shape = tuple(flax_shapes[self.pairs[key]])
        if key in self.permuted:
            return tuple(shape[i] for i in np.argsort(self.permuted[key]))
        return shape[::-1] if key in self.transposed else shape


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor
        return x.detach().cpu().numpy()
    return np.asarray(x)


def flax_shapes(init: Callable[[], Any]) -> dict[tuple[str, ...], Shape]:
    """The parameter shapes ``init()`` would produce, without computing any weights."""
    import jax

    tree = jax.eval_shape(init)
    return {p: tuple(v.shape) for p, v in flatten(tree["params"]).items()}


def variable_shapes(init: Callable[[], Any]) -> dict[tuple[str, ...], Shape]:
    """The shapes of every variable ``init()`` would produce, keyed by their full path
    (collection first: ``("params", ...)``, ``("batch_stats", ...)``), computing nothing."""
    import jax

    return {p: tuple(v.shape) for p, v in flatten(jax.eval_shape(init)).items()}
