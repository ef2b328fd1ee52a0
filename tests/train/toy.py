"""The small model, data and torch eager loop the tests of ``ppml_torch/train/`` share."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ppml_torch.model import ROUTES
from ppml_torch.train import vertical
from tests.sessions import get_session

__all__ = [
    "ROUTES",
    "RUNS",
    "diabetes",
    "diabetes_mlp",
    "diabetes_split",
    "session_of",
    "split",
    "tiny_data",
    "tiny_mlp",
    "torch_eager",
]

RUNS = [("cpu", None), ("spu", "SEMI2K")]  # (backend, protocol) every fit test runs on


def tiny_mlp(seed: int = 0, n_in: int = 6, n_out: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, 4), nn.ReLU(), nn.Linear(4, n_out))


def tiny_data(n: int = 20, n_in: int = 6, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, n_in)).astype(np.float32)
    y = (x[:, :1] - 0.5 * x[:, 3:4] > 0).astype(np.float32)
    return x, y


def torch_eager(module, loss_fn, x, y, *, lr, epochs, batch_size, orders=None, drop_last=False):
    """The torch loop fit mirrors: SGD over consecutive batches of the (permuted) rows."""
    opt = torch.optim.SGD(module.parameters(), lr=lr)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    losses = []
    for e in range(epochs):
        if orders is not None:
            idx = torch.as_tensor(orders[e])
            xe, ye = xt[idx], yt[idx]
        else:
            xe, ye = xt, yt
        total, seen = 0.0, 0
        for a in range(0, len(xe), batch_size):
            xb, yb = xe[a : a + batch_size], ye[a : a + batch_size]
            if drop_last and len(xb) < batch_size:
                break
            opt.zero_grad()
            loss = loss_fn(module(xb), yb)
            loss.backward()
            opt.step()
            total, seen = total + loss.item() * len(xb), seen + len(xb)
        losses.append(total / seen)
    return module, losses


def split(x, y, *, labels=True):
    return vertical(
        {"alice": (range(0, 3), x[:, :3]), "bob": (range(3, 6), x[:, 3:])},
        labels=("bob", y) if labels else None,
        weights_owner="alice",
    )


def session_of(backend, protocol):
    return get_session(backend, protocol, "FM64" if protocol else None)


def diabetes(targets: str = "raw", feature_scale: float = 1.0):
    """sklearn's diabetes set (bundled, no download), split 80/20 (``random_state=0``), as in
    issue 19: ``targets="raw"`` (up to 346) or ``"standard"`` (the training targets' mean and
    standard deviation); returns ``(x_train, y_train, x_test, y_test, (mean, std))``."""
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    x, y = load_diabetes(return_X_y=True)
    x = (x * feature_scale).astype(np.float32)
    y = y.astype(np.float32).reshape(-1, 1)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0)
    mean, std = (float(y_tr.mean()), float(y_tr.std())) if targets == "standard" else (0.0, 1.0)
    return x_tr, (y_tr - mean) / std, x_te, (y_te - mean) / std, (mean, std)


def diabetes_split(x, y):
    """Horizontal: alice the first half of the rows, bob the rest; alice owns the weights."""
    from ppml_torch.train import horizontal

    h = len(x) // 2
    return horizontal({"alice": (x[:h], y[:h]), "bob": (x[h:], y[h:])}, weights_owner="alice")


def diabetes_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))
