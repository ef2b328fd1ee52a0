"""A torch loss (module or function of ``(output, target)``) as a JAX function.

:func:`from_torch` returns a :class:`TorchLoss`, called as ``loss(output, target)`` on JAX
arrays (plaintext or inside an SPU program):

* ``nn.MSELoss``, ``nn.BCEWithLogitsLoss``, ``nn.CrossEntropyLoss`` are written in JAX here,
  with every option torch has for them: ``reduction`` (``mean``/``sum``/``none``), BCE's
  ``weight`` and ``pos_weight``, cross entropy's ``weight``, ``ignore_index``,
  ``label_smoothing``, class-index or class-probability targets, a class axis at dim 1 (or
  dim 0 for an unbatched input).  They work for any batch shape.
* any other callable -- a user's own function ``fn(output, target)``, an ``nn.Module``
  loss, another torch loss such as ``nn.L1Loss`` -- goes through the graph converter
  (``ppml_torch.convert`` on a small wrapper module), so it needs ``example=(output, target)``
  torch tensors and then only accepts those shapes (convert again for another shape).
  What the converter cannot lower is refused with its one-line error.

Differences from torch, on purpose:

* ``MSELoss`` with ``output`` and ``target`` of different shapes is refused: torch only
  warns and broadcasts, which turned the homework's ``(n,)`` against ``(n, 1)`` into an
  ``(n, n)`` loss without anyone noticing.
* Under MPC the class-index targets of cross entropy are secret integers: the one-hot is a
  comparison with ``arange(C)`` (no secret gather), and the mean over non-ignored targets
  divides by a secret count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from ppml_torch.errors import PpmlError

if TYPE_CHECKING:
    import torch

__all__ = ["LazyLoss", "LossMappingError", "TorchLoss", "from_torch", "lazy_from_torch"]


class LossMappingError(PpmlError, ValueError):
    """The loss has no mapping; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class TorchLoss:
    """A torch loss as ``loss(output, target) -> jax.Array`` (pure; jit- and SPU-able).

    Attributes:
      fn: the JAX function.
      name: what it came from, e.g. ``"CrossEntropyLoss(reduction='mean')"``.
      route: ``"jax"`` (written here, any shape) or ``"graph"`` (converted; fixed shapes).
      shapes: for ``"graph"``, the ``(output, target)`` shapes it was converted with.
    """

    fn: Callable[[Any, Any], Any]
    name: str
    route: str
    shapes: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    # check_targets(target, output_shape, where): the owner-side check of class-index targets
    # (secret under MPC, where an index outside the classes gives a wrong loss, not an error)
    check_targets: Callable[[Any, tuple[int, ...], str], None] | None = None

    def __call__(self, output: Any, target: Any) -> Any:
        return self.fn(output, target)

    def check_target(self, target: Any, output_shape: tuple[int, ...], where: str) -> None:
        """Refuse class indices outside the output's classes (concrete labels, one line)."""
        if self.check_targets is not None:
            self.check_targets(target, tuple(output_shape), where)


