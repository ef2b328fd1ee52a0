"""The SecretFlow homework, from PyTorch users' side: the breast-cancer MLP trained under MPC.

Data: scikit-learn's breast-cancer set (569 x 30), 80/20 split with ``random_state=42``,
split vertically: alice holds features 0-14, bob features 15-29 and the labels.  By default
each owner min-max normalises its own columns (per feature, over all rows, as the homework
normalises before splitting), so nothing about one party's features reaches the other.
``normalise="global"`` reproduces the homework's own scaling, one min and max over the whole
matrix, which needs a statistic of both parties' data (test AUC 0.985 vs 0.961 per feature,
plaintext, 10 epochs).

Model: the Flax MLP [30, 15, 8, 1] with ReLU.  Training: 10 epochs of minibatch SGD (batch
10, step 0.01) on ``mean((y - pred)**2 / 2)``.

**Fix of the original homework's loss.**  The homework computed that loss with ``y`` of shape
``(n,)`` against predictions of shape ``(n, 1)``, which broadcasts to an ``(n, n)`` matrix:
every prediction was pushed towards every label of the batch.  Here ``y`` is ``(n, 1)``.

Under MPC the weights are secret-shared once (owned by alice) and stay shared for the whole
training: each epoch is one call on the session; the data are put once by their owners.
Test predictions are computed under MPC and revealed only to bob, the label holder, who
computes the AUC.  The trained weights are revealed only when :func:`train` is asked for them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .runners import Handle, RunReport, Session, total
from .runspec import RunSpec

Params = Any
ApplyFn = Callable[[Params, jax.Array], jax.Array]

ALICE_FEATURES = slice(0, 15)
BOB_FEATURES = slice(15, 30)


@dataclasses.dataclass(frozen=True)
class HomeworkData:
    """The vertically split breast-cancer data: what each party holds."""

    x_alice_train: np.ndarray  # (455, 15) float32, alice
    x_bob_train: np.ndarray  # (455, 15) float32, bob
    y_train: np.ndarray  # (455, 1) float32, bob
    x_alice_test: np.ndarray  # (114, 15), alice
    x_bob_test: np.ndarray  # (114, 15), bob
    y_test: np.ndarray  # (114, 1), bob

    def for_party(self, party: str) -> HomeworkData:
        """What ``party``'s process holds when each party runs in its own process: its own
        arrays, and shapes only (``jax.ShapeDtypeStruct``) of the others'."""
        owners = {
            "x_alice_train": "alice",
            "x_bob_train": "bob",
            "y_train": "bob",
            "x_alice_test": "alice",
            "x_bob_test": "bob",
            "y_test": "bob",
        }
        return dataclasses.replace(
            self,
            **{
                k: getattr(self, k)
                if v == party
                else jax.ShapeDtypeStruct(getattr(self, k).shape, np.float32)
                for k, v in owners.items()
            },
        )

    @property
    def x_train(self) -> np.ndarray:
        """Both parties' training features side by side (plaintext references only)."""
        return np.concatenate([self.x_alice_train, self.x_bob_train], axis=1)

    @property
    def x_test(self) -> np.ndarray:
        return np.concatenate([self.x_alice_test, self.x_bob_test], axis=1)


def _minmax(cols: np.ndarray) -> np.ndarray:
    lo, hi = cols.min(axis=0), cols.max(axis=0)
    return (cols - lo) / np.where(hi > lo, hi - lo, 1.0)


NORMALISATIONS = ("per-feature", "global")


def load_data(normalise: str = "per-feature") -> HomeworkData:
    """The split data.  ``normalise``: ``per-feature`` (each owner, own columns) or ``global``."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
    x, y = load_breast_cancer(return_X_y=True)
    if normalise == "global":  # the homework's scaling: one min/max over both parties' data
        x = (x - x.min()) / (x.max() - x.min())
    else:  # each owner normalises its own columns
        x = np.concatenate([_minmax(x[:, ALICE_FEATURES]), _minmax(x[:, BOB_FEATURES])], axis=1)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=42)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return HomeworkData(
        f32(x_tr[:, ALICE_FEATURES]),
        f32(x_tr[:, BOB_FEATURES]),
        f32(y_tr).reshape(-1, 1),
        f32(x_te[:, ALICE_FEATURES]),
        f32(x_te[:, BOB_FEATURES]),
        f32(y_te).reshape(-1, 1),
    )


def init_flax_mlp(seed: int = 1) -> tuple[ApplyFn, Params]:
    """The homework's Flax MLP [30, 15, 8, 1] and its initial weights."""
    from .models.mlp import HOMEWORK_FEATURES, MLP

    model = MLP(features=HOMEWORK_FEATURES, activation="relu")
    params = model.init(jax.random.PRNGKey(seed), jnp.ones((1, 30), jnp.float32))
    return model.apply, params


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


