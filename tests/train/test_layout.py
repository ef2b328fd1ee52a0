"""ppml_torch/train/layout.py: the parties' blocks as the model input, and an epoch's batches."""

from __future__ import annotations

import numpy as np

from ppml_torch.train.layout import Batches, InputLayout


def test_batches_keep_or_drop_the_partial_batch():
    assert Batches.of(21, 5, drop_last=False, shuffle=False) == Batches(21, 5, 4, 1, 0, False)
    assert Batches.of(21, 5, drop_last=True, shuffle=True) == Batches(21, 5, 4, 0, 1, True)
    assert Batches.of(20, 5, drop_last=True, shuffle=False).dropped == 0


def test_vertical_blocks_are_put_back_in_column_order():
    """alice holds columns 0, 2, 4 and bob 1, 3, 5: the model sees columns 0-5 in order."""
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    y = np.ones((2, 1), np.float32)
    layout = InputLayout("vertical", (0, 2, 4, 1, 3, 5), 2, 1)
    got_x, got_y = layout.assemble((x[:, [0, 2, 4]], x[:, [1, 3, 5]], y))
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)


def test_horizontal_blocks_are_rows_one_after_the_other():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.arange(4, dtype=np.float32).reshape(4, 1)
    layout = InputLayout("horizontal", None, 2, 2)
    got_x, got_y = layout.assemble((x[:1], x[1:], y[:1], y[1:]))
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)
    assert InputLayout("horizontal", None, 1, 0).assemble((x,))[1] is None  # predict: no labels
