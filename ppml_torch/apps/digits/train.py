"""The digits CNN and its training through ``ppml_torch.fit`` (and the same loop in torch eager).

The model is issue 20's ``Conv2d(1,8,3,p=1)-ReLU-MaxPool2d(2)-Conv2d(8,16,3,p=1)-ReLU-
MaxPool2d(2)-Flatten-Linear(64,10)``, built after ``torch.manual_seed(SEED)`` so every run
starts from the same weights.  Cross entropy, SGD at ``LR``, batches of ``BATCH_SIZE`` in data
order (alice's rows, then bob's) with the partial last batch kept, as torch's
``DataLoader(batch_size=32)`` does; the eager reference (:func:`torch_eager`) takes exactly
those steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import OTHER_PARTY, WEIGHTS_OWNER, DigitsData

SEED = 0
LR = 0.3
BATCH_SIZE = 32
EPOCHS = 3
ROUTE = "graph"  # the CNN converts through the graph (the Flax CNN family trains no batch norm)


def digits_cnn(seed: int = SEED) -> Any:
    """The CNN with ``torch.manual_seed(seed)``'s initial weights."""
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),  # (B, 8, 8, 8)
        nn.ReLU(),
        nn.MaxPool2d(2),  # (B, 8, 4, 4)
        nn.Conv2d(8, 16, 3, padding=1),  # (B, 16, 4, 4)
        nn.ReLU(),
        nn.MaxPool2d(2),  # (B, 16, 2, 2)
        nn.Flatten(),  # (B, 64)
        nn.Linear(64, 10),  # (B, 10) logits
    )


def train_data(data: DigitsData) -> Any:
    """Rows split between the parties, each with its labels; alice owns the weights."""
    from ...train import horizontal

    return horizontal(
        {WEIGHTS_OWNER: (data.x_alice, data.y_alice), OTHER_PARTY: (data.x_bob, data.y_bob)},
        weights_owner=WEIGHTS_OWNER,
    )


def train(
    session: Any,
    data: DigitsData,
    *,
    module: Any = None,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    progress: bool = False,
) -> tuple[Any, Any]:
    """``ppml_torch.fit`` with the digits settings; returns ``(module, history)`` (the module
    is ``None`` outside alice's process when each party runs in its own)."""
    import torch
    import torch.nn as nn

    from ...train import fit

    module = digits_cnn() if module is None else module
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    return fit(
        module, nn.CrossEntropyLoss(), optimizer, train_data(data),
        route=ROUTE, session=session, epochs=epochs, batch_size=batch_size, progress=progress,
    )  # fmt: skip


def torch_eager(
    data: DigitsData,
    *,
    module: Any = None,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
) -> Any:
    """The same training in torch eager: same initial weights, batches and steps.

    It runs on one torch thread: these tensors are tiny, and on a busy machine torch's
    thread pool waits for cores (measured: an epoch in 0.29 s on one thread, 23 s on two at
    load 11 on 2 cores).
    """
    import torch
    import torch.nn as nn

    module = digits_cnn() if module is None else module
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train).long()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            for a in range(0, len(x), batch_size):
                optimizer.zero_grad()
                loss_fn(module(x[a : a + batch_size]), y[a : a + batch_size]).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return module


def accuracy(module: Any, data: DigitsData) -> float:
    """Test accuracy of a torch module on alice's test set (plaintext, in alice's process)."""
    import torch

    with torch.no_grad():
        pred = module(torch.as_tensor(data.x_test)).argmax(dim=1).numpy()
    return float(np.mean(pred == data.y_test))
