"""FP16 and INT8 artifacts: structure, parity on ONNX Runtime CPU, and the calibration cache."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from rbench.bench.parity import export_artifact
from rbench.errors import BadInputError
from rbench.export.artifact import Artifact
from rbench.export.onnx_export import load_onnx
from rbench.export.pipeline import ModelConfig
from rbench.export.precision import Fp16Config, Int8Config, calibration_data, calibration_key, to_int8
from rbench.models import get_spec

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


def _io_types(model: onnx.ModelProto) -> list[int]:
    return [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)]


@pytest.mark.slow  # the ResNet-50 export: a minute of the suite; `make test-all` runs it
def test_resnet50_fp16_meets_its_bounds_on_photos(resnet50_artifact):
    photos = resnet50_artifact.parity["fp16"].stats["photos"]["logits"]
    assert photos.min_cosine >= 0.9999
    assert photos.top1 == 1.0
    assert photos.max_abs <= 1e-2 * photos.ref_max_abs
    assert resnet50_artifact.parity["fp16"].passed


@pytest.mark.slow  # the ResNet-50 export: a minute of the suite; `make test-all` runs it
def test_resnet50_int8_meets_its_bounds_on_photos(resnet50_artifact):
    photos = resnet50_artifact.parity["int8"].stats["photos"]["logits"]
    assert photos.min_cosine >= 0.99
    assert photos.top1 >= 0.9
    assert resnet50_artifact.parity["int8"].passed


@pytest.mark.slow  # the ResNet-50 export: a minute of the suite; `make test-all` runs it
def test_fp16_graph_is_half_inside_and_fp32_at_its_edges(resnet50_artifact):
    model = load_onnx(resnet50_artifact.path / "model.fp16.onnx")
    assert _io_types(model) == [FLOAT, FLOAT]
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert len(conv_weights) == 53 and all(types[w] == FLOAT16 for w in conv_weights)
    assert [n.op_type for n in model.graph.node].count("Cast") == 2  # input and output only: no FP32 islands


@pytest.mark.slow  # the ResNet-50 export: a minute of the suite; `make test-all` runs it
def test_int8_has_symmetric_qdq_around_every_convolution(resnet50_artifact):
    model = load_onnx(resnet50_artifact.path / "model.int8.onnx")
    producers = {out: node for node in model.graph.node for out in node.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 53
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    first, *rest = convs  # the first convolution reads the image and stays FP32 (Int8Config.keep_first_conv)
    assert first.input[0] == "input" and inits[first.input[1]].dtype == np.float32
    for conv in rest:
        for tensor in conv.input[:2]:  # activation and weight
            dq = producers[tensor]
            assert dq.op_type == "DequantizeLinear", conv.name
            consumers = [n for n in model.graph.node if conv.output[0] in n.input]
            assert consumers and all(c.op_type in ("QuantizeLinear", "Relu", "Add") for c in consumers)
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert zero_points and all(np.all(z == 0) for z in zero_points)
    assert {z.dtype for z in zero_points} == {np.dtype(np.int8), np.dtype(np.int32)}  # int32: the biases
    # the classifier and its input stay FP32 (see INT8_FP32_OPS): no Q/DQ between the last block and the logits
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    assert gemm.input[1] in inits and inits[gemm.input[1]].dtype == np.float32
    flatten = producers[gemm.input[0]]
    pool = producers[flatten.input[0]]
    assert (flatten.op_type, pool.op_type) == ("Flatten", "GlobalAveragePool")  # pooled features never quantized


@pytest.mark.slow  # the ResNet-50 export: a minute of the suite; `make test-all` runs it
def test_manifest_records_each_precision(resnet50_artifact):
    precisions = resnet50_artifact.manifest["precisions"]
    assert list(precisions) == ["fp32", "fp16", "int8"]
    assert precisions["int8"]["settings"]["method"] == "percentile"
    assert precisions["int8"]["settings"]["calibration"] == "photos"
    assert precisions["int8"]["ops"]["QuantizeLinear"] > 50
    assert precisions["fp16"]["settings"]["keep_io_types"] is True
    assert all(p["parity"]["passed"] for p in precisions.values())


def test_fp16_io_keeps_half_inputs_and_parity_still_runs(tmp_path):
    result = export_artifact(
        ModelConfig("resnet20"),
        out=tmp_path,
        precisions=("fp32", "fp16"),
        settings={"fp16": Fp16Config(keep_io_types=False)},
    )
    assert _io_types(load_onnx(result.path / "model.fp16.onnx")) == [FLOAT16, FLOAT16]
    assert result.parity["fp16"].passed, result.parity["fp16"].failures


def test_photo_calibration_beats_noise_calibration(resnet20_artifact, tmp_path):
    """Calibrating on random noise instead of real images is measurably worse on photos."""
    from rbench.bench.parity import compare, parity_inputs
    from rbench.runtime import OrtRunner, TorchRunner

    artifact = Artifact.open(resnet20_artifact.path)
    model_path = artifact.path / "model.onnx"
    config = Int8Config(method="minmax", samples=32)
    photos = calibration_data(config, artifact.preprocess)
    noise = np.random.default_rng(0).standard_normal(photos.shape).astype(np.float32) * 3
    feed = parity_inputs(artifact.preprocess)["photos"]
    with TorchRunner(artifact.reference_model(), artifact.input_shape) as ref:
        expected = ref.infer(feed)["logits"]
    cosines = {}
    for name, data in (("photos", photos), ("noise", noise)):
        with OrtRunner(to_int8(model_path, data, config).SerializeToString()) as runner:
            cosines[name] = compare(expected, runner.infer(feed)["logits"]).min_cosine
    assert cosines["photos"] > 0.98  # measured 0.989
    assert cosines["noise"] < cosines["photos"] - 0.05  # measured 0.862


def test_calibration_cache_is_keyed_by_model_and_data(resnet20_artifact, tmp_path):
    artifact = Artifact.open(resnet20_artifact.path)
    model_path = artifact.path / "model.onnx"
    config = Int8Config(method="minmax", samples=4, cache_dir=tmp_path / "cache")
    data = calibration_data(config, artifact.preprocess)
    first = to_int8(model_path, data, config)
    assert len(list((tmp_path / "cache").iterdir())) == 1
    again = to_int8(model_path, data, config)  # a hit: same ranges
    assert len(list((tmp_path / "cache").iterdir())) == 1
    assert first.SerializeToString() == again.SerializeToString()
    to_int8(model_path, data[::-1].copy(), config)  # other data: recalibrated
    other_model = tmp_path / "other.onnx"
    other_model.write_bytes((resnet20_artifact.path / "model.onnx").read_bytes() + b"")
    onnx.save(_perturbed(load_onnx(model_path)), str(other_model))
    to_int8(other_model, data, config)  # other model: recalibrated
    assert len(list((tmp_path / "cache").iterdir())) == 3
    keys = {
        calibration_key(model_path, data, config),
        calibration_key(model_path, data[::-1].copy(), config),
        calibration_key(other_model, data, config),
        calibration_key(model_path, data, Int8Config(method="percentile")),
    }
    assert len(keys) == 4
    u8s8 = Int8Config(method="minmax", samples=4, cache_dir=tmp_path / "cache", activations="uint8")
    shared = to_int8(model_path, data, u8s8)  # the same ranges (a hit), made asymmetric uint8 by the quantizer
    assert len(list((tmp_path / "cache").iterdir())) == 3
    inits = {i.name: i for i in shared.graph.initializer}
    zero_points = [inits[n.input[2]] for n in shared.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.data_type == onnx.TensorProto.UINT8 for z in zero_points)


def _perturbed(model: onnx.ModelProto) -> onnx.ModelProto:
    init = model.graph.initializer[0]
    values = onnx.numpy_helper.to_array(init) * 1.01
    init.CopyFrom(onnx.numpy_helper.from_array(values, init.name))
    return model


def test_calibration_from_a_folder_and_from_digits(tmp_path):
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "a.png")
    spec = get_spec("resnet20")
    folder = calibration_data(Int8Config(calibration=str(tmp_path), samples=3), spec.preprocess)
    assert folder.shape == (3, 3, 32, 32) and folder.std() > 0.1
    digits = calibration_data(Int8Config(calibration="digits", samples=5), spec.preprocess)
    assert digits.shape == (5, 3, 32, 32) and not np.allclose(digits[0], digits[1])
    classes = tmp_path / "classes"  # the same layout --images takes: DIR/<class>/<image>
    for name in ("cat", "rocket"):
        (classes / name).mkdir(parents=True)
        Image.fromarray(getattr(data, "chelsea" if name == "cat" else name)()).save(classes / name / "x.png")
    tree = calibration_data(Int8Config(calibration=str(classes), samples=2), spec.preprocess)
    assert tree.shape == (2, 3, 32, 32) and not np.allclose(tree[0], tree[1])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (Int8Config(method="kl"), "unknown calibration method 'kl'"),
        (Int8Config(samples=0), "--calib-samples must be between 1 and 100000, got 0"),
        (Int8Config(calibration="/no/such/folder"), "not found: /no/such/folder"),
    ],
)
def test_bad_int8_settings_are_bad_input(tmp_path, config, message):
    with pytest.raises(BadInputError, match=message):
        export_artifact(
            ModelConfig("resnet20"), out=tmp_path / "a", precisions=("fp32", "int8"), settings={"int8": config}
        )
    assert not (tmp_path / "a").exists()
