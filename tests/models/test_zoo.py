from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rbench.errors import BadInputError
from rbench.models import create_model, get_spec, list_models, register_model
from rbench.models.cifar import PadShortcut

FIXTURES = Path(__file__).parents[1] / "fixtures"
TORCHVISION = json.loads((FIXTURES / "torchvision_resnet.json").read_text())


def _formula_module():
    spec = importlib.util.spec_from_file_location("tv_fixture", FIXTURES / "make_torchvision_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_registry_lists_every_depth_and_its_plain_twin():
    names = list_models()
    for depth in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110):
        assert f"resnet{depth}" in names and f"plain{depth}" in names
    assert len(names) == 20


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(BadInputError, match=r"unknown model 'resnet51'; choose from .*resnet50"):
        create_model("resnet51")


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet18", "imagenet", 1000, get_spec("resnet18").preprocess)(lambda: None)


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_at_a_small_size(name):
    model = create_model(name, num_classes=7)
    size = 64 if get_spec(name).family == "imagenet" else 32
    with torch.no_grad():
        y = model(torch.randn(2, 3, size, size))
    assert y.shape == (2, 7)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_state_dict_names_and_shapes_match_torchvision(name):
    ours = [(k, list(v.shape)) for k, v in create_model(name).state_dict().items()]
    assert ours == [tuple(e) for e in TORCHVISION["models"][name]["keys"]]


def test_resnet50_has_torchvisions_parameter_count():
    model = create_model("resnet50")
    assert sum(p.numel() for p in model.parameters()) == 25_557_032 == TORCHVISION["models"]["resnet50"]["parameters"]


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_state_dict_loads_strictly_and_gives_the_same_logits(name, tmp_path):
    from safetensors.numpy import save_file

    formula = _formula_module()
    keys = TORCHVISION["models"][name]["keys"]
    path = tmp_path / f"{name}.safetensors"
    save_file(formula.formula_state_dict(keys), str(path))
    model = create_model(name, weights=str(path))
    with torch.no_grad():
        logits = model(torch.from_numpy(formula.formula_input())).numpy()
    expected = np.asarray(TORCHVISION["models"][name]["logits"])
    assert np.abs(logits - expected).max() <= 1e-5 * np.abs(expected).max()
    assert (logits.argmax(1) == expected.argmax(1)).all()


def test_plain_twin_has_the_same_layers_without_shortcuts():
    residual = create_model("resnet34").state_dict()
    plain = create_model("plain34").state_dict()
    assert set(plain) == {k for k in residual if ".downsample." not in k}
    assert all(plain[k].shape == residual[k].shape for k in plain)


def test_plain_and_residual_outputs_differ_with_the_same_weights():
    residual, plain = create_model("resnet20"), create_model("plain20", weights="init")
    # option A adds no parameters, so the plain twin's state_dict is identical
    plain.load_state_dict(residual.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(residual(x), plain(x), atol=1e-3)


def test_cifar_resnet20_matches_the_paper():
    model = create_model("resnet20")
    assert sum(p.numel() for p in model.parameters()) == 269_722  # "0.27M" in He et al., table 6
    assert isinstance(model.layer2[0].downsample, PadShortcut)
    option_b = create_model("resnet20", shortcut="B")
    extra = sum(p.numel() for p in option_b.parameters()) - 269_722
    assert extra == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)  # two 1×1 projections with BatchNorm


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).reshape(2, 16, 4, 4)
    y = PadShortcut(planes=32, stride=2)(x)
    assert y.shape == (2, 32, 2, 2)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_cifar_depth_must_be_6n_plus_2():
    from rbench.models.cifar import CifarResNet

    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(21)


def test_zero_init_residual_makes_every_block_start_as_identity():
    model = create_model("resnet50", zero_init_residual=True)
    last = [block.bn3.weight for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for block in layer]
    assert len(last) == 16 and all(w.abs().sum() == 0 for w in last)
    block = model.layer1[1]
    x = torch.rand(1, 256, 8, 8)
    with torch.no_grad():
        assert torch.allclose(block(x), x)  # relu(0 + x) with x >= 0
