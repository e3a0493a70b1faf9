"""Each backend's own INT8 beside the portable graph: ONNX Runtime's U8S8 QDQ, NNCF's OpenVINO IR, and PyTorch's
PT2E path; the portable graph stays symmetric for TensorRT."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from rbench.export.artifact import Artifact
from rbench.models import ModelConfig


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    from rbench.export.pipeline import export_artifact

    out = tmp_path_factory.mktemp("variants")
    return export_artifact(ModelConfig("resnet20"), out=out, precisions=("fp32", "int8", "int8-u8s8", "int8-nncf"))


def _zero_points(path) -> list[np.ndarray]:
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]


def test_the_portable_graph_stays_symmetric_and_the_ort_one_uses_uint8_activations(variants):
    portable = _zero_points(variants.path / "model.int8.onnx")
    tuned = _zero_points(variants.path / "model.int8-u8s8.onnx")
    assert portable and all(z.dtype == np.int8 and not z.any() for z in portable)  # TensorRT: zero-point 0
    # uint8 throughout: post-ReLU tensors use every code from zero-point 0, the signed ones (into the adds) shift it
    assert tuned and all(z.dtype == np.uint8 for z in tuned) and 0 < sum(bool(z.any()) for z in tuned) < len(tuned)
    settings = variants.manifest["precisions"]["int8-u8s8"]["settings"]
    assert settings["activations"] == "uint8" and settings["keep_fp32_ops"] == ["Gemm", "GlobalAveragePool", "Flatten"]
    same = ("calibration", "samples", "seed", "method", "calibration_sha256")
    assert all(settings[k] == variants.manifest["precisions"]["int8"]["settings"][k] for k in same)


def test_the_nncf_ir_is_recorded_with_its_weights_and_verified(variants, tmp_path):
    import shutil

    from rbench.errors import ArtifactError

    entry = variants.manifest["precisions"]["int8-nncf"]
    assert entry["file"] == "model.int8-nncf.xml" and list(entry["extra_files"]) == ["model.int8-nncf.bin"]
    assert entry["settings"]["quantizer"] == "nncf" and entry["ops"]["FakeQuantize"] >= 18
    copy = tmp_path / variants.path.name
    shutil.copytree(variants.path, copy)
    weights = copy / "model.int8-nncf.bin"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ArtifactError, match="model.int8-nncf.bin .* was modified after export"):
        Artifact.open(copy).verify()


def test_pt2e_needs_each_relu_call_separated(variants):
    """The cause of X86InductorQuantizer's "Input partition has more than one output node": a block calls its one
    ``relu`` module twice, and ``torch.export`` records both calls under one module path."""
    import torch
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from rbench.runtime.torch_runner import separate_module_calls

    model = Artifact.open(variants.path).folded_model()
    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())

    def exported():
        return torch.export.export(model, (torch.zeros(2, 3, 32, 32),)).module()

    with pytest.raises(ValueError, match="Input partition has more than one output node"):
        prepare_pt2e(exported(), quantizer)
    prepared = prepare_pt2e(separate_module_calls(exported()), quantizer)
    observers = [n for n, _ in prepared.named_children() if n.startswith("activation_post_process")]
    assert len(observers) >= 19  # every convolution's input observed: the conv-add-relu patterns were annotated
    assert [k for k in model.state_dict() if "relu" in k] == []  # nothing renamed in the model itself


def test_every_int8_row_passes_parity_and_names_its_file(variants, tmp_path):
    from typer.testing import CliRunner

    from rbench.cli import app

    args = ["run", "--artifact", str(variants.path), "--backends", "torch-compile,ort,openvino", "--precision"]
    args += ["int8", "--batch-sizes", "2", "--warmup-s", "0", "--duration-s", "0.1", "--out", str(tmp_path), "--json"]
    args += ["--no-peak"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {r["label"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"] if not r["baseline"]}
    assert {label: r["file"] for label, r in rows.items()} == {
        "torch-compile folded int8": "weights.safetensors",
        "ort cpu int8": "model.int8.onnx",
        "ort cpu int8-u8s8": "model.int8-u8s8.onnx",
        "openvino cpu int8": "model.int8.onnx",
        "openvino cpu int8-nncf": "model.int8-nncf.xml",
    }
    assert all(r["parity"]["passed"] and r["executed_precision"] == "int8" for r in rows.values())
    assert rows["ort cpu int8-u8s8"]["parity"]["cosine"] >= rows["ort cpu int8"]["parity"]["cosine"]
    assert rows["torch-compile folded int8"]["executed"].startswith("int8 PT2E graph")
    assert rows["torch-compile folded int8"]["settings"]["kept_fp32"] == ["conv1"]
    assert rows["openvino cpu int8-nncf"]["executed"].startswith("conv u8 x")
