from __future__ import annotations

import json

import numpy as np
import pytest

from rbench._io import sha256_file
from rbench.errors import ArtifactError, BadInputError
from rbench.export.artifact import Artifact
from rbench.export.onnx_export import load_onnx, op_histogram
from rbench.export.pipeline import ModelConfig, export_artifact


def test_resnet50_artifact_meets_the_parity_bound_on_photos(resnet50_artifact):
    """ONNX Runtime vs unfolded eager PyTorch: max error <= 1e-4 x max|logit| and 100% top-1 on real photos."""
    photos = resnet50_artifact.parity["fp32"].stats["photos"]["logits"]
    assert photos.max_abs <= 1e-4 * photos.ref_max_abs
    assert photos.top1 == 1.0 and photos.nan == 0
    assert resnet50_artifact.passed


def test_resnet50_manifest_is_complete(resnet50_artifact):
    path, manifest = resnet50_artifact.path, resnet50_artifact.manifest
    assert path.name.startswith("resnet50-") and len(path.name) == len("resnet50-") + 12
    on_disk = json.loads((path / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["model"]["name"] == "resnet50" and manifest["model"]["num_classes"] == 1000
    assert manifest["model"]["input_shape"] == ["batch", 3, 224, 224]
    assert manifest["model"]["preprocess"]["mean"] == [0.485, 0.456, 0.406]
    assert manifest["model"]["parameters"] == 25_557_032
    assert manifest["export"]["opset"] == 17 and manifest["export"]["bn_folded"] == 53
    assert set(manifest["versions"]) >= {"torch", "onnx", "onnxruntime", "python"}
    fp32 = manifest["precisions"]["fp32"]
    assert fp32["sha256"] == sha256_file(path / "model.onnx")
    assert manifest["weights"]["file_sha256"] == sha256_file(path / "weights.safetensors")
    assert len(manifest["weights"]["sha256"]) == 64
    assert fp32["ops"] == op_histogram(load_onnx(path / "model.onnx"))
    assert fp32["ops"]["Conv"] == 53 and "BatchNormalization" not in fp32["ops"]
    assert fp32["parity"]["passed"] and set(fp32["parity"]["inputs"]) == {"random", "photos"}


def test_resnet18_parity_on_ort(tmp_path):
    result = export_artifact(ModelConfig("resnet18"), out=tmp_path)
    for stats in result.parity["fp32"].stats.values():
        assert stats["logits"].max_abs <= 1e-4 * stats["logits"].ref_max_abs
        assert stats["logits"].min_cosine > 0.99999


def test_resnet20_parity_on_ort(resnet20_artifact):
    for stats in resnet20_artifact.parity["fp32"].stats.values():
        assert stats["logits"].max_abs <= 1e-4 * stats["logits"].ref_max_abs
        assert stats["logits"].top1 == 1.0


def test_export_is_reproducible_and_replaces_the_same_directory(tmp_path):
    first = export_artifact(ModelConfig("resnet20"), out=tmp_path)
    second = export_artifact(ModelConfig("resnet20"), out=tmp_path)
    assert first.path == second.path
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]


def test_failed_export_leaves_nothing_behind(tmp_path):
    out = tmp_path / "artifacts"
    with pytest.raises(BadInputError):
        export_artifact(ModelConfig("resnet20", weights=str(tmp_path / "missing.pt")), out=out)
    assert not out.exists()
    out.mkdir()
    with pytest.raises(BadInputError):
        export_artifact(ModelConfig("resnet20"), out=out, precisions=("fp32", "bf8"))
    assert list(out.iterdir()) == []


def test_tampered_onnx_is_refused_with_rebuild_required(resnet20_artifact, copy_artifact):
    path = copy_artifact(resnet20_artifact)
    model = load_onnx(path / "model.onnx")
    model.graph.initializer[0].raw_data = np.zeros(1, np.float32).tobytes() * (
        len(model.graph.initializer[0].raw_data) // 4
    )
    (path / "model.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(ArtifactError, match="rebuild required: model.onnx .* was modified after export"):
        Artifact.open(path).onnx_path("fp32")


def test_missing_precision_says_how_to_export_it(resnet20_artifact):
    with pytest.raises(BadInputError, match="has no int8 model .*rbench export --model resnet20 --precision int8"):
        Artifact.open(resnet20_artifact.path).onnx_path("int8")


def test_directory_without_manifest_is_not_an_artifact(tmp_path):
    with pytest.raises(BadInputError, match="not an rbench artifact"):
        Artifact.open(tmp_path)
