"""The data description: who owns what, checked when it is built and when it is loaded."""

from __future__ import annotations

import numpy as np
import pytest

from ppml_torch.train import DataError, horizontal, vertical
from ppml_torch.train.data import load

X = np.zeros((4, 6), np.float32)
Y = np.zeros((4, 1), np.float32)


@pytest.mark.parametrize(
    "features,match",
    [
        ({"alice": ([], X[:, :0]), "bob": (range(0, 6), X)}, "alice' has no feature columns"),
        ({"alice": (range(0, 4), X[:, :4]), "bob": (range(3, 6), X[:, 3:])}, "column 3 is given by both"),
        ({"alice": (range(0, 2), X[:, :2]), "bob": (range(4, 6), X[:, 4:])}, "columns 2-3 are owned by no party"),
        ({"alice": (range(-1, 2), X[:, :3])}, "negative"),
        ({"alice": X}, r"must be \(columns, block\)"),
        ({}, "needs features"),
    ],
)  # fmt: skip
def test_vertical_refuses(features, match):
    with pytest.raises(DataError, match=match):
        vertical(features, labels=("bob", Y), weights_owner="alice")


def test_horizontal_refuses_rows_without_labels_and_empty_parties():
    with pytest.raises(DataError, match="bob give rows without labels"):
        horizontal({"alice": (X, Y), "bob": (X, None)}, weights_owner="alice")
    data = horizontal({"alice": (X, Y), "bob": (X[:0], Y[:0])}, weights_owner="alice")
    with pytest.raises(DataError, match="bob gives no rows"):
        load(data, ("alice", "bob"), need_labels=True)
    data = horizontal({"alice": (X, Y), "bob": (X[:, :5], Y)}, weights_owner="alice")
    with pytest.raises(DataError, match="different shapes"):
        load(data, ("alice", "bob"), need_labels=True)


def test_loaders_run_only_at_load_and_column_order_is_kept():
    calls = []

    def loader():
        calls.append("bob")
        return X[:, [1, 3, 5]]

    data = vertical(
        {"alice": ([0, 2, 4], X[:, [0, 2, 4]]), "bob": ([1, 3, 5], loader)},
        labels=("bob", Y),
        weights_owner="alice",
        weights_to="bob",
    )
    assert calls == []  # building the description loads nothing
    loaded = load(data, ("alice", "bob"), need_labels=True)
    assert calls == ["bob"]
    assert (loaded.n_rows, loaded.n_features) == (4, 6)
    assert loaded.column_order == (0, 2, 4, 1, 3, 5)
    assert data.parties == ("alice", "bob") and data.weights_to == "bob"


def test_weights_owner_must_be_a_session_party():
    data = vertical({"alice": (range(6), X)}, labels=("alice", Y), weights_owner="carol")
    with pytest.raises(DataError, match="'carol' is not a party of the session"):
        load(data, ("alice", "bob"), need_labels=True)
