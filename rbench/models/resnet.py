"""ImageNet ResNets (He et al., 2015) with torchvision's exact module names.

Names and shapes match ``torchvision.models.resnet`` (``conv1 bn1 relu maxpool layer1..layer4 avgpool fc``; blocks
with ``expansion`` and ``downsample``), so a torchvision state_dict loads with ``strict=True``. The stride of a
bottleneck sits on its 3×3 convolution ("ResNet v1.5"), as in torchvision.

``residual=False`` builds the *plain* twin: the same layers with every shortcut removed, the baseline of the paper's
degradation experiment.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions and a shortcut: the block of ResNet-18/34 and of the CIFAR ResNets."""

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride
        self.residual = residual

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3, 1×1 expand: a quarter of the weights of two 3×3 convolutions at 256 channels."""

    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.residual = residual

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """The four-stage ImageNet ResNet.

    Args:
        block: ``BasicBlock`` (18/34) or ``Bottleneck`` (50/101/152).
        layers: blocks per stage.
        num_classes: width of ``fc``.
        residual: ``False`` drops every shortcut (the plain network).
        zero_init_residual: zero the last BN's gamma in each block, so every residual branch starts as identity
            (Goyal et al., 2017); a no-op for plain networks, whose blocks would then output zeros.
    """

    def __init__(
        self,
        block: Block,
        layers: list[int],
        num_classes: int = 1000,
        residual: bool = True,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.residual = residual
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        init_weights(self, zero_init_residual=zero_init_residual and residual)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        def projection(inplanes: int, outplanes: int, stride: int) -> nn.Module:
            return nn.Sequential(conv1x1(inplanes, outplanes, stride), nn.BatchNorm2d(outplanes))

        layer, self.inplanes = make_stage(block, self.inplanes, planes, blocks, stride, self.residual, projection)
        return layer

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def make_stage(
    block: Block,
    inplanes: int,
    planes: int,
    blocks: int,
    stride: int,
    residual: bool,
    shortcut: Callable[[int, int, int], nn.Module],
) -> tuple[nn.Sequential, int]:
    """torchvision's ``_make_layer``: ``blocks`` blocks, the first one striding and, where the shape changes, given a
    ``shortcut(inplanes, outplanes, stride)`` module as its ``downsample``. Returns the stage and its output width."""
    outplanes = planes * block.expansion
    downsample = shortcut(inplanes, outplanes, stride) if residual and (stride != 1 or inplanes != outplanes) else None
    layers = [block(inplanes, planes, stride, downsample, residual=residual)]
    layers += [block(outplanes, planes, residual=residual) for _ in range(1, blocks)]
    return nn.Sequential(*layers), outplanes


def init_weights(model: nn.Module, zero_init_residual: bool = False) -> None:
    """torchvision's initialisation: Kaiming-normal (fan-out) convolutions, BatchNorm at identity."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, BasicBlock | Bottleneck):
                nn.init.zeros_(m.last_bn().weight)
