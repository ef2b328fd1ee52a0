"""The programs ``fit`` runs in the session: ``init``, ``epoch`` (built on ``train_step``) and
``weights``, pure JAX functions of a :class:`TrainPlan`.

* ``init(params) -> state``: the weights (put by the weights' owner) split by torch name into
  the trained and the fixed leaves, plus the optimizer's initial state
  (:class:`~ppml_torch.train.state.TrainState`);
* ``train_step(state, xb, yb) -> (state, loss)``: one torch step (forward, loss, backward,
  ``optimizer.step()``) on one batch; with ``rows`` the loss reads only the batch's last
  ``rows`` outputs (a partial batch padded with the rows before it, see
  :mod:`ppml_torch.train.rows`);
* ``epoch(state, *blocks) -> state`` (or ``(state, mean loss)`` when the loss is revealed):
  ONE program per epoch.  The model input is assembled inside it
  (:class:`~ppml_torch.train.layout.InputLayout`), optionally permuted by a public order (the
  last block), cut into ``n_full`` equal batches that ``lax.scan`` runs with ``train_step``
  (compile time does not grow with the number of batches), then the kept partial batch as
  one more ``train_step`` in the same program;
* ``weights(state)``: what is revealed at the end: the trained leaves and the buffers the
  forward updates (batch norm's running statistics), nothing else (the fixed ones never
  change).

Everything a program closes over is public and named in :class:`TrainPlan`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .layout import Batches, InputLayout
from .names import Leaves
from .state import TrainState, start_secret


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
      returns_loss: ``epoch`` returns ``(state, mean loss)`` (the loss is revealed).
      buffers: the torch names of the buffers the forward updates (batch norm's running
        statistics in training mode): ``apply`` returns ``(outputs, their new values)``, and
        they are carried in ``TrainState.buffers`` from step to step.
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
    buffers: tuple[str, ...] = ()

    def init(self, params: Any) -> TrainState:
        trainable, fixed = self.leaves.split(params)
        buffers = {n: fixed.pop(n) for n in self.buffers}
        opt_state = start_secret(self.tx.init(trainable), self.secret_opt, trainable)
        return TrainState(trainable, fixed, opt_state, buffers)

    def train_step(
        self,
        state: TrainState,
        xb: Any,
        yb: Any,
        *,
        rows: int = 0,
        apply: Callable[..., Any] | None = None,
    ) -> tuple[TrainState, Any]:
        """One step on the batch ``(xb, yb)``: ``(next state, the batch's loss before it)``.

        ``rows > 0``: the loss reads only the last ``rows`` outputs and labels (a partial
        batch padded to the batch shape with the rows before it).  ``apply``: the model
        program to run (default: :attr:`apply`, the batch shape).
        """
        import jax
        import optax

        apply = self.apply if apply is None else apply

        def objective(trainable: dict[str, Any]) -> Any:
            out = apply(self.leaves.merge(trainable, state.fixed, state.buffers), xb)
            out, buffers = out if self.buffers else (out, state.buffers)  # (outputs, updates)
            if rows:
                return self.loss(out[-rows:], yb[-rows:]), buffers
            return self.loss(out, yb), buffers

        (value, buffers), grads = jax.value_and_grad(objective, has_aux=True)(state.trainable)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.trainable)
        trainable = optax.apply_updates(state.trainable, updates)
        new = dataclasses.replace(state, trainable=trainable, opt_state=opt_state, buffers=buffers)
        return new, value

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
            return self.train_step(carry, *batch)

        state, losses = jax.lax.scan(body, state, (xs, ys))
        total = jnp.sum(losses) * bs
        if b.partial:
            a = nf * bs
            if b.padded:  # the last bs rows: the partial batch last, the rows before it pad
                end = a + b.partial
                state, value = self.train_step(
                    state, x[end - bs : end], y[end - bs : end], rows=b.partial
                )
            else:
                state, value = self.train_step(
                    state, x[a : a + b.partial], y[a : a + b.partial], apply=self.apply_partial
                )
            total = total + value * b.partial
        if not self.returns_loss:  # the loss is computed anyway (value_and_grad) but not returned
            return state
        return state, total / (nf * bs + b.partial)

    def weights(self, state: TrainState) -> dict[str, Any]:
        """Only the trained leaves and the updated buffers are revealed: the fixed ones never
        change."""
        return {**state.trainable, **state.buffers}


def first(pair: tuple[Any, Any]) -> Any:
    """The state of an epoch's ``(state, loss)``: a cheap call, so the loss alone is revealed."""
    return pair[0]


def second(pair: tuple[Any, Any]) -> Any:
    """The loss of an epoch's ``(state, loss)``."""
    return pair[1]