@functools.cache
def _predict(apply_fn: ApplyFn) -> Callable[..., jax.Array]:
    def predict(params: Params, x_alice: jax.Array, x_bob: jax.Array) -> jax.Array:
        return apply_fn(params, jnp.concatenate([x_alice, x_bob], axis=1))

    return predict


@dataclasses.dataclass
class FitResult:
    params: Handle  # the trained weights, still inside the session (secret under MPC)
    reports: list[RunReport]  # one per epoch (and the puts)

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
    params_owner: str = "alice",
) -> FitResult:
    """Train under ``session``; the weights never leave it (see :func:`train` to reveal them)."""
    start = len(session.reports)
    params = session.put(init_params, owner=params_owner)
    x_a = session.put(data.x_alice_train, owner="alice")
    x_b = session.put(data.x_bob_train, owner="bob")
    y = session.put(data.y_train, owner="bob")
    epoch = _epoch_fn(apply_fn, data.y_train.shape[0], batch_size, float(lr))
    for _ in range(epochs):
        new = session.call(epoch, params, x_a, x_b, y, name="epoch")
        session.free(params)
        params = new
    for h in (x_a, x_b, y):
        session.free(h)
    return FitResult(params, session.reports[start:])


def train(
    session: Session,
    apply_fn: ApplyFn,
    init_params: Params,
    data: HomeworkData,
    *,
    epochs: int = 10,
    batch_size: int = 10,
    lr: float = 0.01,
    params_owner: str = "alice",
) -> Params:
    """Train under ``session`` and reveal the trained weights to their owner (numpy pytree)."""
    result = fit(
        session,
        apply_fn,
        init_params,
        data,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        params_owner=params_owner,
    )
    value = session.reveal(result.params, to=params_owner)
    session.free(result.params)
    return value


def predict_test(
    session: Session, apply_fn: ApplyFn, params: Handle, data: HomeworkData
) -> np.ndarray | None:
    """Test-set scores computed inside the session, revealed only to bob (the label holder).

    ``None`` in every other party's process when each party runs in its own process."""
    x_a = session.put(data.x_alice_test, owner="alice")
    x_b = session.put(data.x_bob_test, owner="bob")
    out = session.call(_predict(apply_fn), params, x_a, x_b, name="predict")
    scores = session.reveal(out, to="bob")
    for h in (x_a, x_b, out):
        session.free(h)
    return None if scores is None else np.asarray(scores).reshape(-1)


def auc(scores: np.ndarray, data: HomeworkData) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(data.y_test.reshape(-1), np.asarray(scores).reshape(-1)))


def evaluate_auc(apply_fn: ApplyFn, params: Params, data: HomeworkData) -> float:
    """Plaintext test AUC of revealed weights."""
    scores = np.asarray(jax.jit(apply_fn)(params, jnp.asarray(data.x_test)))
    return auc(scores, data)


# -- the homework as a command -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HomeworkRow:
    backend: str
    protocol: str
    field: str
    auc: float | None  # None in a process that is not bob's (one process per party)
    report: RunReport


def run_homework(
    runs: Sequence[RunSpec],
    *,
    epochs: int = 10,
    normalise: str = "per-feature",
    on_row: Callable[[HomeworkRow], None] | None = None,
    cluster: str | None = None,
    party: str | None = None,
) -> list[HomeworkRow]:
    """Train and score on each run.  With ``cluster``/``party`` this process is one party of a
    multi-process ``secretflow`` run: it keeps only its own data (see
    :meth:`HomeworkData.for_party`) and only bob's rows have an AUC."""
    data = load_data(normalise)
    kwargs = {}
    if cluster is not None:
        data = data.for_party(party or "")
        kwargs = {"cluster": cluster, "party": party}
    apply_fn, params = init_flax_mlp()
    rows = []
    for run in runs:
        backend, protocol, field = run.backend, run.protocol, run.field
        with run.open(**kwargs) as s:
            result = fit(s, apply_fn, params, data, epochs=epochs)
            scores = predict_test(s, apply_fn, result.params, data)
        score = None if scores is None else auc(scores, data)
        row = HomeworkRow(backend, protocol or "-", field or "-", score, result.report)
        rows.append(row)
        if on_row:
            on_row(row)
    return rows
