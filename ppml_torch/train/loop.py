"""``fit``: train a torch module inside a session (plaintext or MPC), in one visible sequence.

How a ``fit`` runs (every check first, then the session work):

1. the arguments (:mod:`~ppml_torch.train.checks`), the data description, the loss and the
   optimizer are checked and mapped (one-line errors); the owners' loaders are called; the
   model is converted through the conversion cache (:mod:`ppml_torch.train.cache`) for the
   batch shape, once.  The graph route runs a kept partial batch in that program, padded with
   the rows before it, when that is exact (the model is row-wise, checked in plaintext:
   :mod:`ppml_torch.train.rows`), else converts its shape too; the Flax route has no fixed
   shapes.  What the programs close over is one :class:`~ppml_torch.train.programs.TrainPlan`;
2. ``weights_owner`` puts the initial weights, each party puts its blocks: once, for the whole
   training.  Everything stays inside the session (secret-shared under MPC);
3. ``init`` builds the :class:`~ppml_torch.train.state.TrainState` (trained and fixed leaves,
   optimizer state) from the weights; each epoch is ONE call of ONE compiled program
   (:mod:`ppml_torch.train.programs`): the model input is assembled inside it (vertical: the
   parties' feature blocks concatenated in column order; horizontal: their rows one after the
   other), optionally permuted by a public shuffle order, cut into ``n // batch_size`` equal
   batches that ``lax.scan`` runs (compile time does not grow with the number of batches),
   then the last partial batch of ``n % batch_size`` rows as one more step in the same
   program, like torch's ``DataLoader(drop_last=False)``; ``drop_last=True`` drops it instead.
   The state stays in the session between epochs; it starts with the visibility an epoch
   gives it, so SPU compiles the program once;
4. at the end the trained weights (only those: frozen parameters and buffers never change)
   are revealed ONCE, to ``weights_to``, and loaded into the module with
   ``load_state_dict(strict=True)``; everything else keeps the module's own values.  Batch
   norm in training mode (graph route): its running statistics are updated as torch does,
   carried in the state and revealed with the weights (they are statistics of the batches).

**Disclosure.** With ``reveal_loss`` the mean training loss of each epoch is revealed (to the
label owner by default).  Under MPC that is a value computed from every party's data: opt in
only if that party may learn it.  ``session.record`` lists every put and reveal.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ppml_torch.runners.base import Handle, Session
from ppml_torch.runners.placeholders import shapes_of

from .cache import ConversionCache, conversions, updates_buffers
from .checks import (
    check_batch_size,
    check_class_labels,
    check_counts,
    check_loss_shapes,
    check_module_params,
    check_route,
    check_trained_names,
    loss_receiver,
    plan_session,
)
from .data import Data, load
from .history import EpochRecord, History
from .layout import Batches, InputLayout
from .names import Leaves, load_trained
from .programs import TrainPlan, first, second
from .scope import Scope
from .state import secret_optimizer_leaves


def fit(
    module: Any,
    loss_fn: Any,
    optimizer: Any,
    data: Data,
    *,
    route: str = "graph",
    session: Session | str = "cpu",
    epochs: int = 1,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    progress: bool = True,
    reveal_loss: bool | str = False,
    calibration: Any = None,
) -> tuple[Any, History]:
    """Train ``module`` inside ``session``; return the same module with the trained weights.

    Args:
      module: the torch module (its current weights are the initial ones).
      loss_fn: a torch loss (``nn.MSELoss()``, ...) called as ``loss_fn(module(x), y)``.
      optimizer: the torch optimizer built on ``module.parameters()``; its settings are read,
        it takes no step itself.
      data: who owns what (:func:`ppml_torch.train.vertical` / :func:`horizontal`).
      route: ``"graph"`` (``ppml_torch.convert``) or ``"flax"`` (``ppml_torch.to_flax``).
      session: an open session (left open) or a run spec such as ``"spu:ABY3"`` (opened and
        closed here).
      epochs, batch_size: as in a torch loop over ``DataLoader(batch_size=...)``.
      shuffle: a new public row order every epoch (``numpy.random.default_rng(seed)``); the
        order is public (it reveals nothing about the values).  Default off: batches in data
        order.
      drop_last: drop the last partial batch (torch's ``DataLoader(drop_last=True)``).  By
        default it is kept as one more step of the same epoch program; on the graph route it
        runs padded to the batch shape (loss on its own rows only) when the model is row-wise,
        which gives the unpadded numbers (module docstring); ``History`` says which.
      progress: a tqdm bar over epochs.
      calibration: a ``ppml_torch.calibrate`` report (of the model, or ``calibrate_function`` of
        a training step); a run it predicts will overflow is refused before any session work.
      reveal_loss: reveal each epoch's mean loss: ``True`` to the label owner (horizontal: to
        every party, they all hold labels), or a party name.  A disclosure under MPC (see the
        module docstring); off by default, and the history's losses are then ``None``.

    Returns:
      ``(module, history)``: ``module`` with the trained weights loaded
      (``load_state_dict(strict=True)``), and a :class:`History`.

    One process per party (a production session, ``open_session(..., cluster=, party=)``):
    every party calls ``fit`` the same way, each with its own data; another party's blocks are
    loaders or ``jax.ShapeDtypeStruct`` placeholders (:mod:`ppml_torch.train.data`: their
    owners announce the shapes).  The module's weights are read in ``weights_owner``'s process
    only.  The trained weights reach ``weights_to``'s process only: there ``fit`` returns the
    trained module; every other process gets ``(None, history)`` (``history.weights_to`` names
    the receiver).  A revealed loss is ``None`` outside its receiver's process.

    Raises:
      DataError, FitError, OptimizerMappingError, LossMappingError: bad input, one line,
        before any session work.
    """
    from .losses import lazy_from_torch  # torch and optax are imported when fit runs
    from .optim import from_torch as map_optimizer

    t_start = time.perf_counter()
    # 1. checks and mappings, in plaintext: nothing is put before they all pass
    check_route(route)
    check_counts(epochs, batch_size, seed)
    sp = plan_session(session)
    check_module_params(optimizer, module)
    sp.gate(calibration)
    topt = map_optimizer(optimizer, module, None, fixed_point=sp.fixed_point)
    trainable = [name for g in topt.groups for name in g["names"]]
    loss = lazy_from_torch(loss_fn)
    loaded = load(data, sp.parties, need_labels=True, session=sp.session)
    check_batch_size(batch_size, loaded.n_rows)
    receiver = loss_receiver(reveal_loss, data, sp.parties)
    batches = Batches.of(loaded.n_rows, batch_size, drop_last=drop_last, shuffle=shuffle)

    # the module converted once per shape (cached); its weights in the converted layout
    cache = conversions(module, route)
    converted = cache.conversions
    row, dtype = loaded.example_row_shape, loaded.features[0].dtype
    # batch norm in training mode: the graph program also returns the new running statistics
    updates = route == "graph" and updates_buffers(module)
    model = cache.get([((batch_size, *row), dtype)], buffer_updates=updates)
    params = cache.params(model)
    leaves = Leaves.of(model, set(trainable))
    check_trained_names(trainable, leaves.names, route)
    out_shape = check_loss_shapes(model, loss, params, loaded, batch_size, row, dtype)
    check_class_labels(loss_fn, out_shape, loaded, data)
    batches, apply_partial, refused = _partial_batch(
        module, cache, model, params, batches, row, dtype, updates
    )
    plan = TrainPlan(
        inputs=InputLayout(
            data.split, loaded.column_order, len(loaded.features), len(loaded.labels)
        ),
        batches=batches,
        apply=model.apply,
        apply_partial=apply_partial,
        loss=loss,
        tx=topt.tx,  # over {torch name: array} of the trained names (frozen ones stay fixed)
        leaves=leaves,
        secret_opt=secret_optimizer_leaves(topt.tx, leaves.trained_struct(params)),
        returns_loss=receiver is not False,
        buffers=tuple(model.extras.get("buffer_updates", ())) if updates else (),
    )
    rng = np.random.default_rng(seed)
    setup_s = time.perf_counter() - t_start

    with sp.borrow() as s:
        scope = Scope(s)
        bar = _progress(epochs, progress)
        try:
            first_report = len(s.reports)
            # 2. the weights (read in weights_owner's process only: one process per party, the
            # others give the shapes) and every party's blocks, put once
            w = scope.put(
                params if data.weights_owner in s.local_parties else shapes_of(params),
                data.weights_owner,
            )
            blocks = [
                scope.put(a, b.owner) for b, a in zip(data.features, loaded.features, strict=True)
            ]
            blocks += [
                scope.put(a, b.owner) for b, a in zip(data.labels, loaded.labels, strict=True)
            ]
            # 3. the state, then one program call per epoch
            state = scope.call(plan.init, w, name="init")
            scope.free(w)
            records = []
            for e in range(1, epochs + 1):
                order: list[Handle] = []
                if shuffle:
                    order.append(
                        scope.put(rng.permutation(loaded.n_rows).astype(np.int32), "public")
                    )
                out = scope.call(plan.epoch, state, *blocks, *order, name="epoch")
                report = s.last_report
                scope.free(state, *order)
                value = None
                if receiver is False:
                    state = out
                else:  # split (state, loss): two cheap calls, then the loss is revealed
                    state = scope.call(first, out, name="state")
                    lh = scope.call(second, out, name="loss")
                    got = s.reveal(lh, to=receiver)  # None in another party's process
                    value = None if got is None else float(got)
                    scope.free(lh, out)
                records.append(EpochRecord(e, value, report.compile_s, report.run_s, report.comm))
                if bar is not None:
                    bar.update(1)
                    if value is not None:
                        bar.set_postfix(loss=f"{value:.4f}")
            # 4. the trained leaves, revealed once to weights_to
            wh = scope.call(plan.weights, state, name="weights")
            trained = s.reveal(wh, to=data.weights_to)
            scope.free(wh, state, *blocks)
            reports = s.reports[first_report:]
        finally:
            if bar is not None:
                bar.close()
            scope.free_all()  # only after a failure: a shared session keeps no stray shares
    history = History(
        records, batches.n_full, batches.partial, batches.dropped, reports,
        partial_padded=batches.padded, padding_refused=refused,
        conversions=cache.conversions - converted, setup_s=setup_s,
    )  # fmt: skip
    history.weights_to = data.weights_to
    history.wall_s = time.perf_counter() - t_start
    if trained is None:  # one process per party: the weights went to weights_to's process
        return None, history
    load_trained(module, model, params, leaves.names, trained)
    return module, history


def _partial_batch(
    module: Any,
    cache: ConversionCache,
    model: Any,
    params: Any,
    batches: Batches,
    row: tuple[int, ...],
    dtype: Any,
    updates: bool = False,
) -> tuple[Batches, Callable[..., Any] | None, str | None]:
    """How the kept partial batch runs: ``(batches, apply_partial, why padding was refused)``.

    Graph route: padded into the batch-shape program when that is exact (:mod:`.rows`;
    ``batches.padded``), else its own shape converted.  The Flax route's one conversion serves
    every shape.
    """
    if not batches.partial:
        return batches, None, None
    refused = None
    if updates:  # batch statistics: the padding rows would change every row's output
        refused = "batch norm in training mode normalises over the batch"
    elif cache.route == "graph":
        from .rows import padding_is_exact

        refused = padding_is_exact(
            module, model, params, batches.batch_size, batches.partial, row, dtype
        )
        if refused is None:
            return dataclasses.replace(batches, padded=True), None, None
    part = cache.get([((batches.partial, *row), dtype)], buffer_updates=updates)
    return batches, part.apply, refused


def _progress(epochs: int, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=epochs, desc="fit", unit="epoch")
