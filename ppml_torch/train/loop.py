"""``fit`` and ``predict``: train and run a torch module inside a session (plaintext or MPC).

How a ``fit`` runs (every check first, then the session work):

1. the data description, the loss and the optimizer are checked and mapped (one-line errors);
   the owners' loaders are called; the model is converted through the conversion cache
   (:mod:`ppml_torch.cache`) for the batch shape, once.  The graph route runs a kept partial
   batch in that program, padded with the rows before it, when that is exact (the model is
   row-wise, checked in plaintext: :mod:`ppml_torch.train.rows`), else converts its shape too;
   the Flax route has no fixed shapes;
2. ``weights_owner`` puts the initial weights, each party puts its blocks: once, for the whole
   training.  Everything stays inside the session (secret-shared under MPC);
3. each epoch is ONE call of ONE compiled program: the model input is assembled inside it
   (vertical: the parties' feature blocks concatenated in column order; horizontal: their rows
   one after the other), optionally permuted by a public shuffle order, cut into
   ``n // batch_size`` equal batches that ``lax.scan`` runs (compile time does not grow with the
   number of batches), then the last partial batch of ``n % batch_size`` rows as one more
   step in the same program, like torch's ``DataLoader(drop_last=False)``; ``drop_last=True``
   drops it instead.  The weights and the optimizer state stay in the session between epochs;
   the state starts with the visibility an epoch gives it, so SPU compiles the program once;
4. at the end the trained weights (only those: frozen parameters and buffers never change)
   are revealed ONCE, to ``weights_to``, and loaded into the module with
   ``load_state_dict(strict=True)``; everything else keeps the module's own values.

**Disclosure.** With ``reveal_loss`` the mean training loss of each epoch is revealed (to the
label owner by default).  Under MPC that is a value computed from every party's data: opt in
only if that party may learn it.  ``session.record`` lists every put and reveal.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ppml_torch.cache import conversions
from ppml_torch.errors import PpmlError
from ppml_torch.model import ROUTES
from ppml_torch.runners.base import Handle, RunReport, Session
from ppml_torch.runners.comm import CommStats
from ppml_torch.runners.placeholders import is_placeholder, shapes_of
from ppml_torch.runners.plan import SessionPlan, session_plan

from .data import ArrayLike, Data, Loaded, load


class FitError(PpmlError, ValueError):
    """A bad argument of ``fit``/``predict`` (found before any MPC work)."""


@dataclasses.dataclass(frozen=True)
class EpochRecord:
    """One epoch: its revealed mean loss (``None`` if not revealed) and what it cost.

    The loss is torch's usual running loss: each batch's loss before its step, averaged over
    the epoch's rows (a partial batch weighs its rows).

    ``compile_s`` is the compilation inside this epoch's call (epoch 1 only; 0.0 when reused,
    ``None`` where the backend does not separate it).  ``comm`` is ``None`` in plaintext.
    """

    epoch: int
    loss: float | None
    compile_s: float | None
    run_s: float
    comm: CommStats | None


@dataclasses.dataclass
class History:
    """What ``fit`` did: one :class:`EpochRecord` per epoch, plus the batches' layout."""

    epochs: list[EpochRecord]
    batches_per_epoch: int  # full batches (lax.scan)
    partial_batch: int  # rows of the kept last batch (0: none, or dropped)
    dropped_rows: int  # rows left out each epoch (drop_last=True)
    reports: list[RunReport]  # every session report of this fit (puts, calls, reveals)
    wall_s: float = 0.0
    weights_to: str | None = None  # the party that received the trained weights
    # the kept partial batch ran in the batch-shape program (graph route: no second conversion)
    partial_padded: bool = False
    # why it did not, when the graph route converted the partial batch's shape instead
    padding_refused: str | None = None
    conversions: int = 0  # conversions of the module this fit made (0 when all were cached)
    setup_s: float = 0.0  # before any session work: checks, conversion, padding check, mapping

    @property
    def loss(self) -> list[float | None]:
        return [e.loss for e in self.epochs]

    def describe(self) -> str:
        lines = []
        for e in self.epochs:
            loss = "hidden" if e.loss is None else f"{e.loss:.4f}"
            c = "n/a" if e.compile_s is None else f"{e.compile_s:.2f}s"
            comm = "" if e.comm is None else f", {e.comm.describe()}"
            lines.append(f"epoch {e.epoch}: loss {loss}, compile {c}, run {e.run_s:.2f}s{comm}")
        return "\n".join(lines)


