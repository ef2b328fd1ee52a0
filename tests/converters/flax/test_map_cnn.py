"""Flax weight transfer of CNNs: a torch Sequential (cnn), the project's ResNet (resnet) and
HF's ResNetModel (hf_resnet).  Outputs match torch; torch -> Flax -> torch is bit-exact;
channels-first/last is handled inside (a Flatten then Linear sees torch's feature order)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn
from flax_cases import assert_state_dicts_equal

from ppml_torch.converters.flax import WeightMapError, families, family_of, from_flax, to_flax
from ppml_torch.models.resnet import ResNet, ResNetConfig
from ppml_torch.testing import Tolerance, assert_close

TOL = Tolerance(atol=2e-5, rtol=2e-5)


def _stats(m: nn.Module) -> nn.Module:
    """Non-trivial batch-norm statistics and affine weights (eval mode)."""
    torch.manual_seed(3)
    with torch.no_grad():
        for b in m.modules():
            if isinstance(b, (nn.BatchNorm1d, nn.BatchNorm2d)):
                b.running_mean.uniform_(-0.5, 0.5)
                b.running_var.uniform_(0.5, 2.0)
                b.weight.uniform_(0.5, 1.5)
                b.bias.uniform_(-0.3, 0.3)
    return m.eval()


def _seq2d():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(8, 16, 3, stride=2, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AvgPool2d(2), nn.Dropout(0.1), nn.Flatten(), nn.Linear(16 * 2 * 2, 10),
    )  # fmt: skip


def _seq1d():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(4, 8, 3), nn.BatchNorm1d(8), nn.Tanh(), nn.MaxPool1d(2),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 3),
    )  # fmt: skip


def _resnet(block="basic", stem="imagenet"):
    torch.manual_seed(0)
    layers = (1, 1, 1, 1) if block == "basic" else (1, 2, 1, 1)
    return ResNet(ResNetConfig(block=block, layers=layers, widths=(4, 8, 8, 16), num_classes=5,
                               stem=stem))  # fmt: skip


def _hf(layer_type="bottleneck"):
    import transformers

    torch.manual_seed(0)
    cfg = transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 2], layer_type=layer_type
    )
    return transformers.ResNetModel(cfg)


CASES = {
    "cnn-2d": (_seq2d, (2, 3, 20, 20), "cnn"),
    "cnn-1d": (_seq1d, (2, 4, 11), "cnn"),
    "resnet-basic": (_resnet, (2, 3, 32, 32), "resnet"),
    "resnet-bottleneck-cifar": (lambda: _resnet("bottleneck", "cifar"), (2, 3, 16, 16), "resnet"),
    "hf-resnet-bottleneck": (_hf, (1, 3, 32, 32), "hf_resnet"),
    "hf-resnet-basic": (lambda: _hf("basic"), (1, 3, 32, 32), "hf_resnet"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_and_gradients_match_torch(name):
    make, shape, family = CASES[name]
    module = _stats(make())
    assert family_of(module).name == family
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    cm = to_flax(module)
    out = cm.apply(cm.params, x.numpy())
    expected = module(x)
    if isinstance(out, dict):  # HF: last_hidden_state and pooler_output
        for k in out:
            assert_close(np.asarray(out[k]), expected[k].detach().numpy(), tol=TOL, what=k)
        expected = expected["pooler_output"]

        def total(p):
            return jnp.sum(cm.apply(p, x.numpy())["pooler_output"])
    else:
        assert_close(np.asarray(out), expected.detach().numpy(), tol=TOL)

        def total(p):
            return jnp.sum(cm.apply(p, x.numpy()))

    expected.sum().backward()
    grads = cm.params_to_torch(jax.grad(total)(cm.params))
    for k, p in module.named_parameters():
        assert_close(np.asarray(grads[k]), p.grad.numpy(), tol=Tolerance(1e-4, 1e-4), what=k)


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip_is_bit_exact(name):
    """torch -> Flax -> torch gives the same tensors (running statistics included): catches a
    permutation applied one way and not undone the other, or statistics left out."""
    make, _, family = CASES[name]
    module = _stats(make())
    cm = to_flax(module)
    assert {"params", "batch_stats"} == set(cm.params)
    fresh = families()[family].build(cm.extras["spec"])
    from_flax(cm, fresh)
    assert_state_dicts_equal(module.state_dict(), fresh.state_dict())


def test_flatten_sees_torchs_feature_order():
    """A Linear after Flatten reads (C, H, W) order: catches a channels-last flatten (the
    outputs would be permuted features, a wrong number with no error)."""
    module = _stats(_seq2d())
    with torch.no_grad():
        module[-1].weight.copy_(torch.arange(module[-1].weight.numel()).view_as(module[-1].weight))
    x = torch.randn(2, 3, 20, 20)
    cm = to_flax(module)
    assert_close(np.asarray(cm.apply(cm.params, x.numpy())), module(x).detach().numpy(), tol=TOL)


@pytest.mark.parametrize(
    "module, fragment",
    [
        (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.ReLU()), "0 (Conv2d): groups"),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4).train()), "training mode"),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(2)), "only output size 1"),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2, return_indices=True)), "indices"),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Upsample(scale_factor=2)), "1 (Upsample)"),
    ],
    ids=["groups", "bn-train", "adaptive-2", "indices", "upsample"],
)
def test_unmapped_layers_are_refused_in_one_line(module, fragment):
    with pytest.raises(WeightMapError) as e:
        to_flax(module)
    assert fragment in str(e.value) and "\n" not in str(e.value)
    assert "graph route" in str(e.value) or "ppml_torch.convert" in str(e.value)
