"""The one table of Flax families: each family file declares itself once as a :class:`Family`.

A family is a torch model kind with a hand-written Flax twin.  Its file in this package
ends with ``FAMILY = Family(...)``: its name, how to recognise a torch module, how to
make a :class:`Transfer` for one concrete module (the key map with its transposed and
tied keys, the buffers Flax has no array for, the Flax model and its ``apply``, the
spec) and how to rebuild a torch module from a spec.  :data:`FAMILY_MODULES` lists the
files in lookup order, most specific first; ``to_flax``/``from_flax`` only ever go
through :func:`family_of` and a :class:`Transfer`, never through a family's name.

To add a family: write ``<name>.py`` ending in ``FAMILY = Family(...)`` and add its
module name to :data:`FAMILY_MODULES`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ppml_torch.weights import Shape, WeightMapError

from .common import WeightMap

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ["FAMILY_MODULES", "Family", "Transfer", "families", "family_of", "get"]

# the family files of this package, in the order to_flax tries them (most specific first)
FAMILY_MODULES = ("hf_gpt2", "nanogpt", "hf_resnet", "resnet", "cnn", "mlp")


@dataclasses.dataclass(frozen=True)
class Transfer:
    """Everything ``to_flax``/``from_flax`` need for one concrete torch module.

    Attributes:
      weight_map: torch name <-> Flax path, with the ``transposed`` and ``tied`` keys.
      flax_shapes: the parameter shapes the Flax model expects (``jax.eval_shape``).
      apply_fn: the pure ``apply(params, *inputs)`` of the Flax model.
      spec: ``{"family": name, ...config}``: what :attr:`Family.build` rebuilds the torch
        module from; stored in params files and compared by ``from_flax``.
      kept_buffers: ``state_dict`` keys Flax has no array for (e.g. causal-mask buffers an
        older transformers saved): left out on the way to Flax, kept as the target module
        has them on the way back.
      source: the torch model in ``ConvertedModel.source``.
      extras: family-specific extras for ``ConvertedModel.extras`` (the Flax model, ...).
    """

    weight_map: WeightMap
    flax_shapes: Mapping[tuple[str, ...], Shape]
    apply_fn: Callable[..., Any]
    spec: dict[str, Any]
    kept_buffers: frozenset[str] = frozenset()
    source: str = ""
    extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Family:
    """One torch model kind and its Flax twin (see the module docstring).

    Attributes:
      name: the ``spec["family"]`` value, e.g. ``"mlp"``.
      torch_model / flax_model: what is converted into what, for docs and error messages.
      matches: whether a torch module belongs to this family (a cheap first look).
      transfer: the :class:`Transfer` for a module that ``matches``; raises
        :class:`WeightMapError` if the module turns out not to fit.
      build: a torch module (random weights) from a spec this family wrote.
      explain: optional, why a module does not match, for the error when no family does.
    """

    name: str
    torch_model: str
    flax_model: str
    matches: Callable[[nn.Module], bool]
    transfer: Callable[[nn.Module], Transfer]
    build: Callable[[dict[str, Any]], nn.Module]
    explain: Callable[[nn.Module], str | None] | None = None


@functools.cache
def families() -> dict[str, Family]:
    """``{name: Family}`` in lookup order (imports the family files: torch, JAX, Flax)."""
    table: dict[str, Family] = {}
    for mod in FAMILY_MODULES:
        family = importlib.import_module(f"{__package__}.{mod}").FAMILY
        if not isinstance(family, Family) or family.name in table:
            raise RuntimeError(f"{__package__}.{mod}.FAMILY: not a Family, or its name is taken")
        table[family.name] = family
    return table


def get(name: object) -> Family:
    """The family called ``name`` (e.g. from a params file's spec)."""
    table = families()
    if not isinstance(name, str) or name not in table:
        raise WeightMapError(f"unknown Flax model family {name!r}; known: {', '.join(table)}")
    return table[name]


def family_of(module: nn.Module) -> Family:
    """The first family whose ``matches(module)`` is true; an error naming why not if none."""
    table = families()
    for family in table.values():
        if family.matches(module):
            return family
    reasons = [r for f in table.values() if f.explain and (r := f.explain(module))]
    supported = ", ".join(f"{f.torch_model} ({f.name})" for f in table.values())
    raise WeightMapError(
        f"to_flax: no Flax weight map for {type(module).__name__}"
        + (f"; {'; '.join(reasons)}" if reasons else "")
        + f".  Supported: {supported}; for other models add a family in "
        "ppml_torch/converters/flax/"
    )