# -- checks -------------------------------------------------------------------------------------


def _check_route(route: str) -> None:
    if route not in ROUTES:
        raise FitError(f"route must be 'graph' or 'flax', got {route!r}")


def _session_plan(session: Session | str) -> SessionPlan:
    return session_plan(
        session,
        error=FitError,
        torch_error="session 'torch' is torch eager: train with torch itself, or use cpu, spu "
        "or secretflow",
    )


def _map_loss(losses: Any, loss_fn: Any) -> Any:
    """torch's losses map directly; a user's own function goes through the graph converter,
    which needs an example (output, target): traced on one batch of the module's output."""
    if losses.needs_example(loss_fn):
        return _LazyLoss(losses, loss_fn)
    return losses.from_torch(loss_fn)


class _LazyLoss:
    """A user's loss function, converted on the first shapes it is traced with."""

    def __init__(self, losses: Any, loss_fn: Any):
        self._losses, self._fn, self._mapped = losses, loss_fn, {}

    def __call__(self, output: Any, target: Any) -> Any:
        import torch

        key = (tuple(output.shape), str(output.dtype), tuple(target.shape), str(target.dtype))
        if key not in self._mapped:
            ex = (
                torch.zeros(key[0], dtype=getattr(torch, key[1])),
                torch.zeros(key[2], dtype=getattr(torch, key[3])),
            )
            self._mapped[key] = self._losses.from_torch(self._fn, example=ex)
        return self._mapped[key](output, target)


def _check_module_params(optimizer: Any, module: Any) -> None:
    owned = {id(p) for p in module.parameters()}
    for i, g in enumerate(getattr(optimizer, "param_groups", [])):
        for j, p in enumerate(g["params"]):
            if id(p) not in owned:
                raise FitError(
                    f"optimizer param group {i}, parameter {j} (shape {tuple(p.shape)}) is not a "
                    f"parameter of this {type(module).__name__}; build the optimizer on "
                    "module.parameters()"
                )


def _leaf_names(model: Any) -> list[str]:
    """The torch name of each leaf of ``model.params`` (in tree_leaves order).

    Found by filling leaf ``i`` with the value ``i + 1`` and reading which torch names
    ``params_to_torch`` puts it under (transposes and reshapes keep the value).
    """
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(model.params)
    marked = [np.full(np.shape(x), i + 1, np.float32) for i, x in enumerate(leaves)]
    torch_arrays = model.params_to_torch(jax.tree_util.tree_unflatten(treedef, marked))
    names: list[str | None] = [None] * len(leaves)
    for name, arr in torch_arrays.items():
        a = np.asarray(arr)
        if a.size and np.issubdtype(a.dtype, np.floating):
            i = int(a.flat[0]) - 1
            if 0 <= i < len(leaves) and names[i] is None:
                names[i] = name
    return [n if n is not None else f"<leaf {i}>" for i, n in enumerate(names)]


# -- the programs -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Everything the compiled programs close over (all public)."""

    split: str
    n_rows: int
    batch_size: int
    n_full: int
    partial: int  # rows of the kept partial batch (0: none)
    column_order: tuple[int, ...] | None
    n_feature_blocks: int
    n_label_blocks: int
    shuffle: bool
    padded: bool = False  # the partial batch runs in the batch-shape program (see rows.py)


def _assemble(plan: _Plan, blocks: tuple[Any, ...]) -> tuple[Any, Any]:
    import jax.numpy as jnp

    feats = blocks[: plan.n_feature_blocks]
    labs = blocks[plan.n_feature_blocks : plan.n_feature_blocks + plan.n_label_blocks]
    if plan.split == "vertical":
        x = jnp.concatenate(feats, axis=1) if len(feats) > 1 else feats[0]
        if plan.column_order is not None:  # public column order: a local permutation
            x = x[:, np.argsort(plan.column_order)]
    else:
        x = jnp.concatenate(feats, axis=0) if len(feats) > 1 else feats[0]
    y = None
    if labs:
        y = jnp.concatenate(labs, axis=0) if len(labs) > 1 else labs[0]
    return x, y


