"""The homework's data: the vertical split and each owner's normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from ppml_torch.apps.homework.data import load_data


def test_data_split():
    data = load_data()
    assert data.x_alice_train.shape == (455, 15) and data.x_bob_train.shape == (455, 15)
    assert data.y_train.shape == (455, 1) and data.x_test.shape == (114, 30)
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0


def test_per_feature_scales_each_column_and_global_the_whole_matrix():
    per_col = np.concatenate([load_data().x_train, load_data().x_test])
    assert np.allclose(per_col.min(axis=0), 0.0) and np.allclose(per_col.max(axis=0), 1.0)
    whole = np.concatenate([load_data("global").x_train, load_data("global").x_test])
    assert np.isclose(whole.min(), 0.0) and np.isclose(whole.max(), 1.0)
    assert whole.max(axis=0).min() < 0.1  # most columns squeezed by the largest feature


def test_unknown_normalisation_is_refused():
    with pytest.raises(ValueError, match="normalise must be one of"):
        load_data("minmax")
