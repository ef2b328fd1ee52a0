"""``predict``: run a torch module on the parties' inputs inside a session, revealed to one
party.

The weights' owner puts the module's current weights, each party puts its blocks, ONE program
assembles the model input from them (:class:`~ppml_torch.train.layout.InputLayout`) and runs
the model, and only the outputs are revealed, to ``reveal_to`` (default: every party).  A model
returning a Hugging Face ``ModelOutput`` gives its ``logits``; named inputs and
``use_cache=False`` as in ``fit`` (:mod:`ppml_torch.train.calls`).  Every block is checked on
its owner's side first (:mod:`ppml_torch.train.values`: ids inside their tables, what ``put``
refuses), and a module that drops out in training mode is refused (call ``module.eval()``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

import ppml_torch.dropout as dropout
from ppml_torch.runners.base import Session
from ppml_torch.runners.placeholders import is_placeholder, shapes_of

from .cache import ConversionCache, conversions
from .calls import check_read, model_input, plan_call, with_outputs
from .checks import FitError, check_route, plan_session
from .data import ArrayLike, Data, horizontal, load, vertical
from .layout import InputLayout, call
from .scope import Scope
from .values import check_blocks


def predict(
    module: Any,
    inputs: Data | ArrayLike,
    *,
    route: str = "graph",
    session: Session | str = "cpu",
    reveal_to: str | None = None,
    owner: str | None = None,
    weights_owner: str | None = None,
    calibration: Any = None,
) -> np.ndarray | None:
    """``module(inputs)`` computed inside ``session``, revealed only to ``reveal_to``.

    ``inputs``: a :class:`~ppml_torch.train.Data` (labels optional; its ``weights_owner``
    puts the weights) or one array owned by ``owner`` (default: the session's first party).
    ``reveal_to``: the party that receives the outputs (default: every party).  The module's
    current weights are put by ``weights_owner`` (default: the data's, else ``owner``).
    ``calibration``: a ``ppml_torch.calibrate`` report; a run it predicts will overflow is
    refused before anything is put.

    One process per party (a production session): every party calls ``predict`` the same way,
    each with its own data (another party's blocks as loaders or ``jax.ShapeDtypeStruct``
    placeholders, see :mod:`ppml_torch.train.data`); the module's weights are read in the
    weights owner's process only.  The outputs are returned in ``reveal_to``'s process and
    ``None`` in every other one.

    Graph route: a number of rows with no conversion of its own runs through a cached
    conversion of the same rows (e.g. ``fit``'s batch) in chunks, padded with real rows whose
    outputs are dropped, when the model is row-wise (checked in plaintext first,
    :func:`~ppml_torch.train.rows.chunks_are_exact`); else that shape is converted once.
    """
    import jax

    check_route(route)
    sp = plan_session(session)
    parties = sp.parties
    sp.gate(calibration)
    if not isinstance(inputs, Data):
        inputs = _one_owner(inputs, owner or parties[0], weights_owner)
    if reveal_to is not None and reveal_to not in parties:
        raise FitError(f"reveal_to={reveal_to!r} is not a party ({', '.join(parties)})")
    inputs = dataclasses.replace(inputs, labels=())  # labels are not needed: never loaded
    loaded = load(inputs, parties, need_labels=False, session=sp.session)
    w_owner = weights_owner or inputs.weights_owner
    mc = plan_call(module, inputs, route, own_loss=False)
    cache = conversions(module, route)
    if inputs.input_names or mc.fixed:  # keywords: their own shape, converted once
        model = cache.get(*mc.shapes(loaded, loaded.n_rows))
        apply_fn = model.apply
    else:
        model, apply_fn = _model_for(
            module, cache, loaded.n_rows, loaded.example_row_shape, loaded.features[0].dtype
        )
    _refuse_dropout(model)
    check_read(model, mc, inputs)
    params = cache.params(model)
    positional, named, _ = mc.shapes(loaded, loaded.n_rows)
    mc = with_outputs(
        mc,
        jax.eval_shape(lambda p, x: call(apply_fn, p, x), params, model_input(positional, named)),
    )
    check_blocks(
        model, inputs, loaded, sp.fixed_point,
        announce=sp.session.announce if sp.one_process_per_party else None,
    )  # fmt: skip
    layout = InputLayout(inputs.split, loaded.column_order, len(loaded.features), 0, inputs.names)
    program = _program(layout, apply_fn, mc.output_key)
    with sp.borrow() as s:
        scope = Scope(s)
        try:
            w = scope.put(params if w_owner in s.local_parties else shapes_of(params), w_owner)
            blocks = [
                scope.put(a, b.owner) for b, a in zip(inputs.features, loaded.features, strict=True)
            ]
            out = scope.call(program, w, *blocks, name="predict")
            value = s.reveal(out, to=reveal_to)
            scope.free(w, out, *blocks)
        finally:
            scope.free_all()
    return None if value is None else np.asarray(value)


def _one_owner(inputs: ArrayLike, owner: str, weights_owner: str | None) -> Data:
    """One array (or another party's placeholder) as the :class:`Data` of one owner: columns
    of a vertical split for rows of features, rows of a horizontal split otherwise."""
    if is_placeholder(inputs):  # another party's inputs, shapes only (one process per party)
        arr = inputs
    elif hasattr(inputs, "detach"):
        arr = inputs.detach().cpu().numpy()
    else:
        arr = np.asarray(inputs)
    if arr.ndim < 2:
        raise FitError(f"predict: inputs must have rows first, got shape {arr.shape}")
    if arr.ndim == 2:
        return vertical({owner: (range(arr.shape[1]), arr)}, weights_owner=weights_owner or owner)
    return horizontal({owner: (arr, None)}, weights_owner=weights_owner or owner)


def _refuse_dropout(model: Any) -> None:
    """A module that drops out in training mode: one line before anything is put."""
    sites = dropout.sites_of(model)
    if sites:
        where, p = sites[0]
        raise dropout.DropoutError(
            f"predict: {where} drops out in training mode (p={p}) and predict draws no masks; "
            "call module.eval() first (torch's module(x) would drop units at random)"
        )


@functools.cache
def _program(
    layout: InputLayout, apply_fn: Callable[..., Any], output_key: str | None = None
) -> Callable[..., Any]:
    """The predict program (cached: the session's compiled programs key on it)."""

    def run(params: Any, *blocks: Any) -> Any:
        x, _ = layout.assemble(blocks)
        out = call(apply_fn, params, x)
        return out[output_key] if output_key is not None else out

    return run


def _model_for(
    module: Any, cache: ConversionCache, n: int, row: tuple[int, ...], dtype: Any
) -> tuple[Any, Callable[..., Any]]:
    """``(model, apply_fn)`` for ``n`` rows: the cached conversion of that shape; else (graph
    route) a cached conversion of the same rows run in chunks, when that is exact for this
    model (:func:`~ppml_torch.train.rows.chunks_are_exact`); else a new conversion."""
    key = [((n, *row), dtype)]
    if cache.route == "graph" and not cache.has(key):
        from .rows import chunked, chunks_are_exact

        for batch, model in cache.same_rows(row, dtype):
            params = cache.params(model)
            if chunks_are_exact(module, model, params, batch, n, row, dtype) is None:
                return model, _chunked_apply(model.apply, batch, n, chunked)
            break  # the largest cached batch is the one tried: one plaintext check at most
    model = cache.get(key)
    return model, model.apply


@functools.cache
def _chunked_apply(apply_fn: Callable[..., Any], batch: int, n: int, chunked: Any) -> Any:
    return chunked(apply_fn, batch, n)  # cached: the session's compiled programs key on it