def _make_programs(
    plan: _Plan, apply_full, apply_part, loss, tx, names, treedef, trainable, with_loss, secret_opt
):
    """``init(params) -> state``, ``epoch(state, *blocks) -> state[, loss]`` and
    ``weights(state) -> trained leaves`` (``{torch name: array}``, the trained names only).

    ``secret_opt``: per leaf of the optimizer state, whether an epoch makes it secret (see
    :func:`_secret_opt_leaves`); ``init`` makes those secret from the start.
    """
    import jax
    import jax.numpy as jnp
    import optax

    trainable_set = set(trainable)

    def split(params):
        leaves = jax.tree_util.tree_leaves(params)
        named = dict(zip(names, leaves, strict=True))
        return (
            {n: named[n] for n in names if n in trainable_set},
            {n: named[n] for n in names if n not in trainable_set},
        )

    def merge(train, fixed):
        return jax.tree_util.tree_unflatten(
            treedef, [train[n] if n in train else fixed[n] for n in names]
        )

    def init(params):
        train, fixed = split(params)
        opt = tx.init(train)
        if any(secret_opt):
            # SPU compiles per input visibility: an optimizer state that starts public (zeros,
            # constants) and comes out of epoch 1 secret would compile epoch 2 again.  ``t - t``
            # is an exact secret zero (a local subtraction of shares, no communication).
            t = jax.tree_util.tree_leaves(train)[0].reshape(-1)[0]
            zero = t - t
            leaves, opt_def = jax.tree_util.tree_flatten(opt)
            leaves = [
                leaf + zero.astype(leaf.dtype) if s else leaf
                for leaf, s in zip(leaves, secret_opt, strict=True)
            ]
            opt = jax.tree_util.tree_unflatten(opt_def, leaves)
        return {"train": train, "fixed": fixed, "opt": opt}

    def step(apply_fn, train, fixed, opt, xb, yb, rows=0):
        # rows > 0: the loss reads only the last ``rows`` outputs (a padded partial batch)
        def objective(tr):
            out = apply_fn(merge(tr, fixed), xb)
            if rows:
                return loss(out[-rows:], yb[-rows:])
            return loss(out, yb)

        value, grads = jax.value_and_grad(objective)(train)
        updates, opt = tx.update(grads, opt, train)
        return optax.apply_updates(train, updates), opt, value

    def epoch(state, *blocks):
        train, fixed, opt = state["train"], state["fixed"], state["opt"]
        x, y = _assemble(plan, blocks[: plan.n_feature_blocks + plan.n_label_blocks])
        if plan.shuffle:  # a public order: gathering rows by it needs no communication
            perm = blocks[-1]
            x, y = jnp.take(x, perm, axis=0), jnp.take(y, perm, axis=0)
        bs, nf = plan.batch_size, plan.n_full
        xs = x[: nf * bs].reshape(nf, bs, *x.shape[1:])
        ys = y[: nf * bs].reshape(nf, bs, *y.shape[1:])

        def body(carry, batch):
            tr, op = carry
            tr, op, value = step(apply_full, tr, fixed, op, *batch)
            return (tr, op), value

        (train, opt), losses = jax.lax.scan(body, (train, opt), (xs, ys))
        total = jnp.sum(losses) * bs
        if plan.partial:
            a = nf * bs
            if plan.padded:  # the last bs rows: the partial batch last, the rows before it pad
                end = a + plan.partial
                train, opt, value = step(
                    apply_full, train, fixed, opt, x[end - bs : end], y[end - bs : end],
                    rows=plan.partial,
                )  # fmt: skip
            else:
                train, opt, value = step(
                    apply_part, train, fixed, opt, x[a : a + plan.partial], y[a : a + plan.partial]
                )
            total = total + value * plan.partial
        new_state = {"train": train, "fixed": fixed, "opt": opt}
        if not with_loss:  # the loss is computed anyway (value_and_grad) but not returned
            return new_state
        return new_state, total / (nf * bs + plan.partial)

    def weights(state):  # only the trained leaves are revealed: the frozen ones never change
        return state["train"]

    return init, epoch, weights


