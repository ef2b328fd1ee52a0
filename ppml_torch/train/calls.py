"""How ``fit`` and ``predict`` call a model, and where they read its loss and its outputs.

Three kinds of models go in as they are:

* a module returning one tensor, trained with a torch loss: ``loss(module(x), y)``;
* a module returning a Hugging Face ``ModelOutput`` (or any dict with ``logits``), trained
  with a torch loss on its logits: ``loss(module(x).logits, y)``; ``predict`` returns the
  logits;
* a module that computes its own loss from ``labels`` (``GPT2LMHeadModel``,
  ``BertForSequenceClassification``, ...), trained with ``loss_fn=None``: the label block
  goes to ``labels=`` and the model's ``loss`` is differentiated, as ``model(**inputs,
  labels=y).loss.backward()`` does in torch.

Named inputs (``attention_mask``, ``token_type_ids``) are blocks passed by keyword
(:mod:`ppml_torch.train.data`).  A module whose ``forward`` takes ``use_cache`` (Hugging
Face's generation cache of past keys and values) is converted with ``use_cache=False``:
training and ``predict`` need no cache, and the cache is not a tensor
(:attr:`ModelCall.fixed`, listed in ``History.model_call``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .checks import FitError
from .data import Data, Loaded
from .layout import Inputs, call

OUTPUT_KEY = "logits"  # what a torch loss (and predict) reads of a ModelOutput
LOSS_KEY = "loss"  # what fit differentiates of a model that computes its own loss
LABELS = "labels"  # the keyword a model that computes its own loss takes its labels as
CACHE_SWITCH = "use_cache"  # Hugging Face's generation cache, turned off for training


@dataclasses.dataclass(frozen=True)
class ModelCall:
    """How a model is called, and which of its outputs is the loss or the prediction.

    Attributes:
      own_loss: ``loss_fn=None``: the model computes its loss from ``labels=``.
      output_key: ``"logits"`` when the model returns a ``ModelOutput`` (a dict after
        conversion), ``None`` for a tensor.
      fixed: non-tensor keywords the conversion fixes, e.g. ``(("use_cache", False),)``.
      model: the torch class, for messages.
    """

    own_loss: bool = False
    output_key: str | None = None
    fixed: tuple[tuple[str, Any], ...] = ()
    model: str = "the module"

    def outputs(self, apply: Callable[..., Any], params: Any, x: Any) -> Any:
        """The model's output (its logits for a ``ModelOutput``)."""
        out = call(apply, params, x)
        return out[self.output_key] if self.output_key is not None else out

    def loss(
        self,
        apply: Callable[..., Any],
        params: Any,
        x: Any,
        y: Any,
        loss_fn: Callable[[Any, Any], Any] | None,
        rows: int = 0,
    ) -> Any:
        """The batch's loss; ``rows > 0``: of its last ``rows`` outputs only (a padded batch).
        A torch loss runs under the ``loss`` name scope (calibration files its values there)."""
        import jax

        if self.own_loss:
            return call(apply, params, x, **{LABELS: y})[LOSS_KEY]
        out = self.outputs(apply, params, x)
        with jax.named_scope("loss"):
            if rows:
                return loss_fn(out[-rows:], y[-rows:])
            return loss_fn(out, y)

    def shapes(
        self, loaded: Loaded, n: int
    ) -> tuple[list[Any], dict[str, Any], tuple[tuple[str, Any], ...]]:
        """What to convert for ``n`` rows: positional and keyword ``(shape, dtype)``s (with
        ``labels`` for a model that computes its own loss) and the fixed keywords."""
        positional, named = loaded.rows_of(n)
        if self.own_loss:
            y = loaded.labels[0]
            named[LABELS] = ((n, *y.shape[1:]), y.dtype)
        return positional, named, self.fixed

    def describe(self, data: Data) -> str:
        """What one step computes, e.g. ``GPT2LMHeadModel(input_ids=<input_ids>,
        labels=<labels>, use_cache=False).loss``."""
        args = (["<x>"] if None in data.names else []) + [f"{n}=<{n}>" for n in data.input_names]
        if self.own_loss:
            args.append(f"{LABELS}=<labels>")
        args += [f"{k}={v!r}" for k, v in self.fixed]
        model = f"{self.model}({', '.join(args)})"
        if self.own_loss:
            return f"{model}.{LOSS_KEY}"
        return f"loss_fn({model}{'.' + self.output_key if self.output_key else ''}, <labels>)"


