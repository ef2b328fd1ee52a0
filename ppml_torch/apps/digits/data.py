"""The digits data: load sklearn's digits, scale, split 80/20, then split the training rows."""

from __future__ import annotations

import dataclasses

import numpy as np

from ...runners.roles import roles

# The two parties are a session's roles (alice and bob by default): the first owns the
# weights, the first half of the training rows and the test set; the second the other half.
WEIGHTS_OWNER = roles().weights
OTHER_PARTY = roles().data
IMAGE_SHAPE = (1, 8, 8)  # (C, H, W) of one image
N_CLASSES = 10
TEST_SIZE = 0.2
SPLIT_SEED = 0


@dataclasses.dataclass(frozen=True)
class DigitsData:
    """The training rows split between the parties, and alice's test set."""

    x_alice: np.ndarray  # (718, 1, 8, 8) float32, alice
    y_alice: np.ndarray  # (718,) int32, alice
    x_bob: np.ndarray  # (719, 1, 8, 8) float32, bob
    y_bob: np.ndarray  # (719,) int32, bob
    x_test: np.ndarray  # (360, 1, 8, 8) float32, alice
    y_test: np.ndarray  # (360,) int32, alice

    @property
    def x_train(self) -> np.ndarray:
        """Both parties' training images in row order (plaintext references only)."""
        return np.concatenate([self.x_alice, self.x_bob])

    @property
    def y_train(self) -> np.ndarray:
        return np.concatenate([self.y_alice, self.y_bob])

    def for_party(self, party: str) -> DigitsData:
        """What ``party``'s process holds when each party runs in its own process: its own
        arrays, and shapes only (``jax.ShapeDtypeStruct``) of the others'."""
        import jax

        owners = {
            "x_alice": WEIGHTS_OWNER,
            "y_alice": WEIGHTS_OWNER,
            "x_bob": OTHER_PARTY,
            "y_bob": OTHER_PARTY,
            "x_test": WEIGHTS_OWNER,
            "y_test": WEIGHTS_OWNER,
        }
        mine = {}
        for k, owner in owners.items():
            a = getattr(self, k)
            mine[k] = a if owner == party else jax.ShapeDtypeStruct(a.shape, a.dtype)
        return dataclasses.replace(self, **mine)


def load_data(train_rows: int | None = None) -> DigitsData:
    """The split data; ``train_rows``: keep only the first rows of the training split (tests)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)  # (1797, 64) in 0..16, (1797,)
    x = (x / 16.0).astype(np.float32).reshape(-1, *IMAGE_SHAPE)  # (N, 1, 8, 8)
    y = y.astype(np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_SIZE, random_state=SPLIT_SEED)
    if train_rows is not None:
        x_tr, y_tr = x_tr[:train_rows], y_tr[:train_rows]
    half = len(x_tr) // 2
    return DigitsData(x_tr[:half], y_tr[:half], x_tr[half:], y_tr[half:], x_te, y_te)
