"""A readable ResNet in torch (He et al. 2015): ResNet-18/34 (basic blocks), ResNet-50 and up
(bottleneck blocks), read top to bottom.

BasicBlock, Bottleneck, ResNetConfig, ResNet -- in that order.  Attribute names are
torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ``fc``), so
a torchvision checkpoint's ``state_dict`` loads as it is (torchvision itself is not
installable here: issue 20).  Shapes in the comments are for ResNet-18 on a 224x224 image.

Differences from torchvision, on purpose:
  * no ``zero_init_residual``/``groups``/``width_per_group``/``replace_stride_with_dilation``
    options (the standard architectures only); weights are initialised as torchvision does
    (Kaiming normal for convolutions, batch norm at 1 and 0).
  * ``ResNetConfig.stem`` picks the ImageNet stem (7x7 stride-2 convolution and a 3x3
    stride-2 max pool) or the CIFAR one (a 3x3 convolution, no pool) for small images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + x)``."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(c_in, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _shortcut(c_in, width * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # (B, C', H/s, W/s)
        out = self.relu(self.bn1(self.conv1(x)))  # (B, width, H/s, W/s)
        out = self.bn2(self.conv2(out))  # (B, width, H/s, W/s)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 (reduce), 3x3 (stride), 1x1 (expand x4) convolutions and a shortcut (ResNet-50)."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv1x1(c_in, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, width * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # (B, 4w, H/s, W/s)
        out = self.relu(self.bn1(self.conv1(x)))  # (B, w, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (B, w, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (B, 4w, H/s, W/s)
        return self.relu(out + identity)


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Sequential | None:
    """A 1x1 convolution and batch norm when the shape changes, else the identity (None)."""
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


@dataclass(frozen=True)
class ResNetConfig:
    block: str = "basic"  # "basic" (ResNet-18/34) or "bottleneck" (ResNet-50/101/152)
    layers: tuple[int, int, int, int] = (2, 2, 2, 2)  # blocks per stage: ResNet-18
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)  # block width per stage
    num_classes: int = 1000
    in_channels: int = 3
    stem: str = "imagenet"  # "imagenet": 7x7/2 conv + 3x3/2 max pool; "cifar": 3x3/1 conv

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise ValueError(f"ResNetConfig: block {self.block!r}; choose one of {list(BLOCKS)}")
        if self.stem not in ("imagenet", "cifar"):
            raise ValueError(f"ResNetConfig: stem {self.stem!r}; choose 'imagenet' or 'cifar'")
        if len(self.layers) != 4 or len(self.widths) != 4:
            raise ValueError("ResNetConfig: layers and widths need one entry per stage (4)")


RESNET18 = ResNetConfig()
RESNET34 = ResNetConfig(layers=(3, 4, 6, 3))
RESNET50 = ResNetConfig(block="bottleneck", layers=(3, 4, 6, 3))


class ResNet(nn.Module):
    def __init__(self, config: ResNetConfig = RESNET18) -> None:
        super().__init__()
        self.config = config
        block = BLOCKS[config.block]
        c = config.widths[0]
        if config.stem == "imagenet":
            self.conv1 = nn.Conv2d(config.in_channels, c, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = conv3x3(config.in_channels, c)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        stages = []
        for i, (n, width) in enumerate(zip(config.layers, config.widths, strict=True)):
            stride = 1 if i == 0 else 2  # every stage after the first halves H and W
            blocks = []
            for j in range(n):
                blocks.append(block(c, width, stride if j == 0 else 1))
                c = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c, config.num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 64, 112, 112)
        x = self.maxpool(x)  # (B, 64, 56, 56)
        x = self.layer1(x)  # (B, 64, 56, 56)
        x = self.layer2(x)  # (B, 128, 28, 28)
        x = self.layer3(x)  # (B, 256, 14, 14)
        x = self.layer4(x)  # (B, 512, 7, 7)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 512)
        return self.fc(x)  # (B, num_classes)
