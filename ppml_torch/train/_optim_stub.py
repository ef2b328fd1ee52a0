"""STAND-IN until ``ppml_torch/train/optim.py`` and ``losses.py`` land (issue 8 item 2).

``fit`` reaches torch optimizers and losses ONLY through the two functions below; at merge
they are replaced by the real mappings.  Contract ``fit`` relies on:

* ``optimizer_to_optax(optimizer, module) -> (transform, trainable)``: ``trainable`` lists the
  ``module.named_parameters()`` names the optimizer updates (in the optimizer with
  ``requires_grad=True``); ``transform`` is an optax ``GradientTransformation`` over a flat
  dict ``{name: array}`` of exactly those names (arrays may be in the route's layout, e.g. a
  Flax kernel is the torch weight transposed: transforms must be elementwise per tensor).
* ``loss_to_jax(loss_fn) -> fn(output, target) -> scalar`` (JAX, traceable under SPU).

Both raise a one-line :class:`MappingError` for anything not mapped.  This stand-in maps only
plain ``torch.optim.SGD(lr=...)`` and ``nn.MSELoss`` / ``nn.BCEWithLogitsLoss`` /
``nn.CrossEntropyLoss`` with default arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ppml_torch.errors import PpmlError


class MappingError(PpmlError, TypeError):
    """A torch optimizer or loss with no JAX/optax mapping."""


def optimizer_to_optax(optimizer: Any, module: Any) -> tuple[Any, list[str]]:
    import optax
    import torch

    if not isinstance(optimizer, torch.optim.Optimizer):
        raise MappingError(
            f"optimizer must be a torch.optim optimizer built on the module's parameters, got "
            f"{type(optimizer).__name__}"
        )
    name = type(optimizer).__name__
    if type(optimizer) is not torch.optim.SGD:
        raise MappingError(f"no optax mapping for torch.optim.{name} yet; use torch.optim.SGD")
    lrs = set()
    for i, g in enumerate(optimizer.param_groups):
        for k, neutral in (
            ("momentum", 0),
            ("dampening", 0),
            ("weight_decay", 0),
            ("nesterov", False),
            ("maximize", False),
        ):
            if g.get(k, neutral) != neutral:
                raise MappingError(
                    f"no mapping yet for torch.optim.SGD {k}={g[k]!r} (param group {i}); "
                    "use plain SGD(lr=...)"
                )
        if not isinstance(g["lr"], (int, float)):
            raise MappingError(f"param group {i}: lr must be a Python number, got {g['lr']!r}")
        lrs.add(float(g["lr"]))
    if len(lrs) != 1:
        raise MappingError(f"no mapping yet for several learning rates {sorted(lrs)}; use one")
    if any(optimizer.state.values()):
        raise MappingError(f"torch.optim.{name} already has state (it took steps); build a new one")
    by_id = {id(p): n for n, p in module.named_parameters()}
    trainable = [
        by_id[id(p)] for g in optimizer.param_groups for p in g["params"] if p.requires_grad
    ]
    return optax.sgd(lrs.pop()), trainable


def loss_to_jax(loss_fn: Any) -> Callable[[Any, Any], Any]:
    import jax
    import jax.numpy as jnp
    import torch.nn as nn

    def defaults(extra: tuple[str, ...] = ()) -> None:
        if getattr(loss_fn, "reduction", "mean") != "mean":
            raise MappingError(
                f"no mapping yet for {type(loss_fn).__name__}(reduction={loss_fn.reduction!r})"
            )
        for k in extra:
            if getattr(loss_fn, k, None) is not None:
                raise MappingError(f"no mapping yet for {type(loss_fn).__name__}({k}=...)")

    if type(loss_fn) is nn.MSELoss:
        defaults()
        return lambda out, t: jnp.mean((out - t) ** 2)
    if type(loss_fn) is nn.BCEWithLogitsLoss:
        defaults(("weight", "pos_weight"))
        # max(x, 0) - x*t + log(1 + exp(-|x|)), as torch computes it
        return lambda x, t: jnp.mean(jnp.maximum(x, 0) - x * t + jnp.log1p(jnp.exp(-jnp.abs(x))))
    if type(loss_fn) is nn.CrossEntropyLoss:
        defaults(("weight",))
        if loss_fn.label_smoothing or loss_fn.ignore_index != -100:
            raise MappingError("no mapping yet for CrossEntropyLoss label_smoothing/ignore_index")

        def cross_entropy(logits, target):
            onehot = jax.nn.one_hot(target, logits.shape[-1], dtype=logits.dtype)
            logp = jax.nn.log_softmax(logits, axis=-1)
            return -jnp.mean(jnp.sum(onehot * logp, axis=-1))

        return cross_entropy
    raise MappingError(
        f"no JAX mapping for loss {getattr(loss_fn, '__name__', type(loss_fn).__name__)} yet; "
        "use nn.MSELoss, nn.BCEWithLogitsLoss or nn.CrossEntropyLoss"
    )
