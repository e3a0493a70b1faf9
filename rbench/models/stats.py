"""Parameters and multiply-accumulates per stage, and the bottleneck arithmetic of the residual-learning paper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rbench.models.resnet import BasicBlock, Bottleneck


@dataclass(frozen=True)
class StageStats:
    name: str
    params: int
    macs: int
    output_shape: tuple[int, ...]


def stage_stats(model: nn.Module, input_shape: tuple[int, int, int]) -> list[StageStats]:
    """Parameters and MACs (convolutions and linear layers) of each top-level stage for one image.

    Stages are the model's direct children; the stem (``conv1 bn1 relu maxpool``) is reported as one row, as are
    the pooling and classifier (``avgpool fc``) as ``head``.
    """
    macs: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []

    def count(stage: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                macs[stage] += output.numel() * (module.in_channels // module.groups) * kh * kw
            elif isinstance(module, nn.Linear):
                macs[stage] += output.numel() * module.in_features

        return hook

    stages = _stages(model)
    for stage, modules in stages.items():
        macs[stage] = 0
        for module in modules:
            for sub in module.modules():
                if isinstance(sub, nn.Conv2d | nn.Linear):
                    hooks.append(sub.register_forward_hook(count(stage)))
            hooks.append(module.register_forward_hook(_record_shape(shapes, stage)))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return [
        StageStats(stage, sum(p.numel() for m in modules for p in m.parameters()), macs[stage], shapes[stage])
        for stage, modules in stages.items()
    ]


def _record_shape(shapes: dict[str, tuple[int, ...]], stage: str):
    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        shapes[stage] = tuple(output.shape[1:])

    return hook


def _stages(model: nn.Module) -> dict[str, list[nn.Module]]:
    stages: dict[str, list[nn.Module]] = {"stem": [], "head": []}
    for name, child in model.named_children():
        if name.startswith("layer"):
            stages[name] = [child]
        elif name in ("avgpool", "fc"):
            stages["head"].append(child)
        else:
            stages["stem"].append(child)
    head = stages.pop("head")
    stages["head"] = head
    return stages


def bottleneck_arithmetic(channels: int = 256) -> dict[str, int]:
    """Convolution weights of one block at ``channels`` wide: bottleneck (1×1→3×3→1×1) vs two 3×3 convolutions.

    At 256 channels: 69,632 against 1,179,648, the reason ResNet-50 and deeper use bottlenecks.
    """
    basic, bottleneck = block_comparison(channels)
    return {"bottleneck": bottleneck["weights"], "basic": basic["weights"]}


def block_comparison(channels: int = 256, size: int = 56) -> list[dict[str, Any]]:
    """Basic against bottleneck block at ``channels`` wide, from the real modules: each convolution's shape, the
    weights and the multiply-accumulates at ``size``×``size``."""
    blocks = {
        "basic (3×3, 3×3)": BasicBlock(channels, channels),
        "bottleneck (1×1, 3×3, 1×1)": Bottleneck(channels, channels // Bottleneck.expansion),
    }
    found = []
    for name, block in blocks.items():
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
        weights = sum(m.weight.numel() for m in convs)
        found.append(
            {
                "block": name,
                "convolutions": [
                    f"{m.kernel_size[0]}×{m.kernel_size[1]} {m.in_channels}→{m.out_channels}" for m in convs
                ],
                "weights": weights,
                "macs": weights * size * size,
            }
        )
    return found


def shortcut_comparison() -> list[dict[str, Any]]:
    """Identity (option A: subsample and zero-pad) against projection (option B: 1×1 convolution and BatchNorm)
    shortcuts where a stage doubles its channels, from the real modules of the CIFAR ResNet-20 and ResNet-56."""
    from rbench.models.cifar import CifarResNet

    found = []
    for depth in (20, 56):
        for option, name in (("A", "identity (zero-pad)"), ("B", "projection (1×1 conv + BN)")):
            model = CifarResNet(depth, shortcut=option)
            shortcuts = [model.layer2[0].downsample, model.layer3[0].downsample]
            found.append(
                {
                    "model": f"resnet{depth}",
                    "shortcut": name,
                    "option": option,
                    "shortcut_parameters": sum(p.numel() for s in shortcuts for p in s.parameters()),
                    "model_parameters": sum(p.numel() for p in model.parameters()),
                    "modules": [
                        type(s).__name__ if option == "A" else " + ".join(type(m).__name__ for m in s)
                        for s in shortcuts
                    ],
                }
            )
    return found
