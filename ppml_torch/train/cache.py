"""Conversions of one torch module, cached by input shapes, so users never convert by hand.

The graph route fixes every shape at conversion (``torch.export``): a training batch and a
generation's prompt and decode steps each need their own
:class:`~ppml_torch.model.ConvertedModel`; ``fit`` runs a kept partial batch, and ``predict``
a test set of another size, through a cached batch shape when the model is row-wise
(:mod:`ppml_torch.train.rows`), else they convert their own shape.  :func:`conversions` keeps
them per module and route; ``fit`` and ``predict`` ask it for the shapes they run.  The Flax route is shape-polymorphic: one transfer serves every shape.

Only ``apply`` is taken from a cached conversion.  The weights always come from the module as
it is now (:meth:`ConversionCache.params`), so training the module (or loading weights into
it) never leaves a stale copy in the cache.  The cache holds the module weakly.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ppml_torch.errors import PpmlError
from ppml_torch.model import ROUTES

if TYPE_CHECKING:
    import torch

    from ppml_torch.model import ConvertedModel


Signature = tuple[tuple[tuple[int, ...], str], ...]  # ((shape, dtype), ...) per input
Shapes = Sequence[tuple[tuple[int, ...], Any]]  # (shape, dtype) per positional input


class ConversionCache:
    """The conversions of one module on one route, keyed by input shapes and dtypes."""

    def __init__(self, module: torch.nn.Module, route: str):
        if route not in ROUTES:
            raise PpmlError(f"route must be 'graph' or 'flax', got {route!r}")
        self._module = weakref.ref(module)
        self.route = route
        self._models: dict[tuple[bool, bool, Signature], ConvertedModel] = {}
        self.conversions = 0  # how many times the module was actually converted

    @property
    def module(self) -> torch.nn.Module:
        m = self._module()
        if m is None:
            raise RuntimeError("the module of this conversion cache no longer exists")
        return m

    def get(
        self,
        inputs: Shapes,
        named: Mapping[str, tuple[tuple[int, ...], Any]] | None = None,
        fixed: Sequence[tuple[str, Any]] = (),
        *,
        buffer_updates: bool = False,
    ) -> ConvertedModel:
        """The conversion for positional inputs of these ``(shape, dtype)``s, keyword inputs
        ``named`` and non-tensor keywords ``fixed`` (``use_cache=False``), converting once.

        ``buffer_updates``: graph route, ``convert(..., buffer_updates="return")``: ``apply``
        returns ``(outputs, updated buffers)`` (``fit`` of batch norm in training mode).
        """
        module = self.module
        key = self._key(inputs, named, fixed, buffer_updates)
        model = self._models.get(key)
        if model is None:
            model = self._convert(
                module, _signature(inputs), _named(named), tuple(fixed), buffer_updates
            )
            self._models[key] = model
            self.conversions += 1
        return model

    def has(self, inputs: Shapes) -> bool:
        """Whether :meth:`get` of these inputs would reuse a conversion (no conversion)."""
        return self._key(inputs) in self._models

    def _key(
        self,
        inputs: Shapes,
        named: Mapping[str, tuple[tuple[int, ...], Any]] | None = None,
        fixed: Sequence[tuple[str, Any]] = (),
        buffer_updates: bool = False,
    ) -> tuple[Any, ...]:
        if self.route != "graph":  # one shape-polymorphic transfer per mode
            return (self.module.training, False, ())
        if not named and not fixed:
            return (self.module.training, buffer_updates, _signature(inputs))
        return (
            self.module.training, buffer_updates, _signature(inputs), _named(named), tuple(fixed)
        )  # fmt: skip

    def same_rows(self, row_shape: tuple[int, ...], dtype: Any) -> list[tuple[int, ConvertedModel]]:
        """The cached one-input conversions whose rows have ``row_shape`` and ``dtype``, as
        ``(batch size, model)`` (largest batch first; no conversion).  ``predict`` runs a new
        number of rows through one of them in chunks when the model is row-wise."""
        import numpy as np

        row = tuple(int(d) for d in row_shape)
        name = np.dtype(dtype).name
        found = [
            (sig[0][0][0], model)
            for (training, updates, sig, *keywords), model in self._models.items()
            if training == self.module.training
            and not updates
            and not keywords
            and len(sig) == 1
            and len(sig[0][0]) >= 1
            and sig[0][0][1:] == row
            and sig[0][1] == name
        ]
        return sorted(found, key=lambda bm: -bm[0])

    def _convert(
        self,
        module: torch.nn.Module,
        sig: Signature,
        named: tuple[tuple[str, tuple[tuple[int, ...], str]], ...] = (),
        fixed: tuple[tuple[str, Any], ...] = (),
        buffer_updates: bool = False,
    ) -> ConvertedModel:
        if self.route == "flax":
            from ppml_torch.converters.flax import to_flax

            return to_flax(module)
        import torch

        from ppml_torch.converters.fx import convert

        examples = tuple(torch.zeros(s, dtype=_torch_dtype(t)) for s, t in sig)
        keywords = {k: torch.zeros(s, dtype=_torch_dtype(t)) for k, (s, t) in named}
        return convert(
            module, examples, {**keywords, **dict(fixed)},
            buffer_updates="return" if buffer_updates else "refuse",
        )  # fmt: skip

    def params(self, model: ConvertedModel) -> Any:
        """The module's current weights in ``model``'s layout (``model.params``' structure)."""
        if self.route == "flax":
            from ppml_torch.converters.flax import to_flax

            return to_flax(self.module).params
        import jax.numpy as jnp

        from ppml_torch.converters.fx.dtypes import to_numpy

        state = self.module.state_dict()
        if set(state) != set(model.params):
            raise PpmlError(
                "the module's state_dict keys changed since it was converted; build a new module"
            )
        return {k: jnp.asarray(to_numpy(state[k])) for k in model.params}


def updates_buffers(module: torch.nn.Module) -> bool:
    """Whether ``module``'s forward updates buffers: a submodule with running statistics in
    training mode (``BatchNorm*d``, ``InstanceNorm*d(track_running_stats=True)``)."""
    return any(
        m.training
        and getattr(m, "track_running_stats", False)
        and getattr(m, "running_mean", None) is not None
        for m in module.modules()
    )


def _signature(inputs: Shapes) -> Signature:
    import numpy as np

    return tuple((tuple(int(d) for d in s), np.dtype(t).name) for s, t in inputs)


def _named(
    named: Mapping[str, tuple[tuple[int, ...], Any]] | None,
) -> tuple[tuple[str, tuple[tuple[int, ...], str]], ...]:
    """Keyword inputs as a key: ``((name, (shape, dtype)), ...)`` in the given order."""
    return tuple((k, _signature([v])[0]) for k, v in (named or {}).items())


def _torch_dtype(name: str):
    import torch

    return {
        "float32": torch.float32,
        "float64": torch.float32,  # JAX runs in 32 bits
        "int32": torch.int64,
        "int64": torch.int64,
        "bool": torch.bool,
    }.get(name, torch.float32)


_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def conversions(module: torch.nn.Module, route: str) -> ConversionCache:
    """The (shared) conversion cache of ``module`` on ``route``."""
    per_module = _caches.setdefault(module, {})
    if route not in per_module:
        per_module[route] = ConversionCache(module, route)
    return per_module[route]
