from __future__ import annotations

import pytest
import torch
from torch import nn

from rbench.export.fold import fold_batchnorm, fold_conv_bn, fold_conv_bn_weights
from rbench.models import create_model


def _bn_with_statistics(channels: int, seed: int = 0) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels, eps=1e-3)
    bn.running_mean.copy_(torch.randn(channels, generator=g))
    bn.running_var.copy_(torch.rand(channels, generator=g) * 3 + 0.1)
    bn.weight.data.copy_(torch.randn(channels, generator=g))
    bn.bias.data.copy_(torch.randn(channels, generator=g))
    return bn.eval()


@pytest.mark.parametrize("bias", [False, True])
def test_folded_weights_equal_conv_then_batchnorm(bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=bias).eval()
    bn = _bn_with_statistics(16)
    x = torch.randn(4, 8, 10, 10)
    w, b = fold_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
    with torch.no_grad():
        expected = bn(conv(x))
        folded = nn.functional.conv2d(x, w, b, padding=1)
        assert (expected - folded).abs().max() < 1e-5 * expected.abs().max()
        # and folding really changed the weights: identity statistics would leave them as they were
        assert (w - conv.weight).abs().max() > 0.1


def test_fold_conv_bn_leaves_its_inputs_alone():
    conv, bn = nn.Conv2d(3, 4, 1, bias=False).eval(), _bn_with_statistics(4)
    before = conv.weight.clone()
    folded = fold_conv_bn(conv, bn)
    assert folded.bias is not None and conv.bias is None
    assert torch.equal(conv.weight, before)


@pytest.mark.parametrize(("name", "count"), [("resnet50", 53), ("resnet20", 19), ("plain20", 19), ("resnet18", 20)])
def test_fold_batchnorm_is_equivalent_and_folds_every_layer(name, count):
    model = create_model(name, weights="random")
    size = 224 if name == "resnet50" else 32 if name.endswith("20") else 96
    result = fold_batchnorm(model)
    assert len(result.folded) == count and result.unfolded == []
    assert not any(isinstance(m, nn.BatchNorm2d) for m in result.module.modules())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref, out = model(x), result.module(x)
    assert (ref - out).abs().max() <= 1e-4 * ref.abs().max()


def test_fold_batchnorm_with_projection_shortcuts():
    model = create_model("resnet20", weights="random", shortcut="B")
    assert len(fold_batchnorm(model).folded) == 21


def test_fold_batchnorm_never_mutates_the_callers_model():
    model = create_model("resnet20", weights="random")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold_batchnorm(model)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 19


def test_fold_batchnorm_refuses_training_mode():
    with pytest.raises(ValueError, match="eval-mode"):
        fold_batchnorm(create_model("resnet20").train())


class _BatchNormAfterAdd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x) + x)


def test_batchnorm_that_cannot_be_folded_is_kept_and_named():
    model = _BatchNormAfterAdd().eval()
    with pytest.warns(UserWarning, match="1 BatchNorm layer\\(s\\) not folded .*: bn"):
        result = fold_batchnorm(model)
    assert result.folded == [] and result.unfolded == ["bn"]
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        assert torch.allclose(model(x), result.module(x))
