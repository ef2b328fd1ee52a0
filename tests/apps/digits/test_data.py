"""ppml_torch/apps/digits/data.py: the split the issue names, and what each process holds."""

from __future__ import annotations

import jax
import numpy as np

from ppml_torch.apps.digits.data import load_data


def test_split_and_scaling():
    d = load_data()
    assert d.x_alice.shape == (718, 1, 8, 8) and d.x_bob.shape == (719, 1, 8, 8)
    assert d.x_test.shape == (360, 1, 8, 8) and d.y_test.shape == (360,)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32
    assert 0.0 <= d.x_train.min() and d.x_train.max() == 1.0  # pixels 0..16, divided by 16
    assert set(np.unique(d.y_train)) == set(range(10))
    # 80/20 with random_state=0: the first test label of sklearn's split (catches another seed)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    _, _, _, y_te = train_test_split(x, y, test_size=0.2, random_state=0)
    np.testing.assert_array_equal(d.y_test, y_te)


def test_train_rows_keeps_the_first_rows():
    d, full = load_data(100), load_data()
    assert len(d.x_alice) == 50 and len(d.x_bob) == 50
    np.testing.assert_array_equal(d.x_train, full.x_train[:100])


def test_each_party_holds_only_its_own_arrays():
    d = load_data(20)
    a, b = d.for_party("alice"), d.for_party("bob")
    assert isinstance(a.x_alice, np.ndarray) and isinstance(a.x_test, np.ndarray)
    assert isinstance(a.x_bob, jax.ShapeDtypeStruct) and isinstance(a.y_bob, jax.ShapeDtypeStruct)
    assert isinstance(b.x_bob, np.ndarray) and isinstance(b.y_bob, np.ndarray)
    for k in ("x_alice", "y_alice", "x_test", "y_test"):
        assert isinstance(getattr(b, k), jax.ShapeDtypeStruct), k
    assert b.x_alice.shape == d.x_alice.shape and b.y_alice.dtype == d.y_alice.dtype
