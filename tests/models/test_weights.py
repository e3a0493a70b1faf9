from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from rbench.errors import BadInputError
from rbench.models import create_model
from rbench.models.weights import state_dict_sha256


def test_random_weights_have_non_trivial_batchnorm_statistics():
    model = create_model("resnet20", weights="random", seed=0)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 19
    for bn in bns:
        assert bn.running_mean.abs().max() > 0.05
        assert (bn.running_var - 1).abs().max() > 0.1
        assert (bn.weight - 1).abs().max() > 0.1
        assert bn.bias.abs().max() > 0.05


def test_random_weights_are_deterministic_per_seed():
    a = state_dict_sha256(create_model("resnet20", weights="random", seed=0).state_dict())
    b = state_dict_sha256(create_model("resnet20", weights="random", seed=0).state_dict())
    c = state_dict_sha256(create_model("resnet20", weights="random", seed=1).state_dict())
    assert a == b != c


def test_random_weights_give_different_predictions_on_different_photos():
    from rbench.data import builtin_photos, preprocess_batch
    from rbench.models import get_spec

    model = create_model("resnet18", weights="random")
    x = torch.from_numpy(preprocess_batch(builtin_photos(), get_spec("resnet18").preprocess))
    with torch.no_grad():
        top1 = model(x).argmax(1)
    assert len(set(top1.tolist())) >= 5  # of 8 photos: a collapsed network would make top-1 checks vacuous


def test_safetensors_and_weights_only_pt_round_trip(tmp_path):
    from safetensors.torch import save_file

    model = create_model("resnet20", weights="random")
    state = model.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        loaded = create_model("resnet20", weights=str(tmp_path / name)).state_dict()
        assert state_dict_sha256(loaded) == state_dict_sha256(state)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this checkpoint ran code",))


def test_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": _RunsCode()}, f)
    with pytest.raises(BadInputError, match="refusing to load .*not a weights-only checkpoint"):
        create_model("resnet20", weights=str(path))
    assert "ran code" not in capsys.readouterr().out


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, value):
    state = create_model("resnet20").state_dict()
    state["layer2.0.conv1.weight"][0, 0, 0, 0] = value
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(BadInputError, match="NaN or Inf .*layer2.0.conv1.weight"):
        create_model("resnet20", weights=str(tmp_path / "bad.pt"))


def test_weights_of_another_shape_say_which_tensor(tmp_path):
    torch.save(create_model("resnet20", num_classes=100).state_dict(), tmp_path / "w.pt")
    with pytest.raises(BadInputError) as caught:
        create_model("resnet20", weights=str(tmp_path / "w.pt"))
    message = str(caught.value)
    assert "fc.weight: file (100, 64) vs model (10, 64)" in message
    assert message.endswith("the file's classifier has 100 classes, this model's has 10")
    assert "--" not in message  # no option name: parity and run have no --num-classes


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.pt", None, "weights file not found"),
        ("w.safetensors", b"garbage", "corrupt safetensors"),
        ("w.pt", b"", "corrupt checkpoint"),
        ("w.npz", b"x", "unsupported weights file"),
        ("random.pt", bytes(range(256)) * 4, "corrupt checkpoint .*: not a PyTorch weights file"),
        ("random2.pt", b"\x80\x02" + bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8)), "corrupt"),
        ("zip.pt", b"PK\x03\x04" + bytes(100), "corrupt checkpoint"),
        (
            "rand.safetensors",
            bytes(np.random.default_rng(4).integers(0, 256, 4096, dtype=np.uint8)),
            "corrupt safetensors",
        ),
    ],
)
def test_bad_weight_files(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadInputError, match=message):
        create_model("resnet20", weights=str(path))
