"""The project's ResNet: torchvision's architecture and key names, converted by the graph route."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from ppml_torch.converters.fx import convert
from ppml_torch.models.resnet import RESNET18, RESNET50, ResNet, ResNetConfig
from ppml_torch.testing import Tolerance, assert_close

# torchvision's resnet18: 11,689,512 parameters; resnet50: 25,557,032
PARAMS = {RESNET18: 11_689_512, RESNET50: 25_557_032}


@pytest.mark.parametrize("config", [RESNET18, RESNET50], ids=["resnet18", "resnet50"])
def test_parameter_count_and_keys_are_torchvisions(config):
    """Catches a block with a missing/extra layer or a renamed attribute (torchvision keys)."""
    model = ResNet(config)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[config]
    keys = set(model.state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer2.0.downsample.0.weight", "fc.bias"} <= keys
    assert ("layer1.0.conv3.weight" in keys) == (config.block == "bottleneck")


def test_resnet18_shapes():
    model = ResNet(ResNetConfig(num_classes=7)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_small_resnet_converts_and_matches_torch_with_gradients(block):
    torch.manual_seed(0)
    config = ResNetConfig(block=block, layers=(1, 1, 1, 1), widths=(4, 8, 8, 16), num_classes=5)
    model = ResNet(config).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 32, 32)
    cm = convert(model, (x,))
    tol = Tolerance(atol=1e-4, rtol=1e-4)
    assert_close(np.asarray(cm.apply(cm.params, x.numpy())), model(x).detach().numpy(), tol=tol)
    model(x).sum().backward()
    floats = {k: v for k, v in cm.params.items() if jnp.issubdtype(v.dtype, jnp.floating)}
    g = jax.grad(lambda f: jnp.sum(cm.apply({**cm.params, **f}, x.numpy())))(floats)
    for name, p in model.named_parameters():
        assert_close(np.asarray(g[name]), p.grad.numpy(), tol=Tolerance(5e-4, 5e-4), what=name)


def test_config_is_checked():
    with pytest.raises(ValueError, match="block 'dense'"):
        ResNetConfig(block="dense")
    with pytest.raises(ValueError, match="one entry per stage"):
        ResNetConfig(layers=(2, 2))
