"""ppml_torch/train/history.py: what fit reports per epoch, as a table."""

from __future__ import annotations

from ppml_torch.runners.comm import CommStats
from ppml_torch.train import EpochRecord, History
from ppml_torch.train.history import StepRecord


def _history(**kw):
    return History(
        [
            EpochRecord(1, None, None, 1.5, None),
            EpochRecord(2, 0.25, 0.0, 1.25, CommStats(1024 * 1024, 10, {})),
        ],
        batches_per_epoch=3,
        partial_batch=0,
        dropped_rows=0,
        reports=[],
        **kw,
    )


def test_print_shows_the_table_and_says_hidden_for_a_loss_not_revealed():
    history = _history()
    assert history.loss == [None, 0.25]
    assert str(history).splitlines() == [
        "epoch  loss    compile  run    communication",
        "1      hidden  n/a      1.50s  -",
        "2      0.2500  0.00s    1.25s  1.00 MiB sent in 10 sends",
    ]
    assert str(history) == history.describe()


def test_the_table_shows_set_up_stages_and_logged_steps():
    history = _history(
        stages={"checks": 0.1, "convert": 1.25},
        steps=[StepRecord(1, 2, 0.5), StepRecord(2, 5, 0.125)],
        wall_s=4.0,
    )
    lines = str(history).splitlines()
    assert lines[3] == "set-up: checks 0.10s, convert 1.25s; wall 4.00s"
    assert lines[5:] == ["epoch  step  loss", "1      2     0.5000", "2      5     0.1250"]
