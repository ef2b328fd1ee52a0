"""The homework's evaluation: test scores under MPC (revealed to bob only), and the AUC."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ...runners import Handle, Session
from .data import HomeworkData
from .train import ApplyFn, Params


@functools.cache
def _predict(apply_fn: ApplyFn) -> Callable[..., jax.Array]:
    def predict(params: Params, x_alice: jax.Array, x_bob: jax.Array) -> jax.Array:
        return apply_fn(params, jnp.concatenate([x_alice, x_bob], axis=1))

    return predict


def predict_test(
    session: Session, apply_fn: ApplyFn, params: Handle, data: HomeworkData
) -> np.ndarray:
    """Test-set scores computed inside the session, revealed only to bob (the label holder)."""
    x_a = session.put(data.x_alice_test, owner="alice")
    x_b = session.put(data.x_bob_test, owner="bob")
    out = session.call(_predict(apply_fn), params, x_a, x_b, name="predict")
    scores = session.reveal(out, to="bob")
    for h in (x_a, x_b, out):
        session.free(h)
    return np.asarray(scores).reshape(-1)


def auc(scores: np.ndarray, data: HomeworkData) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(data.y_test.reshape(-1), np.asarray(scores).reshape(-1)))


def evaluate_auc(apply_fn: ApplyFn, params: Params, data: HomeworkData) -> float:
    """Plaintext test AUC of revealed weights."""
    scores = np.asarray(jax.jit(apply_fn)(params, jnp.asarray(data.x_test)))
    return auc(scores, data)
