"""The small model, data and torch eager loop the tests of ``ppml_torch/train/`` share."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ppml_torch.model import ROUTES
from ppml_torch.train import vertical
from tests.sessions import get_session

__all__ = ["ROUTES", "RUNS", "session_of", "split", "tiny_data", "tiny_mlp", "torch_eager"]

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
