"""The vision rows of docs/models.md (scripts/models_page.py lists them with the others).

Each entry is ``(name, source, build, sample)``: ``build() -> (module, args, kwargs)``,
``sample``: also run under ``spu:ABY3``.  Tiny configs of transformers' vision models and the
project's ResNet, random weights (seeded), nothing downloaded; the input is one 3x32x32 image
(seed 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

IMAGE = (1, 3, 32, 32)


def _pixels():
    import torch

    return torch.randn(*IMAGE, generator=torch.Generator().manual_seed(2))


def _hf(config_cls: str, model_cls: str, **cfg: Any) -> Callable[[], tuple[Any, tuple, dict]]:
    def build():
        import torch
        import transformers

        torch.manual_seed(0)
        module = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**cfg))
        return module.eval(), (_pixels(),), {}

    return build


def _ppml_resnet18():
    import torch

    from ppml_torch.models.resnet import ResNet, ResNetConfig

    torch.manual_seed(0)
    config = ResNetConfig(layers=(1, 1, 1, 1), widths=(8, 8, 16, 16), num_classes=10)
    return ResNet(config).eval(), (_pixels(),), {}


_SMALL = dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])
_VIT = dict(
    image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
    intermediate_size=64,
)  # fmt: skip

# (name, source, build, sample): ResNet, ConvNeXT, ViT and PoolFormer also under spu:ABY3
VISION: list[tuple[str, str, Callable[[], tuple[Any, tuple, dict]], bool]] = [
    ("ResNet", "transformers", _hf("ResNetConfig", "ResNetModel", **_SMALL), True),
    (
        "ResNet (basic blocks)",
        "transformers",
        _hf("ResNetConfig", "ResNetModel", layer_type="basic", **_SMALL),
        False,
    ),
    (
        "MobileNetV2",
        "transformers",
        _hf(
            "MobileNetV2Config",
            "MobileNetV2Model",
            depth_multiplier=0.1,
            image_size=32,
            min_depth=4,
        ),
        False,
    ),  # fmt: skip
    (
        "EfficientNet",
        "transformers",
        _hf(
            "EfficientNetConfig",
            "EfficientNetModel",
            image_size=32,
            width_coefficient=0.1,
            depth_coefficient=0.1,
            hidden_dim=128,
        ),
        False,
    ),  # fmt: skip
    (
        "RegNet",
        "transformers",
        _hf("RegNetConfig", "RegNetModel", groups_width=4, **_SMALL),
        False,
    ),
    (
        "ConvNeXT",
        "transformers",
        _hf("ConvNextConfig", "ConvNextModel", hidden_sizes=[8, 16], depths=[1, 1], num_stages=2),
        True,
    ),
    ("ViT", "transformers", _hf("ViTConfig", "ViTModel", **_VIT), True),
    ("DeiT", "transformers", _hf("DeiTConfig", "DeiTModel", **_VIT), False),
    (
        "Swin",
        "transformers",
        _hf(
            "SwinConfig",
            "SwinModel",
            image_size=32,
            patch_size=4,
            embed_dim=16,
            depths=[1, 1],
            num_heads=[2, 2],
            window_size=4,
        ),
        False,
    ),  # fmt: skip
    (
        "PoolFormer",
        "transformers",
        _hf(
            "PoolFormerConfig",
            "PoolFormerModel",
            hidden_sizes=[8, 16],
            depths=[1, 1],
            num_encoder_blocks=2,
            patch_sizes=[7, 3],
            strides=[4, 2],
            padding=[2, 1],
        ),
        True,
    ),  # fmt: skip
    ("ResNet-18 layout (ppml_torch.models)", "ppml_torch", _ppml_resnet18, False),
]
