from __future__ import annotations

import json

import numpy as np
import pytest

from rbench._io import sha256_file
from rbench.bench.parity import export_artifact
from rbench.errors import ArtifactError, BadInputError
from rbench.export.artifact import Artifact
from rbench.export.onnx_export import load_onnx, op_histogram
from rbench.export.pipeline import ModelConfig


@pytest.mark.slow  # the ResNet-50 export: a minute of the suite; `make test-all` runs it
def test_resnet50_artifact_meets_the_parity_bound_on_photos(resnet50_artifact):
    """ONNX Runtime vs unfolded eager PyTorch: max error <= 1e-4 x max|logit| and 100% top-1 on real photos."""
    photos = resnet50_artifact.parity["fp32"].stats["photos"]["logits"]
    assert photos.max_abs <= 1e-4 * photos.ref_max_abs
    assert photos.top1 == 1.0 and photos.nan == 0
    assert resnet50_artifact.passed


@pytest.mark.slow  # the ResNet-50 export: a minute of the suite; `make test-all` runs it
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


def test_missing_precision_hint_rebuilds_the_same_artifact(resnet20_artifact, copy_artifact):
    """Following the hint adds the precision to this very artifact (same weights, folder and digest)."""
    import shlex

    from typer.testing import CliRunner

    from rbench.cli import app

    path = copy_artifact(resnet20_artifact)
    with pytest.raises(
        BadInputError, match="has no fp16 model \\(it has fp32\\); export it with: rbench export "
    ) as caught:
        Artifact.open(path).onnx_path("fp16")
    hint = str(caught.value).split("export it with: ", 1)[1]
    assert f"--weights {path / 'weights.safetensors'}" in hint and f"--out {path.parent}" in hint
    result = CliRunner().invoke(app, shlex.split(hint)[1:])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(path)
    rebuilt = Artifact.open(path)
    assert rebuilt.precisions == ["fp32", "fp16"]
    assert rebuilt.manifest["weights"]["sha256"] == resnet20_artifact.manifest["weights"]["sha256"]
    assert rebuilt.manifest["weights"]["source"] == "random"  # the same weights keep the name they were given


def test_directory_without_manifest_is_not_an_artifact(tmp_path):
    with pytest.raises(BadInputError, match="not an rbench artifact"):
        Artifact.open(tmp_path)


def test_precisions_accumulate_and_a_changed_setting_replaces_with_a_notice(tmp_path):
    from rbench._io import sha256_file
    from rbench.export.precision import Int8Config

    first = export_artifact(ModelConfig("resnet20"), out=tmp_path, precisions=("fp32", "fp16", "int8"))
    (first.path / "engines").mkdir()
    (first.path / "engines" / "model.fp16.engine").write_bytes(b"an engine")  # what rbench build left
    fp16_digest = sha256_file(first.path / "model.fp16.onnx")

    again = export_artifact(ModelConfig("resnet20"), out=tmp_path, precisions=("int8",))
    assert again.path == first.path and Artifact.open(again.path).precisions == ["fp32", "fp16", "int8"]
    assert sha256_file(again.path / "model.fp16.onnx") == fp16_digest
    assert (again.path / "engines" / "model.fp16.engine").read_bytes() == b"an engine"
    assert again.notices == ["kept model.int8.onnx: made with the same settings"]
    assert set(again.parity) == {"fp32", "fp16", "int8"} and again.passed  # every precision checked again

    minmax = Int8Config(method="minmax")
    changed = export_artifact(ModelConfig("resnet20"), out=tmp_path, precisions=("int8",), settings={"int8": minmax})
    assert changed.notices == ["replaced model.int8.onnx: settings changed (method 'percentile' -> 'minmax')"]
    manifest = Artifact.open(changed.path).manifest
    assert manifest["precisions"]["int8"]["settings"]["method"] == "minmax"
    assert manifest["precisions"]["fp16"]["settings"] == {"keep_io_types": True, "op_block_list": []}
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [first.path.name]


def test_export_without_a_parity_check_writes_the_artifact_unchecked(tmp_path):
    from rbench.export.pipeline import export_artifact as export_only

    result = export_only(ModelConfig("resnet20"), out=tmp_path)
    assert result.parity == {} and result.passed
    assert "parity" not in Artifact.open(result.path).manifest["precisions"]["fp32"]


def test_stale_temp_folders_of_dead_processes_are_removed(tmp_path):
    import os

    dead = tmp_path / ".tmp-resnet20-pid999999999-abc"
    alive = tmp_path / f".tmp-resnet20-pid{os.getpid()}-abc"
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half-written")
    result = export_artifact(ModelConfig("resnet20"), out=tmp_path)
    assert not dead.exists() and alive.exists()  # a live process's folder is its own business
    assert result.notices == [f"removed {dead.name}, left by an export that was killed"]


def test_sigterm_mid_export_leaves_nothing_behind(tmp_path):
    """The CLI turns SIGTERM into a clean exit: the temporary folder goes, the output folder stays empty."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "artifacts"
    code = (
        "import sys, dataclasses, rbench.export.converters as p\n"
        "def slow(*a, **k):\n"
        "    print('converting', flush=True)\n"
        "    import time; time.sleep(60)\n"
        "p.CONVERTERS['fp16'] = dataclasses.replace(p.CONVERTERS['fp16'], convert=slow)\n"
        "from rbench.cli import app\n"
        f"sys.argv = ['rbench', 'export', '--model', 'resnet20', '--precision', 'fp16', '--out', {str(out)!r}]\n"
        "app()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "converting"
    assert any(p.name.startswith(".tmp-") for p in out.iterdir())  # mid-export: the temp folder exists
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "terminated" in stderr
    assert not out.exists() or list(out.iterdir()) == []


def test_a_bn_that_cannot_be_folded_is_reported_on_the_command_line(tmp_path, monkeypatch):
    """rbench's own warnings reach the user even though library noise is hidden."""
    from typer.testing import CliRunner

    import rbench.export.pipeline as pipeline
    from rbench.cli import app
    from rbench.export.fold import fold_batchnorm

    def fold_with_warning(model):
        import warnings

        from rbench.errors import RbenchWarning

        warnings.warn("1 BatchNorm layer(s) not folded (no Conv2d directly before them): bn9", RbenchWarning, 2)
        warnings.warn("a library's deprecation notice", DeprecationWarning, 2)
        return fold_batchnorm(model)

    monkeypatch.setattr(pipeline, "fold_batchnorm", fold_with_warning)
    result = CliRunner().invoke(app, ["export", "--model", "resnet20", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "warning: 1 BatchNorm layer(s) not folded (no Conv2d directly before them): bn9" in result.stderr
    assert "deprecation" not in result.stderr
