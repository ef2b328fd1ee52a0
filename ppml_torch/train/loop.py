"""``fit``: train a torch module inside a session (plaintext or MPC), in one visible sequence.

How a ``fit`` runs (every check first, then the session work):

1. the arguments (:mod:`~ppml_torch.train.checks`), the data description, the loss, the
   optimizer with its own state and its LR scheduler (:mod:`~ppml_torch.train.carry`,
   :mod:`~ppml_torch.train.schedules`) are checked and mapped (one-line errors); the owners'
   loaders are called; the model is converted through the conversion cache
   (:mod:`ppml_torch.train.cache`) for the batch shape, once.  The graph route runs a kept
   partial batch in that program, padded with the rows before it, when that is exact (the
   model is row-wise, checked in plaintext: :mod:`ppml_torch.train.rows`), else converts its
   shape too; the Flax route has no fixed shapes.  What the programs close over is one
   :class:`~ppml_torch.train.programs.TrainPlan`.  Under MPC the whole training step is then
   checked for fixed-point range in plaintext (:mod:`~ppml_torch.train.preflight`);
2. ``weights_owner`` puts the initial weights (and the optimizer's carried moments), each
   party puts its blocks: once, for the whole training.  Everything stays inside the session
   (secret-shared under MPC);
3. ``init`` builds the :class:`~ppml_torch.train.state.TrainState` (trained and fixed leaves,
   optimizer state) from the weights; each epoch is ONE call of ONE compiled program
   (:mod:`ppml_torch.train.programs`): the model input is assembled inside it (vertical: the
   parties' feature blocks concatenated in column order; horizontal: their rows one after the
   other), optionally permuted by a public shuffle order, cut into ``n // batch_size`` equal
   batches that ``lax.scan`` runs (compile time does not grow with the number of batches),
   then the last partial batch of ``n % batch_size`` rows as one more step in the same
   program, like torch's ``DataLoader(drop_last=False)``; ``drop_last=True`` drops it instead.
   With ``profile=True`` the first batch's step is profiled once before epoch 1
   (:mod:`~ppml_torch.train.profile_step`; its output freed).  The state stays in the session
   between epochs; it starts with the visibility an epoch
   gives it, so SPU compiles the program once.  Under MPC the epoch's overflow sentinel
   (:mod:`~ppml_torch.train.sentinel`) reveals one bit to the label owner, and ``fit`` stops
   if it is set;
4. at the end the trained weights (only those: frozen parameters and buffers never change)
   and the optimizer's moments are revealed ONCE, to ``weights_to``: the weights are loaded
   into the module with ``load_state_dict(strict=True)`` (everything else keeps the module's
   own values), the moments into the torch optimizer, and the scheduler is stepped.

**Disclosure.** With ``reveal_loss`` the mean training loss of each epoch is revealed (to the
label owner by default; with ``log_every`` also every n-th step's).  Under MPC that is a
value computed from every party's data: opt in only if that party may learn it.  In a
plaintext session the loss is always read (nothing is secret there).  The sentinel's bit
per epoch goes to the label owner; the optimizer's moments (averages of the last gradients)
go to ``weights_to`` with the weights.  ``session.record`` lists every put and reveal.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ppml_torch.runners.base import Handle, Session
from ppml_torch.runners.placeholders import shapes_of

from .cache import ConversionCache, conversions
from .checks import (
    check_batch_size,
    check_counts,
    check_fit_options,
    check_loss_shapes,
    check_module_params,
    check_route,
    check_trained_names,
    loss_receiver,
    plan_session,
)
from .data import Data, load
from .history import History
from .layout import Batches, InputLayout
from .names import Leaves, load_trained
from .outputs import EpochOutputs, TrainingOverflowError, overflow_message, overflow_to
from .programs import TrainPlan
from .progress import Stages
from .scope import Scope
from .state import secret_leaves, secret_optimizer_leaves


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
    log_every: int | None = None,
    calibration: Any = None,
    scheduler: Any = None,
    scheduler_step: str = "epoch",
    range_check: str | bool = "auto",
    sentinel: bool | str = True,
    profile: bool = False,
) -> tuple[Any, History]:
    """Train ``module`` inside ``session``; return the same module with the trained weights.

    Args:
      module: the torch module (its current weights are the initial ones).
      loss_fn: a torch loss (``nn.MSELoss()``, ...) called as ``loss_fn(module(x), y)``.
      optimizer: the torch optimizer built on ``module.parameters()``; its settings and its
        state (momentum buffers, Adam's step and moments) are read, it takes no step itself,
        and the trained state is written back into it (``optimizer.state_dict()`` resumes).
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
      progress: a tqdm bar from the call on: the set-up stages, then the epochs.
      reveal_loss: reveal each epoch's mean loss under MPC: ``True`` to the label owner
        (horizontal: to every party, they all hold labels), or a party name.  A disclosure
        (see the module docstring); off by default, and the history's losses are then
        ``None``.  Plaintext sessions always record the loss.
      log_every: also record the loss of every ``log_every``-th step of each epoch
        (``history.steps``); under MPC only with ``reveal_loss`` (a disclosure per step).
      calibration: a ``ppml_torch.calibrate`` report (of the model, or ``calibrate_function`` of
        a training step); a run it predicts will overflow is refused before any session work.
      scheduler: a torch LR scheduler attached to ``optimizer`` (``StepLR``, ``MultiStepLR``,
        ``ExponentialLR``, ``CosineAnnealingLR``, ``LinearLR``, ``OneCycleLR``); its learning
        rates are used and it is stepped as your loop would step it.
      scheduler_step: ``"epoch"`` (``scheduler.step()`` after each epoch) or ``"batch"``.
      range_check: under MPC, check the whole training step for fixed-point range before any
        MPC work (:mod:`ppml_torch.train.preflight`): ``"auto"`` (the owners' rows in one
        process; announced column bounds across processes), ``"bounds"`` (the latter
        everywhere) or ``"off"``/``False``.
      sentinel: under MPC, each epoch checks its losses and gradients for values that cannot
        happen in real numbers and reveals one bit to the label owner; ``fit`` stops with
        :class:`TrainingOverflowError` if it is set (:mod:`ppml_torch.train.sentinel`).
      profile: before the first epoch, measure one training step on the first batch per
        module, forward and backward, loss and optimizer (``history.profile``, a
        :class:`~ppml_torch.profiling.report.ProfileReport`; :mod:`ppml_torch.train.
        profile_step`).  In-process ``spu`` sessions only (refused in one line otherwise).

    Returns:
      ``(module, history)``: ``module`` with the trained weights loaded
      (``load_state_dict(strict=True)``), and a :class:`History`.

    One process per party (a production session, ``open_session(..., cluster=, party=)``):
    every party calls ``fit`` the same way, each with its own data; another party's blocks are
    loaders or ``jax.ShapeDtypeStruct`` placeholders (:mod:`ppml_torch.train.data`: their
    owners announce the shapes).  The module's weights and the optimizer's state are read in
    ``weights_owner``'s process only (it announces the state's step counts and the schedule).
    The trained weights and state reach ``weights_to``'s process only: there ``fit`` returns
    the trained module; every other process gets ``(None, history)`` (``history.weights_to``
    names the receiver).  A revealed loss is ``None`` outside its receiver's process.

    Raises:
      DataError, FitError, OptimizerMappingError, LossMappingError, TrainingRangeError: bad
        input, one line, before any session work.  TrainingOverflowError: the sentinel fired.
    """
    from .fit_optimizer import FitOptimizer, owner_facts
    from .losses import lazy_from_torch  # torch and optax are imported when fit runs
    from .preflight import check_fit_step
    from .profile_step import check_profile, profile_first_step
    from .schedules import check_scheduler
    from .sentinel import for_fit

    stages = Stages(epochs, progress)
    scope: Scope | None = None
    try:
        # 1. checks and mappings, in plaintext: nothing is put before they all pass
        stages.stage("checks")
        check_route(route)
        check_counts(epochs, batch_size, seed)
        sp = plan_session(session)
        profile = check_profile(profile, sp.config.backend)
        check_module_params(optimizer, module)
        sp.gate(calibration)
        check_scheduler(scheduler, optimizer, scheduler_step)
        loss = lazy_from_torch(loss_fn)
        loaded = load(data, sp.parties, need_labels=True, session=sp.session)
        check_batch_size(batch_size, loaded.n_rows)
        receiver = loss_receiver(reveal_loss, data, sp.parties)
        check_fit_options(log_every, range_check, sentinel, sp.is_mpc, receiver)
        batches = Batches.of(loaded.n_rows, batch_size, drop_last=drop_last, shuffle=shuffle)
        n_steps = batches.n_full + (1 if batches.partial else 0)
        opt = FitOptimizer.of(
            optimizer, module, scheduler, scheduler_step, fixed_point=sp.fixed_point,
            steps_per_epoch=n_steps, epochs=epochs,
            owner_facts=owner_facts(sp, data.weights_owner),
        )  # fmt: skip
        trainable = [name for g in opt.topt.groups for name in g["names"]]

        # the module converted once per shape (cached); its weights in the converted layout
        stages.stage("convert")
        cache = conversions(module, route)
        converted = cache.conversions
        row, dtype = loaded.example_row_shape, loaded.features[0].dtype
        model = cache.get([((batch_size, *row), dtype)])
        params = cache.params(model)
        leaves = Leaves.of(model, set(trainable))
        check_trained_names(trainable, leaves.names, route)
        check_loss_shapes(model, loss, params, loaded, batch_size, row, dtype)
        batches, apply_partial, refused = _partial_batch(
            module, cache, model, params, batches, row, dtype
        )
        layout = InputLayout(
            data.split, loaded.column_order, len(loaded.features), len(loaded.labels)
        )
        train_struct = leaves.trained_struct(params)
        plan = TrainPlan(
            inputs=layout,
            batches=batches,
            apply=model.apply,
            apply_partial=apply_partial,
            loss=loss,
            tx=opt.topt.tx,  # over {torch name: array} of the trained names (frozen stay fixed)
            leaves=leaves,
            secret_opt=secret_optimizer_leaves(opt.topt.tx, train_struct),
            returns_loss=receiver is not False or not sp.is_mpc,
            carried=not opt.topt.start.fresh,
            sentinel=for_fit(sentinel, sp, train_struct, loss_fn, receiver is not False),
            log_every=log_every or 0,
        )
        owner_here = data.weights_owner in sp.local_parties
        if owner_here or not plan.carried:  # the optimizer state to start from (plaintext)
            start = opt.initial(opt.topt, model, leaves.names, leaves.split(params)[0])
        else:  # another process holds it: its shapes
            start = _shapes(opt.topt.tx.init, train_struct)
        checked = None
        if sp.fixed_point is not None and range_check not in (False, "off"):
            stages.stage("range check")
            checked = check_fit_step(
                range_check, sp, loaded, layout, plan, opt, model, params, shuffle, seed
            )
        rng = np.random.default_rng(seed)

        with sp.borrow() as s:
            scope = Scope(s)
            first_report = len(s.reports)
            # 2. the weights and the optimizer's carried moments (read in weights_owner's
            # process only: one process per party, the others give the shapes) and every
            # party's blocks, put once
            stages.stage("share")
            w = [scope.put(params if owner_here else shapes_of(params), data.weights_owner)]
            if plan.carried:  # Adam's moments, SGD's momentum buffers: the owner's secret
                moments = secret_leaves(start, plan.secret_opt)
                w.append(
                    scope.put(moments if owner_here else shapes_of(moments), data.weights_owner)
                )
            blocks = [
                scope.put(a, b.owner) for b, a in zip(data.features, loaded.features, strict=True)
            ]
            blocks += [
                scope.put(a, b.owner) for b, a in zip(data.labels, loaded.labels, strict=True)
            ]
            # 3. the state, then one program call per epoch
            state = scope.call(plan.init, *w, name="init")
            scope.free(*w)
            profiled = None
            if profile:  # one step on the first batch, per module; its output is freed
                stages.stage("profile")
                profiled = profile_first_step(s, plan, state, blocks, type(module).__name__, route)
            epochs_run = EpochOutputs(plan, s, scope, receiver, data, n_steps, first_report)
            for e in range(1, epochs + 1):
                stages.epoch(e, epochs)
                order: list[Handle] = []
                if shuffle:
                    order.append(
                        scope.put(rng.permutation(loaded.n_rows).astype(np.int32), "public")
                    )
                out = scope.call(plan.epoch, state, *blocks, *order, name="epoch")
                scope.free(state, *order)
                state, value = epochs_run.read(e, out, s.last_report)
                if epochs_run.overflow:
                    err = TrainingOverflowError(overflow_message(e, plan, sp, overflow_to(data)))
                    err.history = epochs_run.history(batches, refused, cache, converted, stages)
                    raise err
                stages.done_epoch(value)
            # 4. the trained leaves and the optimizer's moments, revealed once to weights_to
            stages.stage("reveal")
            rh = scope.call(plan.result, state, name="weights")
            result = s.reveal(rh, to=data.weights_to)  # None in another party's process
            scope.free(rh, state, *blocks)
            history = epochs_run.history(batches, refused, cache, converted, stages)
    finally:
        stages.close()
        if scope is not None:
            scope.free_all()  # only after a failure: a shared session keeps no stray shares
    history.range_check, history.stages = checked, dict(stages.times)
    history.profile = profiled
    history.wall_s = time.perf_counter() - stages.t0
    opt.finish(
        model, leaves.names, leaves.split(params)[0], plan.secret_opt,
        None if result is None else result[1], epochs * n_steps,
    )  # fmt: skip
    if result is None:  # one process per party: the weights went to weights_to's process
        return None, history
    load_trained(module, model, params, leaves.names, result[0])
    return module, history


def _partial_batch(
    module: Any,
    cache: ConversionCache,
    model: Any,
    params: Any,
    batches: Batches,
    row: tuple[int, ...],
    dtype: Any,
) -> tuple[Batches, Callable[..., Any] | None, str | None]:
    """How the kept partial batch runs: ``(batches, apply_partial, why padding was refused)``.

    Graph route: padded into the batch-shape program when that is exact (:mod:`.rows`;
    ``batches.padded``), else its own shape converted.  The Flax route's one conversion serves
    every shape.
    """
    if not batches.partial:
        return batches, None, None
    refused = None
    if cache.route == "graph":
        from .rows import padding_is_exact

        refused = padding_is_exact(
            module, model, params, batches.batch_size, batches.partial, row, dtype
        )
        if refused is None:
            return dataclasses.replace(batches, padded=True), None, None
    part = cache.get([((batches.partial, *row), dtype)])
    return batches, part.apply, refused


def _shapes(fn: Callable[..., Any], *args: Any) -> Any:
    import jax

    return jax.eval_shape(fn, *args)
