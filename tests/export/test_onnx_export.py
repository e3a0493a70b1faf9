from __future__ import annotations

import onnx
import pytest

from rbench.errors import BadInputError
from rbench.export.fold import fold_batchnorm
from rbench.export.onnx_export import ExportConfig, export_onnx, load_onnx, op_histogram
from rbench.models import create_model, get_spec


def _export(name: str, config: ExportConfig = ExportConfig(), **kwargs) -> onnx.ModelProto:
    module = fold_batchnorm(create_model(name, weights="random", **kwargs)).module
    return export_onnx(module, get_spec(name).input_shape, config)


@pytest.mark.parametrize(("name", "convs"), [("resnet18", 20), ("resnet20", 19), ("plain20", 19)])
def test_export_has_no_batchnorm_and_every_conv(name, convs):
    model = _export(name)
    ops = op_histogram(model)
    assert "BatchNormalization" not in ops
    assert ops["Conv"] == convs
    assert model.opset_import[0].version == 17


def test_batch_is_dynamic_by_default_and_static_on_request():
    dims = lambda m, i: [d.dim_param or d.dim_value for d in m.graph.input[i].type.tensor_type.shape.dim]
    dynamic = _export("resnet20")
    assert dims(dynamic, 0) == ["batch", 3, 32, 32]
    assert dynamic.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    static = _export("resnet20", ExportConfig(dynamic_batch=False))
    assert dims(static, 0) == [1, 3, 32, 32]
    assert [i.name for i in static.graph.input] == ["input"] and [o.name for o in static.graph.output] == ["logits"]


def test_opset_is_configurable():
    assert _export("resnet20", ExportConfig(opset=13)).opset_import[0].version == 13


def test_simplify_removes_the_shape_arithmetic_of_option_a_shortcuts():
    plain_export, simplified = _export("resnet20"), _export("resnet20", ExportConfig(simplify=True))
    assert len(simplified.graph.node) < len(plain_export.graph.node)
    assert op_histogram(simplified)["Conv"] == 19
    assert "Constant" not in op_histogram(simplified)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\x08\x07garbage that is not protobuf \xff\xfe", "not a valid ONNX model"),
    ],
)
def test_load_onnx_rejects_corrupt_files(tmp_path, content, message):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match=message):
        load_onnx(path)


def test_load_onnx_rejects_a_truncated_model(tmp_path):
    data = _export("resnet20").SerializeToString()
    path = tmp_path / "model.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="not a valid ONNX model"):
        load_onnx(path)


def test_load_onnx_missing_file(tmp_path):
    with pytest.raises(BadInputError, match="ONNX model not found"):
        load_onnx(tmp_path / "nope.onnx")
