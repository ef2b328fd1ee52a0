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


# -- one process per party: each process loads its own blocks, the others' shapes are announced


class _TwoProcesses:
    """Two production-session views in one test: ``views[p]`` is the data description party
    ``p``'s process gives; ``announce`` runs ``fn`` on each party's own view, like the
    production session (metadata only crosses)."""

    parties = ("alice", "bob")

    def __init__(self, views, me):
        self.views, self.me = views, me
        self.local_parties = (me,)

    def announce(self, fn):
        from ppml_torch.train.owners import local_blocks

        out = {}
        for p in self.parties:
            if p == self.me:
                out[p] = fn(p)
            else:  # what p's own process announces, from its own view
                view = self.views[p]
                out[p] = local_blocks((*view.features, *view.labels), (p,))[1][p]
        return out


def _views(x_bob_in_alice, y_in_alice, calls):
    import jax

    xa, xb, y = np.ones((4, 2), np.float32), np.full((4, 3), 2.0, np.float32), Y

    def loader(name, value):
        def f():
            calls.append(name)
            return value

        return f

    alice = vertical(
        {"alice": (range(0, 2), loader("alice x", xa)), "bob": (range(2, 5), x_bob_in_alice)},
        labels=("bob", y_in_alice),
        weights_owner="alice",
    )
    bob = vertical(
        {
            "alice": (range(0, 2), jax.ShapeDtypeStruct((4, 2), np.float32)),
            "bob": (range(2, 5), loader("bob x", xb)),
        },
        labels=("bob", loader("bob y", y)),
        weights_owner="alice",
    )
    return {"alice": alice, "bob": bob}


def test_one_process_per_party_loads_own_blocks_and_takes_announced_shapes():
    import jax

    calls = []
    views = _views(lambda: 1 / 0, lambda: 1 / 0, calls)  # bob's loaders are never called at alice
    got = load(
        views["alice"], ("alice", "bob"), need_labels=True, session=_TwoProcesses(views, "alice")
    )
    assert calls.count("alice x") == 1 and "bob x" not in calls[:1]
    assert isinstance(got.features[0], np.ndarray)
    assert isinstance(got.features[1], jax.ShapeDtypeStruct) and got.features[1].shape == (4, 3)
    assert isinstance(got.labels[0], jax.ShapeDtypeStruct) and got.labels[0].shape == (4, 1)
    assert (got.n_rows, got.n_features) == (4, 5)


def test_one_process_per_party_wrong_placeholder_and_failing_loader_are_one_line():
    import jax

    calls = []
    views = _views(jax.ShapeDtypeStruct((4, 2), np.float32), Y, calls)  # alice says bob has 2 cols
    views["alice"] = vertical(
        {"alice": (range(0, 2), np.ones((4, 2), np.float32)),
         "bob": (range(2, 5), jax.ShapeDtypeStruct((5, 3), np.float32))},
        labels=("bob", lambda: None), weights_owner="alice",
    )  # fmt: skip
    with pytest.raises(
        DataError, match=r"describes bob's block as float32\[5, 3\] but bob holds float32\[4, 3\]"
    ):
        load(
            views["alice"],
            ("alice", "bob"),
            need_labels=True,
            session=_TwoProcesses(views, "alice"),
        )

    def broken():
        raise FileNotFoundError("bob.csv")

    views["bob"] = vertical(
        {"alice": (range(0, 2), jax.ShapeDtypeStruct((4, 2), np.float32)), "bob": (range(2, 5), broken)},
        labels=("bob", Y), weights_owner="alice",
    )  # fmt: skip
    for me in ("alice", "bob"):  # the same line in both processes
        with pytest.raises(DataError, match="bob's loader failed: FileNotFoundError: bob.csv"):
            load(views[me], ("alice", "bob"), need_labels=True, session=_TwoProcesses(views, me))


def test_owner_giving_a_placeholder_is_refused():
    import jax

    data = vertical(
        {"alice": (range(0, 2), jax.ShapeDtypeStruct((4, 2), np.float32))}, weights_owner="alice"
    )
    with pytest.raises(DataError, match="alice's block is a shape-only placeholder in alice's own"):
        load(data, ("alice", "bob"), need_labels=False)
