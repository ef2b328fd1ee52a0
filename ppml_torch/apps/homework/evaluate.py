"""The homework's evaluation: test AUC from scores (computed by bob, the label holder)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import HomeworkData


def auc(scores: np.ndarray, data: HomeworkData) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(data.y_test.reshape(-1), np.asarray(scores).reshape(-1)))


def evaluate_auc(apply_fn: Any, params: Any, data: HomeworkData) -> float:
    """Plaintext test AUC of revealed Flax weights (the reference loop's)."""
    import jax
    import jax.numpy as jnp

    scores = np.asarray(jax.jit(apply_fn)(params, jnp.asarray(data.x_test)))
    return auc(scores, data)


def torch_auc(module: Any, data: HomeworkData) -> float:
    """Plaintext test AUC of a torch module (torch eager)."""
    import torch

    with torch.no_grad():
        scores = module(torch.as_tensor(data.x_test)).numpy()
    return auc(scores, data)
