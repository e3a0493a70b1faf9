"""BatchNorm folding in two levels, like ``torch/nn/utils/fusion.py``.

``fold_conv_bn_weights`` is the pure arithmetic (tensors in, tensors out). ``fold_batchnorm`` is the module pass:
it traces the model with ``torch.fx``, folds every BatchNorm whose only input is a convolution used by nothing else,
and returns a folded copy with the same module tree; the caller's model is never touched.
"""

from __future__ import annotations

import collections
import copy
import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor, fx, nn

from rbench.errors import RbenchWarning


def fold_conv_bn_weights(
    conv_w: Tensor,
    conv_b: Tensor | None,
    bn_mean: Tensor,
    bn_var: Tensor,
    bn_eps: float,
    bn_w: Tensor | None,
    bn_b: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Weights and bias of one convolution equal to ``bn(conv(x))`` in eval mode.

    ``w' = w * gamma / sqrt(var + eps)`` per output channel and ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``.
    Computed in float64 and cast back, so folding adds no rounding error of its own beyond the final cast.
    """
    dtype = conv_w.dtype
    out_channels = conv_w.shape[0]
    conv_b = conv_b if conv_b is not None else torch.zeros(out_channels, dtype=dtype)
    bn_w = bn_w if bn_w is not None else torch.ones(out_channels, dtype=dtype)
    bn_b = bn_b if bn_b is not None else torch.zeros(out_channels, dtype=dtype)
    scale = bn_w.double() * torch.rsqrt(bn_var.double() + bn_eps)
    w = conv_w.double() * scale.reshape(-1, *([1] * (conv_w.dim() - 1)))
    b = (conv_b.double() - bn_mean.double()) * scale + bn_b.double()
    return w.to(dtype), b.to(dtype)


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d (with bias) equal to ``bn(conv(x))``; neither input module is changed."""
    if conv.training or bn.training:
        raise ValueError("fold_conv_bn needs modules in eval mode: call model.eval() first")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    folded = copy.deepcopy(conv)
    w, b = fold_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
    folded.weight = nn.Parameter(w.detach(), requires_grad=conv.weight.requires_grad)
    folded.bias = nn.Parameter(b.detach(), requires_grad=conv.weight.requires_grad)
    return folded


@dataclass
class FoldResult:
    """The folded module, and which BatchNorm layers were folded and which were not."""

    module: nn.Module
    folded: list[str] = field(default_factory=list)
    unfolded: list[str] = field(default_factory=list)


def fold_batchnorm(model: nn.Module) -> FoldResult:
    """Fold every Conv2d→BatchNorm2d pair of an eval-mode model into one Conv2d with bias.

    ``torch.fx`` finds the pairs; the folding is applied to a copy of the model itself, so the module tree (and the
    ONNX node names the exporter makes from it, ``/layer1/layer1.0/conv1/Conv``) is the original's: each folded
    convolution replaced by its folded twin, each folded BatchNorm by ``nn.Identity``. A BatchNorm that does not
    directly follow a convolution, whose convolution output is also used elsewhere, or that is called more than once,
    stays as it is and is named in a warning.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs an eval-mode model: call model.eval() first")
    graph = fx.symbolic_trace(model).graph
    calls = collections.Counter(n.target for n in graph.nodes if n.op == "call_module")
    folded_model = copy.deepcopy(model)
    modules = dict(folded_model.named_modules())
    result = FoldResult(module=folded_model)
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        src = node.args[0]
        if (
            isinstance(src, fx.Node)
            and src.op == "call_module"
            and isinstance(modules[src.target], nn.Conv2d)
            and len(src.users) == 1
            and calls[src.target] == calls[node.target] == 1
        ):
            _set_submodule(folded_model, src.target, fold_conv_bn(modules[src.target], modules[node.target]))
            _set_submodule(folded_model, node.target, nn.Identity())
            result.folded.append(node.target)
        else:
            result.unfolded.append(node.target)
    if result.unfolded:
        warnings.warn(
            f"{len(result.unfolded)} BatchNorm layer(s) not folded (no Conv2d directly before them): "
            + ", ".join(result.unfolded),
            RbenchWarning,
            stacklevel=2,
        )
    return result


def _set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    parent_name, _, name = target.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, name, module)
