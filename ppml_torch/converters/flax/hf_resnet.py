"""HF ``transformers.ResNetModel`` -> ``models/flax_cnn.ResNet`` (the twin of :mod:`.resnet`).

``apply(params, pixel_values)`` returns ``{"last_hidden_state", "pooler_output"}`` like HF's
output (``pooler_output`` ``(N, C, 1, 1)``).  ReLU activations and the stride on the 3x3
convolution of a bottleneck (``downsample_in_bottleneck=False``, the default) only.  Weight
map, block ``b`` counted over all stages (layer ``K`` of a block is its ``K``-th conv + BN)::

    embedder.embedder.convolution.weight           -> params/stem_conv/kernel     permuted
    embedder.embedder.normalization.*              -> stem_bn (params: scale/bias;
                                                      batch_stats: mean/var)
    encoder.stages.S.layers.J.layer.K.convolution  -> params/block_b_conv{K+1}/kernel
    encoder.stages.S.layers.J.layer.K.normalization-> block_b_bn{K+1}
    encoder.stages.S.layers.J.shortcut.*           -> block_b_down_conv / block_b_down_bn
    *.num_batches_tracked                          -> kept as the torch module has it
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from ppml_torch.models import flax_cnn

from .common import WeightMapError
from .registry import Family, Transfer
from .resnet import resnet_map

_CONFIG_KEYS = (
    "num_channels", "embedding_size", "hidden_sizes", "depths", "layer_type", "hidden_act",
    "downsample_in_first_stage", "downsample_in_bottleneck",
)  # fmt: skip


def matches(module: nn.Module) -> bool:
    return type(module).__name__ == "ResNetModel" and type(module).__module__.startswith(
        "transformers."
    )


def _blocks(module: nn.Module):
    out = []
    for s, stage in enumerate(module.encoder.stages):
        for j, layer in enumerate(stage.layers):
            pre = f"encoder.stages.{s}.layers.{j}"
            convs = [
                (f"{pre}.layer.{k}.convolution", c.convolution, f"{pre}.layer.{k}.normalization",
                 c.normalization)
                for k, c in enumerate(layer.layer)
            ]  # fmt: skip
            shortcut = hasattr(layer.shortcut, "convolution")
            if shortcut:
                sc = layer.shortcut
                convs.append(
                    (f"{pre}.shortcut.convolution", sc.convolution, f"{pre}.shortcut.normalization",
                     sc.normalization)
                )  # fmt: skip
            kind = "basic" if len(layer.layer) == 2 else "bottleneck"
            first = layer.layer[0].convolution
            mid = layer.layer[1].convolution
            stride = (first if kind == "basic" else mid).stride[0]
            block = flax_cnn.Block(
                kind, first.in_channels, first.out_channels,
                layer.layer[-1].convolution.out_channels, stride, shortcut,
            )  # fmt: skip
            out.append((block, convs))
    return out


def transfer(module: nn.Module) -> Transfer:
    config = module.config
    if config.hidden_act != "relu" or config.downsample_in_bottleneck:
        raise WeightMapError(
            f"to_flax: ResNetModel with hidden_act={config.hidden_act!r}, downsample_in_bottleneck="
            f"{config.downsample_in_bottleneck}: the Flax twin has ReLU and the stride on the 3x3 "
            "convolution; use the graph route (ppml_torch.convert)"
        )
    emb = module.embedder.embedder
    wmap, shapes, model, kept = resnet_map(
        "ResNetModel",
        ("embedder.embedder.convolution", emb.convolution, "embedder.embedder.normalization",
         emb.normalization),
        _blocks(module),
        None,
    )  # fmt: skip

    def apply_fn(params: Any, pixel_values: Any) -> Any:
        return model.apply(params, pixel_values)

    spec = {"family": "hf_resnet", "config": {k: getattr(config, k) for k in _CONFIG_KEYS}}
    return Transfer(
        weight_map=wmap,
        flax_shapes=shapes,
        apply_fn=apply_fn,
        spec=spec,
        kept_buffers=kept,
        source="transformers.ResNetModel",
        extras={"flax_module": model},
    )


def build(spec: dict[str, Any]) -> nn.Module:
    import transformers

    cfg = dict(spec.get("config") or {})
    unknown = sorted(set(cfg) - set(_CONFIG_KEYS))
    if unknown:
        raise WeightMapError(f"hf_resnet spec: unknown config keys {unknown}")
    return transformers.ResNetModel(transformers.ResNetConfig(**cfg)).eval()


FAMILY = Family(
    name="hf_resnet",
    torch_model="HF ResNetModel",
    flax_model="ppml_torch.models.flax_cnn.ResNet",
    matches=matches,
    transfer=transfer,
    build=build,
)
