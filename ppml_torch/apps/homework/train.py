"""The homework's training, through ``ppml_torch.fit``: the torch MLP, its data description.

The model is the torch ``nn.Sequential`` [30, 15, 8, 1] with ReLU, starting from the
homework's Flax initial weights (:func:`init_flax_mlp`, seed 1) so that the table keeps
its starting point.  Hyper-parameters are the homework's: minibatch SGD at 0.01 on
``mean((y - p)**2 / 2)``, which is ``nn.MSELoss`` at lr 0.005 (same gradient), batch 10.

**What changed from the hand-written loop** (``bench/flax_loop.py``): ``fit`` batches like torch's
``DataLoader``: 45 batches of 10 rows and the partial batch of 5 rows kept as one more step;
the homework used ``numpy.array_split`` (5 batches of 11 rows, 40 of 10).  The AUC moves a
little (docs/fit.md, "Equal batches and the homework's table").  And ``fit`` reveals the
trained weights once, at the end, to their owner alice (the loop kept them secret until
asked); the test scores are computed under MPC with alice's weights and bob's features, and
revealed to bob only.
"""

from __future__ import annotations

from typing import Any

from .data import ALICE_FEATURES, BOB_FEATURES, LABEL_OWNER, WEIGHTS_OWNER, HomeworkData

LR = 0.005  # nn.MSELoss at 0.005 == the homework's mean((y - p)**2 / 2) at 0.01
BATCH_SIZE = 10
# The homework trains through the flax route by default: it converts in milliseconds where
# the graph route runs torch.export once (about 1 s; bench/bench_fit.py).
# ``route="graph"`` gives the same AUC.
ROUTE = "flax"


def init_flax_mlp(seed: int = 1) -> tuple[Any, Any]:
    """The homework's Flax MLP [30, 15, 8, 1]: its ``apply`` and initial weights (``seed``)."""
    import jax
    import jax.numpy as jnp

    from ...models.mlp import HOMEWORK_FEATURES, MLP

    model = MLP(features=HOMEWORK_FEATURES, activation="relu")
    params = model.init(jax.random.PRNGKey(seed), jnp.ones((1, 30), jnp.float32))
    return model.apply, params


def torch_mlp(seed: int = 1) -> Any:
    """The homework MLP in torch, with the homework's Flax initial weights (``seed``)."""
    import torch.nn as nn

    from ...converters.flax import from_flax

    module = nn.Sequential(
        nn.Linear(30, 15), nn.ReLU(), nn.Linear(15, 8), nn.ReLU(), nn.Linear(8, 1)
    )
    return from_flax(init_flax_mlp(seed)[1], module)


def _columns(features: slice) -> range:
    return range(features.start, features.stop)


def train_data(data: HomeworkData) -> Any:
    """alice: features 0-14 and the weights; bob: features 15-29 and the labels."""
    from ...train import vertical

    return vertical(
        {
            WEIGHTS_OWNER: (_columns(ALICE_FEATURES), data.x_alice_train),
            LABEL_OWNER: (_columns(BOB_FEATURES), data.x_bob_train),
        },
        labels=(LABEL_OWNER, data.y_train),
        weights_owner=WEIGHTS_OWNER,
    )


def eval_data(data: HomeworkData) -> Any:
    from ...train import vertical

    return vertical(
        {
            WEIGHTS_OWNER: (_columns(ALICE_FEATURES), data.x_alice_test),
            LABEL_OWNER: (_columns(BOB_FEATURES), data.x_bob_test),
        },
        weights_owner=WEIGHTS_OWNER,
    )


def train(
    session: Any,
    data: HomeworkData,
    *,
    module: Any = None,
    epochs: int = 10,
    route: str = ROUTE,
    reveal_loss: bool = False,
    progress: bool = False,
) -> tuple[Any, Any]:
    """``ppml_torch.fit`` with the homework's settings; returns ``(module, history)``."""
    import torch
    import torch.nn as nn

    from ...train import fit

    module = torch_mlp() if module is None else module
    optimizer = torch.optim.SGD(module.parameters(), lr=LR)
    return fit(
        module, nn.MSELoss(), optimizer, train_data(data),
        route=route, session=session, epochs=epochs, batch_size=BATCH_SIZE,
        progress=progress, reveal_loss=LABEL_OWNER if reveal_loss else False,
    )  # fmt: skip


def predict_test(session: Any, module: Any, data: HomeworkData, *, route: str = ROUTE):
    """Test-set scores under ``session`` (alice's weights, both parties' features), to bob."""
    import numpy as np

    from ...train import predict

    out = predict(module, eval_data(data), route=route, session=session, reveal_to=LABEL_OWNER)
    return None if out is None else np.asarray(out).reshape(-1)  # None outside bob's process


def torch_eager(module: Any, data: HomeworkData, *, epochs: int = 10) -> tuple[Any, list[float]]:
    """The same training in torch eager (same batches, partial batch kept); running losses."""
    import torch
    import torch.nn as nn

    optimizer = torch.optim.SGD(module.parameters(), lr=LR)
    loss_fn = nn.MSELoss()
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for a in range(0, len(x), BATCH_SIZE):
            xb, yb = x[a : a + BATCH_SIZE], y[a : a + BATCH_SIZE]
            optimizer.zero_grad()
            loss = loss_fn(module(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(xb)
        losses.append(total / len(x))
    return module, losses