def from_torch(
    loss_fn: Callable[..., Any],
    example: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> TorchLoss:
    """Map ``loss_fn`` to JAX; ``example=(output, target)`` is needed for the graph route."""
    import torch

    kinds = _builtin()
    if type(loss_fn) in kinds:
        return kinds[type(loss_fn)](loss_fn)
    if not callable(loss_fn):
        raise LossMappingError(
            f"loss_fn: a {type(loss_fn).__name__} is not a loss; pass a torch loss module or a "
            f"function (output, target) -> tensor"
        )
    return _converted(loss_fn, example, torch)


def needs_example(loss_fn: Any) -> bool:
    """True for a callable that is not one of torch's losses written here: it goes through the
    graph converter, which needs ``example=(output, target)``."""
    return callable(loss_fn) and type(loss_fn) not in _builtin()


def lazy_from_torch(loss_fn: Callable[..., Any]) -> Callable[[Any, Any], Any]:
    """:func:`from_torch` with no example: torch's losses map at once; any other callable is
    converted on the first ``(output, target)`` shapes it is called with (``fit`` traces it on
    one batch of the module's output), once per shapes."""
    if needs_example(loss_fn):
        return LazyLoss(loss_fn)
    return from_torch(loss_fn)


class LazyLoss:
    """A user's loss function, converted by :func:`from_torch` on the shapes it is traced with."""

    def __init__(self, loss_fn: Callable[..., Any]):
        self._fn = loss_fn
        self._mapped: dict[tuple[Any, ...], TorchLoss] = {}

    def check_target(self, target: Any, output_shape: tuple[int, ...], where: str) -> None:
        """The target checks of the conversion made for ``output_shape`` (after a trace)."""
        for key, mapped in self._mapped.items():
            if key[0] == tuple(output_shape):
                mapped.check_target(target, output_shape, where)

    def __call__(self, output: Any, target: Any) -> Any:
        import torch

        key = (tuple(output.shape), str(output.dtype), tuple(target.shape), str(target.dtype))
        if key not in self._mapped:
            ex = (
                torch.zeros(key[0], dtype=getattr(torch, key[1])),
                torch.zeros(key[2], dtype=getattr(torch, key[3])),
            )
            self._mapped[key] = from_torch(self._fn, example=ex)
        return self._mapped[key](output, target)


def _builtin() -> dict[type, Callable[..., TorchLoss]]:
    import torch

    nn = torch.nn
    return {nn.MSELoss: _mse, nn.BCEWithLogitsLoss: _bce_with_logits, nn.CrossEntropyLoss: _ce}


# --- torch's losses, written in JAX --------------------------------------------------------


def _reduce(loss: jax.Array, reduction: str, where: str) -> jax.Array:
    if reduction == "mean":
        return jnp.mean(loss)
    if reduction == "sum":
        return jnp.sum(loss)
    if reduction == "none":
        return loss
    raise LossMappingError(f"{where}: reduction={reduction!r} is not mean, sum or none")


def _const(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().astype(np.float32)


def _same_shape(output: Any, target: Any, where: str) -> None:
    if jnp.shape(output) != jnp.shape(target):
        raise LossMappingError(
            f"{where}: output {tuple(jnp.shape(output))} and target {tuple(jnp.shape(target))} "
            f"differ in shape (torch would broadcast them); reshape the target, e.g. "
            f"target.reshape(output.shape)"
        )


def _mse(m: torch.nn.MSELoss) -> TorchLoss:
    reduction = m.reduction
    name = f"MSELoss(reduction={reduction!r})"
    _reduce(jnp.zeros(()), reduction, name)  # check now, not at trace time

    def loss(output: Any, target: Any) -> jax.Array:
        _same_shape(output, target, name)
        return _reduce(jnp.square(output - target), reduction, name)

    return TorchLoss(loss, name, "jax")


def _bce_with_logits(m: torch.nn.BCEWithLogitsLoss) -> TorchLoss:
    reduction = m.reduction
    weight, pos_weight = _const(m.weight), _const(m.pos_weight)
    name = f"BCEWithLogitsLoss(reduction={reduction!r})"
    _reduce(jnp.zeros(()), reduction, name)

    def loss(output: Any, target: Any) -> jax.Array:
        _same_shape(output, target, name)
        target = jnp.asarray(target, jnp.result_type(output))
        # softplus(-x) = log(1 + exp(-x)), computed stably
        if pos_weight is None:
            out = (1.0 - target) * output + jax.nn.softplus(-output)
        else:
            out = (1.0 - target) * output + (1.0 + (pos_weight - 1.0) * target) * jax.nn.softplus(
                -output
            )
        if weight is not None:
            out = out * weight
        return _reduce(out, reduction, name)

    return TorchLoss(loss, name, "jax")


def _ce(m: torch.nn.CrossEntropyLoss) -> TorchLoss:
    reduction, ignore, eps = m.reduction, int(m.ignore_index), float(m.label_smoothing)
    weight = _const(m.weight)
    name = f"CrossEntropyLoss(reduction={reduction!r})"
    _reduce(jnp.zeros(()), reduction, name)

    def loss(output: Any, target: Any) -> jax.Array:
        axis = 1 if jnp.ndim(output) >= 2 else 0
        n_classes = jnp.shape(output)[axis]
        logp = jax.nn.log_softmax(output, axis=axis)
        wshape = [1] * jnp.ndim(output)
        wshape[axis] = n_classes
        w = None if weight is None else jnp.asarray(weight).reshape(wshape)
        if jnp.issubdtype(jnp.result_type(target), jnp.floating):  # class probabilities
            _same_shape(output, target, name + " with probability targets")
            if eps:
                target = target * (1.0 - eps) + eps / n_classes
            terms = logp * target if w is None else logp * target * w
            out = -jnp.sum(terms, axis=axis)
            if reduction == "mean":
                return jnp.sum(out) / (out.size)
            return _reduce(out, reduction, name)
        expected = jnp.shape(output)[:axis] + jnp.shape(output)[axis + 1 :]
        if jnp.shape(target) != expected:
            raise LossMappingError(
                f"{name}: class-index target has shape {tuple(jnp.shape(target))}, expected "
                f"{tuple(expected)} for output {tuple(jnp.shape(output))}"
            )
        onehot = jnp.expand_dims(target, axis) == jnp.arange(n_classes).reshape(wshape)
        onehot = onehot.astype(logp.dtype)
        keep = (target != ignore).astype(logp.dtype)
        wt = keep if w is None else jnp.sum(onehot * w, axis=axis) * keep  # w[target], masked
        nll = -jnp.sum(onehot * logp, axis=axis) * wt
        if eps:
            smooth = -jnp.sum(logp if w is None else logp * w, axis=axis) * keep
        if reduction == "mean":
            denom = jnp.sum(wt)
            out = nll.sum() / denom
            if eps:
                out = (1.0 - eps) * out + eps / n_classes * (smooth.sum() / denom)
            return out
        if eps:
            nll = (1.0 - eps) * nll + eps / n_classes * smooth
        return _reduce(nll, reduction, name)

    def check_targets(target: Any, output_shape: tuple[int, ...], where: str) -> None:
        from ppml_torch.model import check_ids

        if np.issubdtype(np.asarray(target).dtype, np.integer) and len(output_shape) >= 1:
            n_classes = output_shape[1 if len(output_shape) >= 2 else 0]
            check_ids(target, n_classes, f"{where} (class indices of {name})", ignore)

    return TorchLoss(loss, name, "jax", check_targets=check_targets)


# --- anything else: through the graph converter ---------------------------------------------


def _converted(loss_fn: Callable[..., Any], example: Any, torch: Any) -> TorchLoss:
    label = getattr(loss_fn, "__qualname__", None) or type(loss_fn).__name__
    if isinstance(loss_fn, torch.nn.Module):
        label = type(loss_fn).__name__
        trainable = [n for n, p in loss_fn.named_parameters() if p.requires_grad]
        if trainable:
            raise LossMappingError(
                f"loss_fn {label} has trainable parameters {trainable[:3]}; only the model is "
                f"trained: freeze them (requires_grad_(False)) or move them into the model"
            )
    if (
        not isinstance(example, tuple)
        or len(example) != 2
        or not all(isinstance(t, torch.Tensor) for t in example)
    ):
        raise LossMappingError(
            f"loss_fn {label} goes through the graph converter and needs "
            f"example=(output, target) torch tensors of the shapes it will see"
        )

    class LossWrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if isinstance(loss_fn, torch.nn.Module):
                self.loss = loss_fn

        def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return loss_fn(output, target)

    from ppml_torch.converters.fx import convert
    from ppml_torch.converters.fx.errors import ConversionError

    out, tgt = (t.detach() for t in example)
    try:
        model = convert(LossWrapper(), (out, tgt))
    except ConversionError as e:
        raise LossMappingError(f"loss_fn {label}: {e}") from e
    except Exception as e:  # torch.export's own failures are long; keep the first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LossMappingError(
            f"loss_fn {label}: torch.export could not capture it ({type(e).__name__}: "
            f"{first[:200]}); write it with torch ops on tensors only"
        ) from e
    params = model.params

    def loss(output: Any, target: Any) -> Any:
        return model.apply(params, output, target)

    def check_targets(target: Any, output_shape: tuple[int, ...], where: str) -> None:
        model.check_input(1, target, where)  # ids of the target, if the loss indexes with it

    shapes = (tuple(out.shape), tuple(tgt.shape))
    return TorchLoss(loss, label, "graph", shapes, check_targets=check_targets)
