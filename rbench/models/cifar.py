"""CIFAR ResNets of the residual-learning paper (He et al., 2015, section 4.2).

Three stages of 16, 32 and 64 channels, ``n`` basic blocks each, depth ``6n + 2`` (20, 32, 44, 56, 110). Where a
stage halves the resolution and doubles the channels, the shortcut is either option A (subsample and zero-pad the
new channels: no parameters) or option B (a 1×1 projection with BatchNorm).
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from rbench.models.resnet import BasicBlock, conv1x1, init_weights, make_stage

Shortcut = Literal["A", "B"]


class PadShortcut(nn.Module):
    """Option A: take every other pixel and zero-pad the added channels, half on each side."""

    def __init__(self, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = planes // 4

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))


class CifarResNet(nn.Module):
    """``conv1 bn1 relu layer1..layer3 avgpool fc``, named like the ImageNet ResNet minus its fourth stage."""

    def __init__(
        self,
        depth: int,
        num_classes: int = 10,
        shortcut: Shortcut = "A",
        residual: bool = True,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' (zero-pad) or 'B' (projection), got {shortcut!r}")
        blocks = (depth - 2) // 6
        self.inplanes = 16
        self.shortcut = shortcut
        self.residual = residual
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, blocks, stride=1)
        self.layer2 = self._make_layer(32, blocks, stride=2)
        self.layer3 = self._make_layer(64, blocks, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        init_weights(self, zero_init_residual=zero_init_residual and residual)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        def shortcut(inplanes: int, outplanes: int, stride: int) -> nn.Module:
            if self.shortcut == "A":
                return PadShortcut(outplanes, stride)
            return nn.Sequential(conv1x1(inplanes, outplanes, stride), nn.BatchNorm2d(outplanes))

        layer, self.inplanes = make_stage(BasicBlock, self.inplanes, planes, blocks, stride, self.residual, shortcut)
        return layer

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))
