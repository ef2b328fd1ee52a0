"""The graph route: ``torch.export`` -> core ATen -> a JAX interpreter.

``from ppml_torch.converters.fx import convert`` is cheap: torch, JAX and the
lowerings are imported on the first call.  See :mod:`.converter` for the
conventions (parameters, tied weights, fixed arguments, outputs) and
``ppml-torch ops`` (:mod:`.table`) for the op table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ppml_torch.converters.fx.converter import BufferUpdates
    from ppml_torch.converters.fx.registry import IndexLowering
    from ppml_torch.model import ConvertedModel

__all__ = ["convert"]


def convert(
    module: torch.nn.Module,
    example_args: tuple[Any, ...],
    example_kwargs: Mapping[str, Any] | None = None,
    *,
    index_lowering: IndexLowering = "auto",
    buffer_updates: BufferUpdates = "refuse",
    fold_batch_norm: bool = False,
) -> ConvertedModel:
    """Convert a torch module into JAX params plus a pure, jit-able, differentiable ``apply``.

    Args:
      module: the torch module, converted in its current train/eval mode.
      example_args: a tuple of example positional inputs; their shapes are the
        program's static shapes.
      example_kwargs: example keyword inputs.  Tensor values are inputs of ``apply``;
        other values (``use_cache=False``) are fixed at conversion.
      index_lowering: the form of gathers on indices computed from inputs (secret under
        MPC: token ids of an embedding, class labels of a cross entropy).  ``"auto"``
        (default): ``"one_hot"`` for tables of at most 64 entries (class labels), else
        ``"take"``.  ``"take"``: a gather, as ``jnp.take``/Flax; the cheapest under ABY3 for embedding
        tables.  ``"one_hot"``: a one-hot product; fewer bytes under SEMI2K/CHEETAH and for
        few classes (labels).  Same result and same (one-hot) gradient; costs are in
        :class:`~ppml_torch.converters.fx.registry.LoweringOptions` and ``bench/README.md``.
      buffer_updates: what to do with buffers the forward updates (batch norm's running
        statistics in training mode): ``"refuse"`` (default: a one-line error) or
        ``"return"``: ``apply`` returns ``(outputs, {state_dict key: new value})``.
      fold_batch_norm: fold each eval-mode batch norm that follows a convolution into the
        convolution's weights, in plaintext, now (inference only: the folded params do not
        map back to the module).  Under MPC that removes the batch norm's rsqrt and product
        (bench/README.md, ``bench_cnn_ops.py``).

    Returns:
      A :class:`~ppml_torch.model.ConvertedModel` with ``route="graph"``: ``params`` keyed
      by ``state_dict`` names, ``apply(params, *args, **kwargs)`` equal to ``module(...)``,
      and ``state_dict(params)`` for ``module.load_state_dict(..., strict=True)``.

    Raises:
      ValueError: ``index_lowering`` is not ``"auto"``, ``"take"`` or ``"one_hot"``, or
        ``buffer_updates`` not ``"refuse"`` or ``"return"``.
      ppml_torch.converters.fx.errors.UnsupportedOpError: an op has no lowering or is
        refused under MPC (training-mode dropout, random ops); the message
        names the op, the module using it and the file to add a lowering to.
      ppml_torch.converters.fx.errors.ConversionError: torch.export cannot capture the
        module (e.g. the example inputs do not fit a layer), outputs are not tensors, or the
        module mutates its state (buffers: unless ``buffer_updates="return"``).
    """
    from ppml_torch.converters.fx import converter

    return converter.convert(
        module,
        example_args,
        example_kwargs,
        index_lowering=index_lowering,
        buffer_updates=buffer_updates,
        fold_batch_norm=fold_batch_norm,
    )
