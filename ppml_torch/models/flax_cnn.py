"""Flax twins of torch CNNs: a ``Sequential`` of layers, and ResNet (basic and bottleneck
blocks), for the Flax weight transfer (:mod:`ppml_torch.converters.flax.cnn`, ``.resnet``).

Inputs and outputs keep torch's layout (``(N, C, H, W)``); inside, activations are
channels-last as Flax's ``Conv`` wants, and ``Flatten`` goes back to channels-first before
flattening, so a following ``Dense`` sees torch's feature order.  Batch norm runs on its
running statistics (eval mode): Flax's ``BatchNorm`` with ``use_running_average=True``, the
statistics in the ``batch_stats`` collection.  Pooling is :mod:`.pooling` (the converter's
own, exact under MPC: SPU's ``reduce_window`` gradient is wrong next to padding).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from .mlp import ACTIVATIONS
from .pooling import avg_pool, max_pool


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of a :class:`CNN`: ``kind`` and its settings (hashable, for Flax)."""

    kind: str  # conv, bn, act, maxpool, avgpool, gap, flatten, linear
    features: int = 0  # conv / linear outputs
    kernel: tuple[int, ...] = ()  # conv / pool window
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    bias: bool = True
    eps: float = 1e-5  # batch norm
    fn: str = ""  # activation name (models/mlp.py ACTIVATIONS)
    ceil_mode: bool = False
    count_include_pad: bool = True


def _channels_last(x: jax.Array) -> jax.Array:
    return jnp.moveaxis(x, 1, -1)


def _channels_first(x: jax.Array) -> jax.Array:
    return jnp.moveaxis(x, -1, 1)


def _pool(x: jax.Array, layer: Layer) -> jax.Array:
    """Pool a channels-last array with the channels-first pooling functions."""
    y = _channels_first(x)
    if layer.kind == "maxpool":
        y, _ = max_pool(
            y, layer.kernel, layer.stride, layer.padding, layer.dilation, layer.ceil_mode
        )
    else:
        y = avg_pool(
            y, layer.kernel, layer.stride, layer.padding, layer.ceil_mode, layer.count_include_pad
        )
    return _channels_last(y)


def conv(layer: Layer, name: str) -> nn.Conv:
    return nn.Conv(
        layer.features,
        layer.kernel,
        strides=layer.stride,
        padding=[(p, p) for p in layer.padding],
        kernel_dilation=layer.dilation,
        use_bias=layer.bias,
        name=name,
    )


def batch_norm(eps: float, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=True, epsilon=eps, name=name)


class CNN(nn.Module):
    """Layers named ``layers_<i>`` by their position in the torch ``Sequential``."""

    layers: tuple[Layer, ...]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _channels_last(x)  # (N, H, W, C)
        spatial = True
        for i, layer in enumerate(self.layers):
            name = f"layers_{i}"
            if layer.kind == "conv":
                x = conv(layer, name)(x)
            elif layer.kind == "bn":
                x = batch_norm(layer.eps, name)(x)
            elif layer.kind == "act":
                x = ACTIVATIONS[layer.fn](x)
            elif layer.kind in ("maxpool", "avgpool"):
                x = _pool(x, layer)
            elif layer.kind == "gap":  # AdaptiveAvgPool to 1 per spatial dim
                x = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)), keepdims=True)
            elif layer.kind == "flatten":
                x = jnp.reshape(_channels_first(x), (x.shape[0], -1))  # torch's order
                spatial = False
            elif layer.kind == "linear":
                x = nn.Dense(layer.features, use_bias=layer.bias, name=name)(x)
            else:
                raise ValueError(f"CNN: unknown layer kind {layer.kind!r}")
        return _channels_first(x) if spatial else x


@dataclasses.dataclass(frozen=True)
class Block:
    """One residual block: ``basic`` (two 3x3) or ``bottleneck`` (1x1, 3x3, 1x1)."""

    kind: str
    c_in: int
    width: int
    c_out: int
    stride: int
    shortcut: bool  # a 1x1 convolution + batch norm on the identity path


class ResNet(nn.Module):
    """The ResNet of :mod:`.resnet` (and HF's ``ResNetModel``): stem, blocks, head.

    ``stem``: ``"imagenet"`` (7x7/2 conv, BN, ReLU, 3x3/2 max pool) or ``"cifar"`` (3x3 conv,
    BN, ReLU).  ``num_classes``: the ``fc`` head's outputs (logits), or 0 for HF's outputs
    ``{"last_hidden_state": (N, C, h, w), "pooler_output": (N, C, 1, 1)}``.
    """

    stem_width: int
    blocks: tuple[Block, ...]
    stem: str = "imagenet"
    num_classes: int = 1000
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array):
        x = _channels_last(x)
        k, s, p = ((7, 7), (2, 2), 3) if self.stem == "imagenet" else ((3, 3), (1, 1), 1)
        x = nn.Conv(self.stem_width, k, s, [(p, p)] * 2, use_bias=False, name="stem_conv")(x)
        x = nn.relu(batch_norm(self.eps, "stem_bn")(x))
        if self.stem == "imagenet":
            pool = Layer("maxpool", kernel=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 1))
            x = _pool(x, pool)
        for i, b in enumerate(self.blocks):
            x = self._block(x, b, f"block_{i}")
        pooled = jnp.mean(x, axis=(1, 2), keepdims=True)  # (N, 1, 1, C)
        if not self.num_classes:
            return {
                "last_hidden_state": _channels_first(x),
                "pooler_output": _channels_first(pooled),
            }
        return nn.Dense(self.num_classes, name="fc")(pooled[:, 0, 0, :])

    def _block(self, x: jax.Array, b: Block, name: str) -> jax.Array:
        def cbr(y, c, kernel, stride, i, relu=True):
            pad = kernel // 2
            y = nn.Conv(
                c, (kernel, kernel), (stride, stride), [(pad, pad)] * 2, use_bias=False,
                name=f"{name}_conv{i}",
            )(y)  # fmt: skip
            y = batch_norm(self.eps, f"{name}_bn{i}")(y)
            return nn.relu(y) if relu else y

        identity = x
        if b.shortcut:
            identity = nn.Conv(
                b.c_out, (1, 1), (b.stride, b.stride), "VALID", use_bias=False,
                name=f"{name}_down_conv",
            )(x)  # fmt: skip
            identity = batch_norm(self.eps, f"{name}_down_bn")(identity)
        if b.kind == "basic":
            y = cbr(x, b.width, 3, b.stride, 1)
            y = cbr(y, b.c_out, 3, 1, 2, relu=False)
        else:
            y = cbr(x, b.width, 1, 1, 1)
            y = cbr(y, b.width, 3, b.stride, 2)
            y = cbr(y, b.c_out, 1, 1, 3, relu=False)
        return nn.relu(y + identity)