def _forward_parameters(module: Any) -> tuple[set[str], bool]:
    """The keyword names ``module.forward`` takes, and whether it takes ``**kwargs``."""
    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return set(), True
    names = {
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw


def plan_call(module: Any, data: Data, route: str, *, own_loss: bool) -> ModelCall:
    """How ``fit`` (``own_loss``: ``loss_fn=None``) or ``predict`` calls ``module`` on
    ``data``: one-line :class:`FitError` for a keyword the model does not take."""
    name = type(module).__name__
    params, var_kw = _forward_parameters(module)
    shown = ", ".join(sorted(params)) or "none"
    for key in data.input_names:
        if key not in params and not var_kw:
            raise FitError(
                f"data: input {key!r} is not an argument of {name}.forward (it takes {shown}); "
                "name the blocks as the model's arguments"
            )
    if own_loss and LABELS not in params:
        raise FitError(
            f"loss_fn=None: {name}.forward takes no {LABELS}= (it takes {shown}), so it "
            "computes no loss of its own; pass a torch loss, e.g. nn.CrossEntropyLoss()"
        )
    if own_loss and route == "flax":
        raise FitError(
            f"loss_fn=None: the flax route's {name} computes no loss from {LABELS}=; pass a "
            f"torch loss (it is applied to the {OUTPUT_KEY}), or use route='graph'"
        )
    fixed = ((CACHE_SWITCH, False),) if CACHE_SWITCH in params and route == "graph" else ()
    return ModelCall(own_loss=own_loss, fixed=fixed, model=name)


def check_read(model: Any, mc: ModelCall, data: Data) -> None:
    """Every named block is read by the converted program (a ``forward(**kwargs)`` takes any
    keyword and may drop it: one line instead of a block silently left out)."""
    unread = [k for k in data.input_names if k in model.extras.get("unread_inputs", ())]
    if unread:
        raise FitError(
            f"data: input {unread[0]!r} is not used by {mc.model} (its forward takes "
            "it and ignores it); name the blocks as the model's arguments"
        )


def with_outputs(mc: ModelCall, out: Any) -> ModelCall:
    """``mc`` with the output structure read from ``out`` (``jax.eval_shape`` of the model):
    one line if the loss or the prediction cannot be found in it."""
    if mc.own_loss:
        loss = out.get(LOSS_KEY) if isinstance(out, Mapping) else None
        if getattr(loss, "shape", None) != ():
            what = f"keys {sorted(out)}" if isinstance(out, Mapping) else _kind(out)
            raise FitError(
                f"loss_fn=None but {mc.model} returns no loss (its output: {what}); pass a "
                "torch loss for its output"
            )
        return mc
    if isinstance(out, Mapping):
        if OUTPUT_KEY not in out:
            raise FitError(
                f"{mc.model} returns a dict without {OUTPUT_KEY!r} (keys {sorted(out)}); fit "
                f"trains models returning one tensor or a ModelOutput with {OUTPUT_KEY}"
            )
        return dataclasses.replace(mc, output_key=OUTPUT_KEY)
    if getattr(out, "shape", None) is None:
        raise FitError(
            f"{mc.model}'s output is {_kind(out)}, not one tensor; fit and predict take models "
            f"returning one tensor or a ModelOutput with {OUTPUT_KEY}"
        )
    return mc


def _kind(out: Any) -> str:
    if getattr(out, "shape", None) is not None:
        return f"one tensor of shape {tuple(out.shape)}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)}"
    return type(out).__name__


def model_input(positional: list[Any], named: dict[str, Any]) -> Any:
    """Shape-only model input (``jax.ShapeDtypeStruct``s): an array or :class:`Inputs`."""
    import jax

    args = tuple(jax.ShapeDtypeStruct(s, t) for s, t in positional)
    kwargs = {k: jax.ShapeDtypeStruct(s, t) for k, (s, t) in named.items() if k != LABELS}
    return Inputs(args, kwargs) if kwargs else args[0]


def outputs_of(model: Any) -> Callable[..., Any]:
    """``model.apply`` without the updated buffers that a conversion with
    ``buffer_updates="return"`` (batch norm in training mode) returns next to the outputs."""
    if not getattr(model, "extras", {}).get("buffer_updates"):
        return model.apply
    return lambda p, *args, **kwargs: model.apply(p, *args, **kwargs)[0]


def check_loss_shapes(
    model: Any, mc: ModelCall, loss: Any, params: Any, loaded: Loaded, batch_size: int
) -> ModelCall:
    """Trace the model and the loss on shapes only: a mismatch is one line, before any MPC.
    Returns ``mc`` with the model's output structure (:func:`with_outputs`)."""
    import jax

    import ppml_torch.dropout as dropout

    y = loaded.labels[0]
    positional, named, _ = mc.shapes(loaded, batch_size)
    xb = model_input(positional, named)
    yb = jax.ShapeDtypeStruct((batch_size, *y.shape[1:]), y.dtype)
    with dropout.drawn_from(np.zeros(2, np.uint32)):  # shapes only: any key will do
        if mc.own_loss:
            out = jax.eval_shape(
                lambda p, x, y: call(outputs_of(model), p, x, **{LABELS: y}), params, xb, yb
            )
        else:
            out = jax.eval_shape(lambda p, x: call(outputs_of(model), p, x), params, xb)
    mc = with_outputs(mc, out)
    if mc.own_loss:
        return mc
    out = out[mc.output_key] if mc.output_key is not None else out
    class_labels = np.issubdtype(y.dtype, np.integer) and out.shape[:-1] == yb.shape
    if out.shape != yb.shape and not class_labels:  # no silent broadcasting (n, 1) vs (n,)
        raise FitError(
            f"the module's output has shape {out.shape} per batch but the labels {yb.shape}; "
            "give labels of the output's shape (e.g. y.reshape(-1, 1))"
        )
    try:
        value = jax.eval_shape(loss, out, yb)
    except Exception as e:  # noqa: BLE001 - re-raised as one line
        raise FitError(
            f"the loss cannot take outputs {out.shape} and labels {yb.shape}: {e}"
        ) from None
    if getattr(value, "shape", None) != ():
        raise FitError(
            f"the loss returns shape {getattr(value, 'shape', type(value).__name__)}, not a scalar; "
            "fit differentiates one number: use reduction='mean' or 'sum'"
        )
    return mc
