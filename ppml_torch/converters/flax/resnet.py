"""The project's ResNet (``ppml_torch.models.resnet.ResNet``) -> ``models/flax_cnn.ResNet``.

The Flax twin is shared with HF's ``ResNetModel`` (:mod:`.hf_resnet`); :func:`resnet_map`
builds the map from a list of blocks named either way.  Weight map (block ``b`` is the
``b``-th block counted over all stages; convolutions ``(O, I, kh, kw)`` -> ``(kh, kw, I, O)``)::

    conv1.weight                      -> params/stem_conv/kernel       permuted
    bn1.weight / bias                 -> params/stem_bn/scale / bias
    bn1.running_mean / running_var    -> batch_stats/stem_bn/mean / var
    layerS.J.convK.weight             -> params/block_b_convK/kernel   permuted
    layerS.J.bnK.*                    -> block_b_bnK (as bn1)
    layerS.J.downsample.0.weight      -> params/block_b_down_conv/kernel  permuted
    layerS.J.downsample.1.*           -> block_b_down_bn
    fc.weight / fc.bias               -> params/fc/kernel (transposed) / bias
    *.num_batches_tracked             -> kept as the torch module has it (Flax has none)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch.nn as nn

from ppml_torch.models import flax_cnn
from ppml_torch.models.resnet import BasicBlock, Bottleneck, ResNet, ResNetConfig

from .common import WeightMap, WeightMapError
from .registry import Family, Transfer

_BN_LEAVES = {
    "weight": ("params", "scale"),
    "bias": ("params", "bias"),
    "running_mean": ("batch_stats", "mean"),
    "running_var": ("batch_stats", "var"),
}
_CONV_PERM = (2, 3, 1, 0)


@dataclasses.dataclass
class _Map:
    pairs: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    shapes: dict[tuple[str, ...], tuple[int, ...]] = dataclasses.field(default_factory=dict)
    permuted: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    kept: set[str] = dataclasses.field(default_factory=set)

    def conv(self, conv: nn.Conv2d, key: str, name: str, stride: int, kernel: int) -> None:
        if conv.bias is not None or conv.groups != 1 or conv.dilation != (1, 1):
            raise WeightMapError(f"to_flax: {key} is not a plain bias-free convolution")
        if conv.stride != (stride, stride) or conv.padding != (kernel // 2, kernel // 2):
            raise WeightMapError(f"to_flax: {key} has stride/padding the ResNet twin does not")
        path = ("params", name, "kernel")
        self.pairs[f"{key}.weight"] = path
        self.permuted[f"{key}.weight"] = _CONV_PERM
        self.shapes[path] = tuple(conv.weight.shape[i] for i in _CONV_PERM)

    def bn(self, bn: nn.BatchNorm2d, key: str, name: str, eps: float) -> None:
        if not (bn.affine and bn.track_running_stats) or bn.eps != eps:
            raise WeightMapError(f"to_flax: {key} needs affine running statistics and eps {eps}")
        if bn.training:
            raise WeightMapError(f"to_flax: {key} is in training mode; call module.eval() first")
        for leaf, (col, flax_leaf) in _BN_LEAVES.items():
            path = (col, name, flax_leaf)
            self.pairs[f"{key}.{leaf}"] = path
            self.shapes[path] = (bn.num_features,)
        self.kept.add(f"{key}.num_batches_tracked")


def resnet_map(
    what: str,
    stem: tuple[str, nn.Conv2d, str, nn.BatchNorm2d],
    blocks: Sequence[tuple[flax_cnn.Block, list[tuple[str, nn.Conv2d, str, nn.BatchNorm2d]]]],
    fc: tuple[str, nn.Linear] | None,
    stem_kind: str = "imagenet",
) -> tuple[WeightMap, dict, flax_cnn.ResNet, frozenset[str]]:
    """The map, Flax shapes, Flax model and kept buffers of a ResNet described by its torch
    modules: the stem's (conv key, conv, bn key, bn), then per block its Flax ``Block`` and
    its (conv, bn) pairs in order (``conv1..3``, then the shortcut's if any)."""
    m = _Map()
    conv_key, conv, bn_key, bn = stem
    eps = bn.eps
    k = 7 if stem_kind == "imagenet" else 3
    m.conv(conv, conv_key, "stem_conv", 2 if stem_kind == "imagenet" else 1, k)
    m.bn(bn, bn_key, "stem_bn", eps)
    for b, (block, convs) in enumerate(blocks):
        kernels = (3, 3) if block.kind == "basic" else (1, 3, 1)
        strides = [1] * len(kernels)
        strides[0 if block.kind == "basic" else 1] = block.stride
        main = convs[: len(kernels)]
        for i, ((ck, c, bk, bn_i), kk, st) in enumerate(zip(main, kernels, strides, strict=True)):
            m.conv(c, ck, f"block_{b}_conv{i + 1}", st, kk)
            m.bn(bn_i, bk, f"block_{b}_bn{i + 1}", eps)
        if block.shortcut:
            ck, c, bk, bn_i = convs[len(kernels)]
            m.conv(c, ck, f"block_{b}_down_conv", block.stride, 1)
            m.bn(bn_i, bk, f"block_{b}_down_bn", eps)
    transposed = set()
    num_classes = 0
    if fc is not None:
        key, lin = fc
        m.pairs[f"{key}.weight"] = ("params", "fc", "kernel")
        m.pairs[f"{key}.bias"] = ("params", "fc", "bias")
        m.shapes[("params", "fc", "kernel")] = (lin.in_features, lin.out_features)
        m.shapes[("params", "fc", "bias")] = (lin.out_features,)
        transposed.add(f"{key}.weight")
        num_classes = lin.out_features
    model = flax_cnn.ResNet(
        stem_width=conv.out_channels,
        blocks=tuple(b for b, _ in blocks),
        stem=stem_kind,
        num_classes=num_classes,
        eps=eps,
    )
    wmap = WeightMap(
        m.pairs, frozenset(transposed), what=what, permuted=m.permuted, collections=True
    )
    return wmap, m.shapes, model, frozenset(m.kept)


def _blocks(module: ResNet):
    out = []
    for s in range(1, 5):
        for j, blk in enumerate(getattr(module, f"layer{s}")):
            pre = f"layer{s}.{j}"
            n = 2 if isinstance(blk, BasicBlock) else 3
            convs = [
                (f"{pre}.conv{i}", getattr(blk, f"conv{i}"), f"{pre}.bn{i}", getattr(blk, f"bn{i}"))
                for i in range(1, n + 1)
            ]
            if blk.downsample is not None:
                convs.append(
                    (
                        f"{pre}.downsample.0",
                        blk.downsample[0],
                        f"{pre}.downsample.1",
                        blk.downsample[1],
                    )
                )
            kind = "basic" if isinstance(blk, BasicBlock) else "bottleneck"
            last = convs[n - 1][1]
            stride = (blk.conv1 if kind == "basic" else blk.conv2).stride[0]
            block = flax_cnn.Block(
                kind, blk.conv1.in_channels, blk.conv1.out_channels, last.out_channels, stride,
                blk.downsample is not None,
            )  # fmt: skip
            out.append((block, convs))
    return out


def matches(module: nn.Module) -> bool:
    return isinstance(module, ResNet)


def transfer(module: ResNet) -> Transfer:
    if not all(
        isinstance(b, (BasicBlock, Bottleneck))
        for s in range(1, 5)
        for b in getattr(module, f"layer{s}")
    ):
        raise WeightMapError("to_flax: ResNet stages must hold BasicBlock or Bottleneck blocks")
    wmap, shapes, model, kept = resnet_map(
        "ResNet",
        ("conv1", module.conv1, "bn1", module.bn1),
        _blocks(module),
        ("fc", module.fc),
        module.config.stem,
    )

    def apply_fn(params: Any, x: Any) -> Any:
        return model.apply(params, x)

    return Transfer(
        weight_map=wmap,
        flax_shapes=shapes,
        apply_fn=apply_fn,
        spec={"family": "resnet", "config": dataclasses.asdict(module.config)},
        kept_buffers=kept,
        source="ppml_torch.models.resnet.ResNet",
        extras={"flax_module": model},
    )


def build(spec: dict[str, Any]) -> ResNet:
    cfg = dict(spec.get("config") or {})
    try:
        config = ResNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    except (TypeError, ValueError) as e:
        raise WeightMapError(f"ResNet spec: {e}") from None
    return ResNet(config).eval()


FAMILY = Family(
    name="resnet",
    torch_model="ppml_torch.models.resnet.ResNet",
    flax_model="ppml_torch.models.flax_cnn.ResNet",
    matches=matches,
    transfer=transfer,
    build=build,
)
