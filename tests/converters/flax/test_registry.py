"""ppml_torch/converters/flax/registry.py: one table of families, each declared once."""

from __future__ import annotations

import pytest
import torch.nn as nn
from flax_cases import homework_mlp, tiny_hf_gpt2, tiny_nanogpt

import ppml_torch
from ppml_torch.converters.flax import WeightMapError, registry


def test_every_family_module_declares_one_family():
    table = registry.families()
    # lookup order, most specific first
    assert list(table) == ["hf_gpt2", "nanogpt", "hf_resnet", "resnet", "cnn", "mlp"]
    for name, family in table.items():
        assert isinstance(family, registry.Family) and family.name == name
        assert registry.get(name) is family


def _cnn():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten()).eval()


def _resnet():
    from ppml_torch.models.resnet import ResNet, ResNetConfig

    return ResNet(ResNetConfig(layers=(1, 1, 1, 1), widths=(4, 4, 8, 8), num_classes=3)).eval()


def _hf_resnet():
    import transformers

    cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])
    return transformers.ResNetModel(cfg).eval()


@pytest.mark.parametrize(
    "make, name",
    [
        (tiny_hf_gpt2, "hf_gpt2"),
        (tiny_nanogpt, "nanogpt"),
        (homework_mlp, "mlp"),
        (_cnn, "cnn"),
        (_resnet, "resnet"),
        (_hf_resnet, "hf_resnet"),
    ],
)
def test_family_of_and_transfer(make, name):
    module = make()
    family = registry.family_of(module)
    assert family.name == name
    t = family.transfer(module)
    assert t.spec["family"] == name
    # the map covers the whole state_dict: pairs, tied keys and kept buffers, nothing else
    covered = set(t.weight_map.pairs) | set(t.weight_map.tied) | set(t.kept_buffers)
    assert not (set(t.weight_map.pairs) & set(t.kept_buffers))
    assert covered == set(module.state_dict())
    assert set(t.weight_map.pairs.values()) == set(t.flax_shapes)
    rebuilt = family.build(t.spec)
    assert family.transfer(rebuilt).spec == t.spec


def test_no_family_names_the_layers_and_the_supported_models():
    """``family_of`` names the layers no family knows and the families; ``to_flax`` adds the
    graph route once (every refusal of this route names the other)."""
    bad = nn.Sequential(nn.Bilinear(2, 2, 2))
    with pytest.raises(WeightMapError) as e:
        registry.family_of(bad)
    msg = str(e.value)
    assert "0 (Bilinear)" in msg and "HF GPT2LMHeadModel (hf_gpt2)" in msg and "\n" not in msg
    with pytest.raises(WeightMapError) as e:
        ppml_torch.to_flax(bad)
    assert str(e.value).startswith(msg) and str(e.value).count("ppml_torch.convert") == 1


def test_unknown_family_name():
    with pytest.raises(WeightMapError, match="unknown Flax model family 'vgg'; known: hf_gpt2"):
        registry.get("vgg")
