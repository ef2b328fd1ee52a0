"""The hand-written Flax loop ``homework-mlp`` ran before it moved onto ``ppml_torch.fit``.

Kept as the benchmark's reference: ``bench/bench_fit.py`` times ``fit`` against it (and
``bench/bench_parties.py`` runs it across processes), and the Flax transfer test trains a
transferred MLP with it.  The homework's initial weights are the app's
(:func:`ppml_torch.apps.homework.train.init_flax_mlp`).  The Flax MLP is trained by minibatch
SGD in a session, one Python-unrolled program per epoch over the homework's
``numpy.array_split`` batches.
:func:`fit` trains and leaves the weights inside the session (secret under MPC);
:func:`reveal_params` reveals them to their owner only, when asked; :func:`predict_test`
scores the test set inside the session, revealed to the label holder (bob).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ppml_torch.apps.homework.data import LABEL_OWNER, WEIGHTS_OWNER, HomeworkData
from ppml_torch.runners import Handle, RunReport, Session, total

Params = Any
ApplyFn = Callable[[Params, jax.Array], jax.Array]


def mse_loss(apply_fn: ApplyFn, params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    """``mean((y - pred)**2 / 2)`` with ``y`` of shape (n, 1), like the predictions."""
    pred = apply_fn(params, x)
    if pred.shape != y.shape:
        raise ValueError(f"loss: predictions {pred.shape} and labels {y.shape} differ in shape")
    return jnp.mean((y - pred) ** 2 / 2)


def batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """The homework's minibatches: ``n // batch_size`` nearly equal slices (numpy.array_split)."""
    sections = max(1, n // batch_size)
    bounds = np.cumsum([0] + [len(c) for c in np.array_split(np.arange(n), sections)])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@functools.cache
def _epoch_fn(apply_fn: ApplyFn, n: int, batch_size: int, lr: float) -> Callable[..., Params]:
    """One epoch of SGD as one pure function (cached so the runner compiles it once)."""
    grad = jax.grad(functools.partial(mse_loss, apply_fn))
    spans = batches(n, batch_size)

    def epoch(params: Params, x_alice: jax.Array, x_bob: jax.Array, y: jax.Array) -> Params:
        x = jnp.concatenate([x_alice, x_bob], axis=1)
        for a, b in spans:
            g = grad(params, x[a:b], y[a:b])
            params = jax.tree_util.tree_map(lambda p, d: p - lr * d, params, g)
        return params

    return epoch


@dataclasses.dataclass
class FitResult:
    params: Handle  # the trained weights, still inside the session (secret under MPC)
    reports: list[RunReport]  # one per epoch (and the puts)
    owner: str  # the party the weights belong to (the only one they may be revealed to)

    @property
    def report(self) -> RunReport:
        return total(self.reports, "train")


def fit(
    session: Session,
    apply_fn: ApplyFn,
    init_params: Params,
    data: HomeworkData,
    *,
    epochs: int = 10,
    batch_size: int = 10,
    lr: float = 0.01,
    params_owner: str = WEIGHTS_OWNER,
) -> FitResult:
    """Train under ``session``; the weights never leave it (see :func:`reveal_params`)."""
    start = len(session.reports)
    params = session.put(init_params, owner=params_owner)
    x_a = session.put(data.x_alice_train, owner=WEIGHTS_OWNER)
    x_b = session.put(data.x_bob_train, owner=LABEL_OWNER)
    y = session.put(data.y_train, owner=LABEL_OWNER)
    epoch = _epoch_fn(apply_fn, data.y_train.shape[0], batch_size, float(lr))
    for _ in range(epochs):
        new = session.call(epoch, params, x_a, x_b, y, name="epoch")
        session.free(params)
        params = new
    for h in (x_a, x_b, y):
        session.free(h)
    return FitResult(params, session.reports[start:], params_owner)


@functools.cache
def _predict(apply_fn: ApplyFn) -> Callable[..., jax.Array]:
    def predict(params: Params, x_alice: jax.Array, x_bob: jax.Array) -> jax.Array:
        return apply_fn(params, jnp.concatenate([x_alice, x_bob], axis=1))

    return predict


def predict_test(
    session: Session, apply_fn: ApplyFn, params: Handle, data: HomeworkData
) -> np.ndarray | None:
    """Test-set scores computed inside the session, revealed only to the label holder (bob).

    ``None`` in every other party's process when each party runs in its own process."""
    x_a = session.put(data.x_alice_test, owner=WEIGHTS_OWNER)
    x_b = session.put(data.x_bob_test, owner=LABEL_OWNER)
    out = session.call(_predict(apply_fn), params, x_a, x_b, name="predict")
    scores = session.reveal(out, to=LABEL_OWNER)
    for h in (x_a, x_b, out):
        session.free(h)
    return None if scores is None else np.asarray(scores).reshape(-1)


def reveal_params(session: Session, result: FitResult) -> Params:
    """Reveal the trained weights of ``result`` to their owner (numpy pytree) and free them."""
    value = session.reveal(result.params, to=result.owner)
    session.free(result.params)
    return value