def _secret_opt_leaves(tx: Any, train_struct: Any) -> list[bool]:
    """Per leaf of ``tx``'s state, whether training makes it secret under MPC.

    A value computed from a secret is secret; SPU decides this per operation, as JAX's
    partial evaluation decides which outputs depend on "unknown" inputs.  So: the gradients and
    the trained weights are unknown (secret), and an optimizer-state leaf is secret once an
    update makes it depend on them (the moments do; step counts and ``beta ** t`` do not),
    repeated until nothing changes (a leaf may become secret through another one).
    """
    import jax
    from jax._src.interpreters import partial_eval as pe

    opt_struct = jax.eval_shape(tx.init, train_struct)
    n_opt = len(jax.tree_util.tree_leaves(opt_struct))
    if not n_opt:
        return []
    n_train = len(jax.tree_util.tree_leaves(train_struct))

    def update(grads, opt, params):
        return tx.update(grads, opt, params)[1]

    closed = jax.make_jaxpr(update)(train_struct, opt_struct, train_struct)
    secret = [False] * n_opt
    for _ in range(n_opt + 1):
        unknowns = [True] * n_train + secret + [True] * n_train
        _, _, out_unknown, _ = pe.partial_eval_jaxpr_nounits(closed, unknowns, instantiate=False)
        new = [a or bool(b) for a, b in zip(secret, out_unknown, strict=True)]
        if new == secret:
            break
        secret = new
    return secret


class _Scope:
    """The handles one ``fit``/``predict`` made, so that a failure frees them too."""

    def __init__(self, session: Session):
        self.session = session
        self.live: list[Handle] = []

    def put(self, value: Any, owner: str) -> Handle:
        h = self.session.put(value, owner=owner)
        self.live.append(h)
        return h

    def call(self, fn: Callable[..., Any], *args: Handle, name: str) -> Handle:
        h = self.session.call(fn, *args, name=name)
        self.live.append(h)
        return h

    def free(self, *handles: Handle) -> None:
        for h in handles:
            self.live.remove(h)
            self.session.free(h)

    def free_all(self) -> None:
        for h in self.live:
            try:
                self.session.free(h)
            except Exception:  # noqa: BLE001, S110 - best effort after the real error
                pass
        self.live.clear()


def _first(pair):
    return pair[0]


def _second(pair):
    return pair[1]


