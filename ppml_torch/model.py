"""The one model container both conversion routes return.

Graph conversion (``ppml_torch.convert``) and Flax weight transfer
(``ppml_torch.to_flax``) each hand back a :class:`ConvertedModel`: a pytree of
JAX parameters plus a pure ``apply(params, *args, **kwargs)``.  Runners only
ever see this shape, so they never ask which route produced a model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Params = Any  # a pytree of jax/numpy arrays


@dataclasses.dataclass(frozen=True, eq=False)
class ConvertedModel:
    """A torch model made runnable by JAX and SPU.

    Attributes:
      params: the weights as a pytree of JAX arrays.  Graph route: a flat dict
        keyed by the torch ``state_dict`` names.  Flax route: the Flax tree.
      apply_fn: pure ``apply_fn(params, *args, **kwargs)``; jit-able and
        differentiable with ``jax.grad``.
      params_to_torch: maps a ``params`` pytree (possibly trained) to numpy
        arrays keyed by the torch ``state_dict`` names.
      route: ``"graph"`` or ``"flax"``.
      source: a short human-readable description of where the model came from
        (e.g. the torch class name).
    """

    params: Params
    apply_fn: Callable[..., Any]
    params_to_torch: Callable[[Params], Mapping[str, np.ndarray]]
    route: str
    source: str = ""
    extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def apply(self, params: Params, *args: Any, **kwargs: Any) -> Any:
        """Run the model on ``params``: the function runners trace and compile."""
        return self.apply_fn(params, *args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Plaintext convenience: ``apply`` with the converted weights."""
        return self.apply_fn(self.params, *args, **kwargs)

    def state_dict(self, params: Params | None = None) -> dict[str, torch.Tensor]:  # noqa: F821
        """Torch tensors under the torch names, for ``load_state_dict(strict=True)``.

        ``params`` defaults to the converted weights; pass trained ones to move them
        back.  Values are copied bit for bit (no dtype change).
        """
        import torch

        arrays = self.params_to_torch(self.params if params is None else params)
        return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()}

    def __repr__(self) -> str:
        import jax

        n = sum(int(np.prod(np.shape(x))) for x in jax.tree_util.tree_leaves(self.params))
        return f"ConvertedModel(route={self.route!r}, source={self.source!r}, parameters={n})"
