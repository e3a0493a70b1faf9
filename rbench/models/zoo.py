"""Every registered model: ImageNet ResNets, CIFAR ResNets, and a plain (shortcut-free) twin of each."""

from __future__ import annotations

from functools import partial

from rbench.models.cifar import CifarResNet
from rbench.models.registry import CIFAR_PREPROCESS, IMAGENET_PREPROCESS, register_model
from rbench.models.resnet import BasicBlock, Bottleneck, ResNet

IMAGENET_DEPTHS = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}
CIFAR_DEPTHS = (20, 32, 44, 56, 110)


def _imagenet(depth: int, residual: bool, num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    block, layers = IMAGENET_DEPTHS[depth]
    return ResNet(block, layers, num_classes, residual=residual, zero_init_residual=zero_init_residual)


def _cifar(
    depth: int,
    residual: bool,
    num_classes: int = 10,
    shortcut: str = "A",
    zero_init_residual: bool = False,
) -> CifarResNet:
    return CifarResNet(depth, num_classes, shortcut, residual=residual, zero_init_residual=zero_init_residual)  # type: ignore[arg-type]


for _depth in IMAGENET_DEPTHS:
    for _prefix, _residual in (("resnet", True), ("plain", False)):
        register_model(f"{_prefix}{_depth}", "imagenet", 1000, IMAGENET_PREPROCESS, _residual)(
            partial(_imagenet, _depth, _residual)
        )
for _depth in CIFAR_DEPTHS:
    for _prefix, _residual in (("resnet", True), ("plain", False)):
        register_model(f"{_prefix}{_depth}", "cifar", 10, CIFAR_PREPROCESS, _residual)(
            partial(_cifar, _depth, _residual)
        )
