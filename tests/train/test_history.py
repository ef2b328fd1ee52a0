"""ppml_torch/train/history.py: what fit reports per epoch."""

from __future__ import annotations

from ppml_torch.runners.comm import CommStats
from ppml_torch.train import EpochRecord, History


def test_describe_says_hidden_for_a_loss_not_revealed():
    history = History(
        [
            EpochRecord(1, None, None, 1.5, None),
            EpochRecord(2, 0.25, 0.0, 1.25, CommStats(1024 * 1024, 10, {})),
        ],
        batches_per_epoch=3,
        partial_batch=0,
        dropped_rows=0,
        reports=[],
    )
    assert history.loss == [None, 0.25]
    assert history.describe().splitlines() == [
        "epoch 1: loss hidden, compile n/a, run 1.50s",
        "epoch 2: loss 0.2500, compile 0.00s, run 1.25s, 1.00 MiB sent in 10 sends",
    ]
