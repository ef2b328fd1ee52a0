"""The programs ``fit`` runs in the session: ``init``, ``epoch`` (built on ``train_step``) and
``weights``, pure JAX functions of a :class:`TrainPlan`.

* ``init(params[, carried]) -> state``: the weights (put by the weights' owner) split by torch
  name into the trained and the fixed leaves, plus the optimizer's initial state
  (:class:`~ppml_torch.train.state.TrainState`); ``carried``: the secret leaves of a torch
  optimizer's own state (moments, buffers), put by the weights' owner too;
* ``train_step(state, xb, yb) -> (state, loss)``: one torch step (forward, loss, backward,
  ``optimizer.step()``) on one batch; with ``rows`` the loss reads only the batch's last
  ``rows`` outputs (a partial batch padded with the rows before it, see
  :mod:`ppml_torch.train.rows`);
* ``epoch(state, *blocks) -> state`` (or ``(state, outputs)``: the mean loss, every
  ``log_every``-th step's loss, the overflow sentinel's bit, :meth:`TrainPlan.epoch`): ONE
  program per epoch.  The model input is assembled inside it
  (:class:`~ppml_torch.train.layout.InputLayout`), optionally permuted by a public order (the
  last block), cut into ``n_full`` equal batches that ``lax.scan`` runs with ``train_step``
  (compile time does not grow with the number of batches), then the kept partial batch as
  one more ``train_step`` in the same program;
* ``weights(state)``: what is revealed at the end: the trained leaves only (the fixed ones
  never change); ``result(state)`` adds the optimizer state's secret leaves (carried back
  into the torch optimizer).

Everything a program closes over is public and named in :class:`TrainPlan`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .layout import Batches, InputLayout
from .names import Leaves
from .state import TrainState, secret_leaves, start_secret, with_secret_leaves


@dataclasses.dataclass(frozen=True, eq=False)
class TrainPlan:
    """What the programs of one ``fit`` close over (all public).

    Attributes:
      inputs: how the blocks make ``(x, y)``.
      batches: how an epoch cuts the rows into batches.
      apply: the model at the batch shape, ``apply(params, x)``.
      apply_partial: the model at the kept partial batch's shape (graph route, when padding
        is not exact); ``None`` when there is none, it runs padded, or the route has no fixed
        shapes (then ``apply`` serves).
      loss: ``loss(output, target) -> scalar``.
      tx: the torch optimizer as an optax transformation over ``{torch name: array}`` of the
        trained leaves.
      leaves: the torch name of each leaf, and which are trained.
      secret_opt: per leaf of ``tx``'s state, whether an epoch makes it secret
        (:func:`~ppml_torch.train.state.secret_optimizer_leaves`); ``init`` makes those
        secret from the start.
      returns_loss: ``epoch`` outputs the mean loss (it is read: plaintext, or revealed).
      carried: ``init`` takes the secret leaves of a carried optimizer state.
      sentinel: the overflow checks the epoch runs (:mod:`ppml_torch.train.sentinel`), or
        ``None``.
      log_every: ``epoch`` also outputs the loss of every ``log_every``-th step (0: none).
    """

    inputs: InputLayout
    batches: Batches
    apply: Callable[..., Any]
    apply_partial: Callable[..., Any] | None
    loss: Callable[[Any, Any], Any]
    tx: Any
    leaves: Leaves
    secret_opt: tuple[bool, ...] = ()
    returns_loss: bool = False
    carried: bool = False
    sentinel: Any = None
    log_every: int = 0

    def init(self, params: Any, *carried: Any) -> TrainState:
        trainable, fixed = self.leaves.split(params)
        if carried:  # the torch optimizer's moments and buffers (secret), the rest public
            opt_state = with_secret_leaves(self.tx.init(trainable), self.secret_opt, carried[0])
        else:
            opt_state = start_secret(self.tx.init(trainable), self.secret_opt, trainable)
        return TrainState(trainable, fixed, opt_state)

    def train_step(
        self,
        state: TrainState,
        xb: Any,
        yb: Any,
        *,
        rows: int = 0,
        apply: Callable[..., Any] | None = None,
        with_grads: bool = False,
    ) -> Any:
        """One step on the batch ``(xb, yb)``: ``(next state, the batch's loss before it)``.

        ``rows > 0``: the loss reads only the last ``rows`` outputs and labels (a partial
        batch padded to the batch shape with the rows before it).  ``apply``: the model
        program to run (default: :attr:`apply`, the batch shape).  ``with_grads``: the
        gradients as a third output (the overflow sentinel checks them).
        """
        import jax
        import optax

        apply = self.apply if apply is None else apply

        def objective(trainable: dict[str, Any]) -> Any:
            out = apply(self.leaves.merge(trainable, state.fixed, state.buffers), xb)
            with jax.named_scope("loss"):  # calibration files the loss's values under "loss"
                if rows:
                    return self.loss(out[-rows:], yb[-rows:])
                return self.loss(out, yb)

        value, grads = jax.value_and_grad(objective)(state.trainable)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.trainable)
        trainable = optax.apply_updates(state.trainable, updates)
        new = dataclasses.replace(state, trainable=trainable, opt_state=opt_state)
        return (new, value, grads) if with_grads else (new, value)

    def _step(self, state: TrainState, xb: Any, yb: Any, **kw: Any) -> tuple[TrainState, Any]:
        """``train_step`` with the sentinel's gradient check: ``(state, (loss, check))``."""
        if self.sentinel is None:
            state, value = self.train_step(state, xb, yb, **kw)
            return state, (value, None)
        state, value, grads = self.train_step(state, xb, yb, with_grads=True, **kw)
        return state, (value, self.sentinel.gradient(grads))

    def epoch(self, state: TrainState, *blocks: Any) -> Any:
        import jax
        import jax.numpy as jnp

        b = self.batches
        inputs = self.inputs
        x, y = inputs.assemble(blocks[: inputs.n_feature_blocks + inputs.n_label_blocks])
        if b.shuffle:  # a public order: gathering rows by it needs no communication
            perm = blocks[-1]
            x, y = jnp.take(x, perm, axis=0), jnp.take(y, perm, axis=0)
        bs, nf = b.batch_size, b.n_full
        xs = x[: nf * bs].reshape(nf, bs, *x.shape[1:])
        ys = y[: nf * bs].reshape(nf, bs, *y.shape[1:])

        def body(carry: TrainState, batch: tuple[Any, Any]) -> tuple[TrainState, Any]:
            return self._step(carry, *batch)

        state, (losses, checks) = jax.lax.scan(body, state, (xs, ys))
        total = jnp.sum(losses) * bs
        if b.partial:
            a = nf * bs
            if b.padded:  # the last bs rows: the partial batch last, the rows before it pad
                end = a + b.partial
                state, (value, check) = self._step(
                    state, x[end - bs : end], y[end - bs : end], rows=b.partial
                )
            else:
                state, (value, check) = self._step(
                    state, x[a : a + b.partial], y[a : a + b.partial], apply=self.apply_partial
                )
            total = total + value * b.partial
            losses = jnp.concatenate([losses, value[None]])
            if check is not None:
                checks = jnp.concatenate([checks, check[None]])
        out: dict[str, Any] = {}  # the loss is computed anyway (value_and_grad), output if read
        if self.returns_loss:
            out["loss"] = total / (nf * bs + b.partial)
        if self.log_every:
            out["steps"] = losses[self.log_every - 1 :: self.log_every]
        if self.sentinel is not None:  # the loss of the last full batch at the final weights
            a = (nf - 1) * bs
            params = self.leaves.merge(state.trainable, state.fixed, state.buffers)
            probe = self.loss(self.apply(params, x[a : a + bs]), y[a : a + bs])
            out["overflow"] = self.sentinel.flag(losses, checks, state.trainable, probe)
        return (state, out) if out else state

    def weights(self, state: TrainState) -> dict[str, Any]:
        """Only the trained leaves are revealed: the fixed ones never change."""
        return state.trainable

    def result(self, state: TrainState) -> tuple[dict[str, Any], list[Any]]:
        """What is revealed at the end: the trained leaves and the optimizer state's secret
        leaves (its moments and buffers; the public ones, step counts, every party knows)."""
        return state.trainable, secret_leaves(state.opt_state, self.secret_opt)


def first(pair: tuple[Any, Any]) -> Any:
    """The state of an epoch's ``(state, outputs)``: a cheap call, so that each output is
    revealed on its own, to its own receiver."""
    return pair[0]


def second(pair: tuple[Any, Any]) -> Any:
    """The outputs of an epoch's ``(state, outputs)``."""
    return pair[1]


def output(key: str) -> Callable[[tuple[Any, Any]], Any]:
    """The program that picks one output (``"loss"``, ``"steps"``, ``"overflow"``) of an
    epoch's ``(state, outputs)``."""

    def pick(pair: tuple[Any, Any]) -> Any:
        return pair[1][key]

    pick.__name__ = f"epoch_{key}"
    return pick