# -- fit ----------------------------------------------------------------------------------------


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
    import jax

    from . import losses, optim

    t_start = time.perf_counter()
    _check_route(route)
    if not isinstance(epochs, int) or epochs < 1:
        raise FitError(f"epochs must be a positive int, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise FitError(f"batch_size must be a positive int, got {batch_size!r}")
    sp = _session_plan(session)
    parties = sp.parties
    _check_module_params(optimizer, module)
    fixed_point = sp.fixed_point
    sp.gate(calibration)
    topt = optim.from_torch(optimizer, module, None, fixed_point=fixed_point)
    tx = topt.tx  # over {torch name: array} of the trained names (frozen ones stay in `fixed`)
    trainable = [name for g in topt.groups for name in g["names"]]
    loss = _map_loss(losses, loss_fn)
    loaded = load(data, parties, need_labels=True, session=sp.session)
    n = loaded.n_rows
    if batch_size > n:
        raise FitError(
            f"batch_size {batch_size} is larger than the data ({n} rows); use at most {n}"
        )
    receiver = _loss_receiver(reveal_loss, data, parties)
    n_full, rest = divmod(n, batch_size)
    partial = 0 if drop_last else rest
    dtype = loaded.features[0].dtype
    row = loaded.example_row_shape
    cache = conversions(module, route)
    converted = cache.conversions
    model_full = cache.get([((batch_size, *row), dtype)])
    init_params = cache.params(model_full)
    names = _leaf_names(model_full)
    missing = [t for t in trainable if t not in names]
    if missing:
        raise FitError(
            f"parameters {missing[:4]} are trained by the optimizer but the {route} route's "
            "weights do not include them"
        )
    treedef = jax.tree_util.tree_structure(init_params)
    _check_loss_shapes(model_full, loss, init_params, loaded, batch_size, row, dtype)
    padded, refused, model_part = False, None, None
    if partial and route == "graph":  # one conversion when padding is exact (rows.py)
        from .rows import padding_is_exact

        refused = padding_is_exact(module, model_full, init_params, batch_size, partial, row, dtype)
        padded = refused is None
    if partial and not padded:
        model_part = cache.get([((partial, *row), dtype)])
    plan = _Plan(
        data.split,
        n,
        batch_size,
        n_full,
        partial,
        loaded.column_order,
        len(loaded.features),
        len(loaded.labels),
        bool(shuffle),
        padded,
    )
    named = dict(zip(names, jax.tree_util.tree_leaves(init_params), strict=True))
    train_struct = {
        n: jax.ShapeDtypeStruct(np.shape(named[n]), named[n].dtype) for n in names if n in trainable
    }
    init, epoch, weights = _make_programs(
        plan,
        model_full.apply,
        model_part.apply if model_part else None,
        loss,
        tx,
        names,
        treedef,
        trainable,
        receiver is not False,
        _secret_opt_leaves(tx, train_struct),
    )
    rng = np.random.default_rng(seed)

    setup_s = time.perf_counter() - t_start
    with sp.borrow() as owned:
        sc = _Scope(owned)
        bar = _progress(epochs, progress)
        try:
            first = len(owned.reports)
            local = owned.local_parties
            # the module's weights are read in weights_owner's process only (one process per party:
            # elsewhere the module gives its architecture, and the put takes the shapes)
            w = sc.put(
                init_params if data.weights_owner in local else shapes_of(init_params),
                data.weights_owner,
            )
            blocks = [
                sc.put(a, b.owner) for b, a in zip(data.features, loaded.features, strict=True)
            ]
            blocks += [sc.put(a, b.owner) for b, a in zip(data.labels, loaded.labels, strict=True)]
            state = sc.call(init, w, name="init")
            sc.free(w)
            records = []
            for e in range(1, epochs + 1):
                extra: list[Handle] = []
                if shuffle:
                    extra.append(sc.put(rng.permutation(n).astype(np.int32), "public"))
                out = sc.call(epoch, state, *blocks, *extra, name="epoch")
                report = owned.last_report
                sc.free(state, *extra)
                value = None
                if receiver is False:
                    state = out
                else:  # split (state, loss): two cheap calls, then the loss is revealed
                    state = sc.call(_first, out, name="state")
                    lh = sc.call(_second, out, name="loss")
                    got = owned.reveal(lh, to=receiver)  # None in another party's process
                    value = None if got is None else float(got)
                    sc.free(lh, out)
                records.append(EpochRecord(e, value, report.compile_s, report.run_s, report.comm))
                if bar is not None:
                    bar.update(1)
                    if value is not None:
                        bar.set_postfix(loss=f"{value:.4f}")
            wh = sc.call(weights, state, name="weights")
            trained = owned.reveal(wh, to=data.weights_to)
            sc.free(wh, state, *blocks)
            reports = owned.reports[first:]
        finally:
            if bar is not None:
                bar.close()
            sc.free_all()  # only after a failure: a shared session keeps no stray shares
    history = History(
        records, n_full, partial, rest - partial, reports,
        partial_padded=padded, padding_refused=refused,
        conversions=cache.conversions - converted, setup_s=setup_s,
    )  # fmt: skip
    history.weights_to = data.weights_to
    history.wall_s = time.perf_counter() - t_start
    if trained is None:  # one process per party: the weights went to weights_to's process
        return None, history
    _load_trained(module, model_full, init_params, names, trained)
    return module, history


def _load_trained(module: Any, model: Any, init_params: Any, names: list[str], trained) -> None:
    """Load the revealed trained leaves into ``module``; everything else stays the module's own.

    Only the trained leaves were revealed.  The torch names they feed (a tied weight feeds
    several) are found as in :func:`_leaf_names`; every other entry of the state dict (frozen
    parameters, buffers) is loaded back from the module itself, bit for bit.
    """
    import jax

    leaves = jax.tree_util.tree_leaves(init_params)
    full = [np.asarray(trained[n]) if n in trained else leaves[i] for i, n in enumerate(names)]
    new = model.state_dict(
        jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(init_params), full)
    )
    fed = _torch_names_of(model, {i for i, n in enumerate(names) if n in trained})
    state = module.state_dict()
    for k in fed:
        state[k] = new[k]
    module.load_state_dict(state, strict=True)


def _torch_names_of(model: Any, leaf_ids: set[int]) -> set[str]:
    """The torch names whose values come from the leaves ``leaf_ids`` of ``model.params``."""
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(model.params)
    marked = [np.full(np.shape(x), i + 1, np.float32) for i, x in enumerate(leaves)]
    out = set()
    for name, arr in model.params_to_torch(jax.tree_util.tree_unflatten(treedef, marked)).items():
        a = np.asarray(arr)
        if a.size and np.issubdtype(a.dtype, np.floating):
            if any(int(v) - 1 in leaf_ids for v in np.unique(a)):
                out.add(name)
    return out


