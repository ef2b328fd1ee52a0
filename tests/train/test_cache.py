"""ppml_torch/train/cache.py: one conversion per module, route, training mode and input shape,
shared by ``fit`` and ``predict``; the weights always the module's current ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import ppml_torch
from ppml_torch.errors import PpmlError
from ppml_torch.testing import assert_close
from ppml_torch.train.cache import conversions
from tests.train.toy import split, tiny_data, tiny_mlp


def test_conversions_are_cached_by_shape():
    """One conversion per module and training mode: the partial batch and predict on other
    row counts reuse the batch shape (the MLP is row-wise)."""
    x, y = tiny_data(n=20)
    module = tiny_mlp()
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    kw = dict(session="cpu", epochs=1, batch_size=8, progress=False)
    _, history = ppml_torch.fit(module, nn.MSELoss(), opt, split(x, y), **kw)
    cache = conversions(module, "graph")
    assert cache.conversions == 1  # the batch of 8; the kept partial batch of 4 is padded
    assert (history.conversions, history.partial_padded, history.partial_batch) == (1, True, 4)
    _, history = ppml_torch.fit(module, nn.MSELoss(), opt, split(x, y), **kw)
    assert history.conversions == 0
    ppml_torch.predict(module, x[:8], session="cpu")  # the batch shape: reused
    for n in (5, 20, 3):  # other row counts: chunks of the batch shape, no conversion
        out = ppml_torch.predict(module, x[:n], session="cpu")
        with torch.no_grad():  # predict uses the module's current (trained) weights
            assert_close(out, module(torch.as_tensor(x[:n])).numpy(), what=f"predict {n} rows")
    assert cache.conversions == 1
    ppml_torch.fit(module, nn.MSELoss(), opt, split(x, y), route="flax", **kw)
    ppml_torch.predict(module, x[:7], route="flax", session="cpu")
    assert conversions(module, "flax").conversions == 1  # the Flax route has no fixed shapes


def test_params_follow_the_module_and_modes_are_separate():
    """``params`` reads the module as it is now (no stale copy after its weights change), and a
    module in eval mode gets its own conversion (dropout/batch norm differ between modes)."""
    module = tiny_mlp()
    cache = conversions(module, "graph")
    model = cache.get([((4, 6), np.float32)])
    with torch.no_grad():
        module[0].bias.add_(1.0)
    np.testing.assert_array_equal(cache.params(model)["0.bias"], module[0].bias.detach().numpy())
    assert cache.has([((4, 6), np.float32)]) and cache.conversions == 1
    module.eval()
    assert not cache.has([((4, 6), np.float32)])
    cache.get([((4, 6), np.float32)])
    assert cache.conversions == 2
    assert conversions(module, "graph") is cache  # one cache per module and route


def test_unknown_route_is_one_line():
    with pytest.raises(PpmlError, match="route must be 'graph' or 'flax', got 'onnx'"):
        conversions(tiny_mlp(), "onnx")
