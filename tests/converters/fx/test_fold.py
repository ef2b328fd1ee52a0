"""convert(..., fold_batch_norm=True): eval batch norm folded into the convolution before it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from ppml_torch.converters.fx import convert
from ppml_torch.converters.fx.errors import ConversionError
from ppml_torch.errors import InputError
from ppml_torch.models.resnet import BasicBlock
from ppml_torch.testing import Tolerance, assert_close


def _stats(m):
    torch.manual_seed(1)
    with torch.no_grad():
        for b in m.modules():
            if isinstance(b, nn.BatchNorm2d):
                b.running_mean.uniform_(-0.5, 0.5)
                b.running_var.uniform_(0.3, 2.0)
                b.weight.uniform_(0.5, 1.5)
                b.bias.uniform_(-0.5, 0.5)
    return m.eval()


class TwoUsers(nn.Module):
    """The convolution's output is read twice: folding would change the second reader."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


@pytest.mark.parametrize(
    "make, shape, n_folded",
    [
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4)), (2, 3, 8, 8), 1),
        (lambda: nn.Sequential(BasicBlock(4, 8, stride=2), BasicBlock(8, 8)), (2, 4, 8, 8), 5),
        (TwoUsers, (2, 3, 8, 8), 0),
        (lambda: nn.Sequential(nn.ConvTranspose2d(3, 4, 3), nn.BatchNorm2d(4)), (2, 3, 8, 8), 0),
        (lambda: nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(3)), (2, 3, 6), 0),
    ],
    ids=["conv-bias", "resnet-blocks", "two-readers", "transposed", "not-after-conv"],
)
def test_folded_model_computes_the_same(make, shape, n_folded):
    """Same outputs as the module; only exact pairs are folded (catches a fold that changes
    another reader of the convolution's output)."""
    torch.manual_seed(0)
    module = _stats(make())
    x = torch.randn(*shape)
    cm = convert(module, (x,), fold_batch_norm=True)
    assert len(cm.extras["folded_batch_norms"]) == n_folded
    with torch.no_grad():
        expected = module(x).numpy()
    assert_close(np.asarray(cm.apply(cm.params, x.numpy())), expected, tol=Tolerance(2e-5, 2e-5))


def test_folded_params_are_new_keys_and_do_not_map_back():
    """The module's own weights cannot be passed to a folded program (a wrong number), and
    the folded weights are not loaded back into the module."""
    module = _stats(nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)))
    x = torch.randn(1, 3, 6, 6)
    cm = convert(module, (x,), fold_batch_norm=True)
    assert {"0.weight@folded", "0.bias@folded", "1.num_batches_tracked"} == set(cm.params)
    plain = convert(module, (x,))
    with pytest.raises(InputError, match="params keys differ"):
        cm.apply(plain.params, x.numpy())
    with pytest.raises(ConversionError, match="fold_batch_norm=True, for inference"):
        cm.state_dict(cm.params)


def test_folded_program_has_no_rsqrt():
    import jax

    module = _stats(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    x = torch.randn(1, 3, 6, 6)
    text = {}
    for fold in (False, True):
        cm = convert(module, (x,), fold_batch_norm=fold)
        text[fold] = str(jax.make_jaxpr(cm.apply)(cm.params, x.numpy()))
    assert "rsqrt" in text[False] and "rsqrt" not in text[True]
