"""The homework's data: load the breast-cancer set, split it, normalise each party's columns."""

from __future__ import annotations

import dataclasses

import numpy as np

from ...runners.roles import roles

# The homework's two parties are a session's roles (alice and bob by default): the first
# holds features 0-14 and the weights, the second features 15-29 and the labels.
WEIGHTS_OWNER = roles().weights
LABEL_OWNER = roles().data
ALICE_FEATURES = slice(0, 15)
BOB_FEATURES = slice(15, 30)
NORMALISATIONS = ("per-feature", "global")


@dataclasses.dataclass(frozen=True)
class HomeworkData:
    """The vertically split breast-cancer data: what each party holds."""

    x_alice_train: np.ndarray  # (455, 15) float32, alice
    x_bob_train: np.ndarray  # (455, 15) float32, bob
    y_train: np.ndarray  # (455, 1) float32, bob
    x_alice_test: np.ndarray  # (114, 15), alice
    x_bob_test: np.ndarray  # (114, 15), bob
    y_test: np.ndarray  # (114, 1), bob

    def for_party(self, party: str) -> HomeworkData:
        """What ``party``'s process holds when each party runs in its own process: its own
        arrays, and shapes only (``jax.ShapeDtypeStruct``) of the others'."""
        import jax

        owners = {
            "x_alice_train": WEIGHTS_OWNER,
            "x_bob_train": LABEL_OWNER,
            "y_train": LABEL_OWNER,
            "x_alice_test": WEIGHTS_OWNER,
            "x_bob_test": LABEL_OWNER,
            "y_test": LABEL_OWNER,
        }
        mine = {
            k: getattr(self, k)
            if v == party
            else jax.ShapeDtypeStruct(getattr(self, k).shape, np.float32)
            for k, v in owners.items()
        }
        return dataclasses.replace(self, **mine)

    @property
    def x_train(self) -> np.ndarray:
        """Both parties' training features side by side (plaintext references only)."""
        return np.concatenate([self.x_alice_train, self.x_bob_train], axis=1)

    @property
    def x_test(self) -> np.ndarray:
        return np.concatenate([self.x_alice_test, self.x_bob_test], axis=1)


def _minmax(cols: np.ndarray) -> np.ndarray:
    lo, hi = cols.min(axis=0), cols.max(axis=0)
    return (cols - lo) / np.where(hi > lo, hi - lo, 1.0)


def load_data(normalise: str = "per-feature") -> HomeworkData:
    """The split data.  ``normalise``: ``per-feature`` (each owner, own columns) or ``global``."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
    x, y = load_breast_cancer(return_X_y=True)
    if normalise == "global":  # the homework's scaling: one min/max over both parties' data
        x = (x - x.min()) / (x.max() - x.min())
    else:  # each owner normalises its own columns
        x = np.concatenate([_minmax(x[:, ALICE_FEATURES]), _minmax(x[:, BOB_FEATURES])], axis=1)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=42)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return HomeworkData(
        f32(x_tr[:, ALICE_FEATURES]),
        f32(x_tr[:, BOB_FEATURES]),
        f32(y_tr).reshape(-1, 1),
        f32(x_te[:, ALICE_FEATURES]),
        f32(x_te[:, BOB_FEATURES]),
        f32(y_te).reshape(-1, 1),
    )