def _loss_receiver(reveal_loss: bool | str, data: Data, parties: tuple[str, ...]):
    """``False`` (not revealed), ``None`` (every party) or a party name."""
    if reveal_loss is False or reveal_loss is None:
        return False
    if isinstance(reveal_loss, str):
        if reveal_loss not in parties:
            raise FitError(
                f"reveal_loss={reveal_loss!r} is not a party of the session ({', '.join(parties)})"
            )
        return reveal_loss
    if reveal_loss is True:
        owners = set(data.label_owners)
        return owners.pop() if len(owners) == 1 else None
    raise FitError(f"reveal_loss must be True, False or a party name, got {reveal_loss!r}")


def _check_loss_shapes(model, loss, params, loaded: Loaded, batch_size, row, dtype) -> None:
    """Trace the model and the loss on shapes only: a mismatch is one line, before any MPC."""
    import jax

    y = loaded.labels[0]
    xb = jax.ShapeDtypeStruct((batch_size, *row), dtype)
    yb = jax.ShapeDtypeStruct((batch_size, *y.shape[1:]), y.dtype)
    out = jax.eval_shape(model.apply, params, xb)
    if getattr(out, "shape", None) is None:
        raise FitError("the module's output is not one tensor; fit trains single-output modules")
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


def _progress(epochs: int, progress: bool):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=epochs, desc="fit", unit="epoch")


# -- predict ------------------------------------------------------------------------------------


@functools.cache
def _predict_program(plan: _Plan, apply_fn: Callable[..., Any]):
    def run(params, *blocks):
        x, _ = _assemble(plan, blocks)
        return apply_fn(params, x)

    return run


def _predict_model(module: Any, cache: Any, n: int, row: tuple[int, ...], dtype: Any):
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
def _chunked_apply(apply_fn: Callable[..., Any], batch: int, n: int, chunked: Any):
    return chunked(apply_fn, batch, n)  # cached: the session's compiled programs key on it


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
    _check_route(route)
    sp = _session_plan(session)
    parties = sp.parties
    sp.gate(calibration)
    if not isinstance(inputs, Data):
        from .data import vertical

        o = owner or parties[0]
        if is_placeholder(inputs):  # another party's inputs, shapes only (one process per party)
            arr = inputs
        elif hasattr(inputs, "detach"):
            arr = inputs.detach().cpu().numpy()
        else:
            arr = np.asarray(inputs)
        if arr.ndim < 2:
            raise FitError(f"predict: inputs must have rows first, got shape {arr.shape}")
        if arr.ndim == 2:
            inputs = vertical({o: (range(arr.shape[1]), arr)}, weights_owner=weights_owner or o)
        else:
            from .data import horizontal

            inputs = horizontal({o: (arr, None)}, weights_owner=weights_owner or o)
    if reveal_to is not None and reveal_to not in parties:
        raise FitError(f"reveal_to={reveal_to!r} is not a party ({', '.join(parties)})")
    inputs = dataclasses.replace(inputs, labels=())  # labels are not needed: never loaded
    loaded = load(inputs, parties, need_labels=False, session=sp.session)
    w_owner = weights_owner or inputs.weights_owner
    cache = conversions(module, route)
    model, apply_fn = _predict_model(
        module, cache, loaded.n_rows, loaded.example_row_shape, loaded.features[0].dtype
    )
    params = cache.params(model)
    plan = _Plan(
        inputs.split, loaded.n_rows, loaded.n_rows, 1, 0, loaded.column_order,
        len(loaded.features), 0, False,
    )  # fmt: skip
    program = _predict_program(plan, apply_fn)
    with sp.borrow() as owned:
        sc = _Scope(owned)
        try:
            w = sc.put(params if w_owner in owned.local_parties else shapes_of(params), w_owner)
            blocks = [
                sc.put(a, b.owner) for b, a in zip(inputs.features, loaded.features, strict=True)
            ]
            out = sc.call(program, w, *blocks, name="predict")
            value = owned.reveal(out, to=reveal_to)
            sc.free(w, out, *blocks)
        finally:
            sc.free_all()
    return None if value is None else np.asarray(value)
