"""ppml_torch/train/scope.py: the handles of one fit/predict are freed, also after a failure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import ppml_torch
from ppml_torch.runners import open_session
from ppml_torch.train.scope import Scope
from tests.train.toy import split, tiny_data, tiny_mlp


def test_free_all_frees_what_is_still_live():
    """Catches a scope that forgets a handle (a call's result, or one freed twice)."""
    with open_session("cpu") as s:
        scope = Scope(s)
        a = scope.put(np.ones(3, np.float32), s.parties[0])
        b = scope.call(lambda v: v * 2, a, name="double")
        scope.free(a)
        assert scope.live == [b] and set(s._values) == {b.key}
        scope.free_all()
        assert scope.live == [] and s._values == {}


def test_a_failure_frees_every_share(monkeypatch):
    """A fit that fails at its last reveal leaves nothing in the (borrowed) session and the
    module untouched."""
    x, y = tiny_data()
    module = tiny_mlp()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with open_session("cpu") as s:

        def broken_reveal(handle, to=None):
            raise RuntimeError("link lost")

        monkeypatch.setattr(s, "reveal", broken_reveal)
        with pytest.raises(RuntimeError, match="link lost"):
            ppml_torch.fit(
                module, nn.MSELoss(), torch.optim.SGD(module.parameters(), lr=0.1), split(x, y),
                route="flax", session=s, epochs=1, batch_size=8, progress=False,
            )  # fmt: skip
        assert s._values == {}  # nothing left inside the session
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
