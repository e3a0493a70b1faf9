"""The command line end to end on a small model, and every bad input: exit code, one line, nothing half-written."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rbench._io import sha256_file
from rbench.cli import app
from rbench.errors import BadInputError
from rbench.export.onnx_export import load_onnx

cli = CliRunner()


def run(*args: str):
    return cli.invoke(app, [str(a) for a in args])


def test_export_then_parity_end_to_end(tmp_path):
    result = run("export", "--model", "resnet20", "--out", tmp_path / "artifacts")
    assert result.exit_code == 0, result.output
    artifact = Path(result.stdout.strip().splitlines()[-1])
    assert artifact.parent == tmp_path / "artifacts" and (artifact / "model.onnx").is_file()
    assert "pass" in result.stdout
    for backend in ("ort", "torch"):
        check = run("parity", artifact, "--backend", backend)
        assert check.exit_code == 0, check.output
        assert f"PASS {backend}-" in check.stdout and "photos" in check.stdout


def test_export_and_parity_json(resnet20_artifact, tmp_path):
    result = run("export", "--model", "resnet20", "--static-batch", "--simplify", "--json", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    manifest = summary["manifest"]
    assert manifest["model"]["input_shape"] == [1, 3, 32, 32] and manifest["export"]["simplify"] is True
    assert Path(summary["artifact"]).is_dir() and summary["passed"] is True
    assert summary["precisions"]["fp32"] == {
        "file": "model.onnx",
        "passed": True,
        "verdicts": {"random": "pass", "photos": "pass"},
        "kept_fp32": [],
    }
    report = json.loads(run("parity", resnet20_artifact.path, "--json").stdout)
    assert report["passed"] is True and report["inputs"]["photos"]["outputs"]["logits"]["top1"] == 1.0
    assert report["inputs"]["photos"]["verdict"] == "pass"


def test_parity_on_a_folder_of_images(resnet20_artifact, tmp_path):
    from PIL import Image
    from skimage import data

    for name in ("astronaut", "coffee"):
        Image.fromarray(getattr(data, name)()).save(tmp_path / f"{name}.png")
    report = json.loads(run("parity", resnet20_artifact.path, "--images", tmp_path, "--json").stdout)
    assert report["passed"] and report["inputs"]["photos"]["outputs"]["logits"]["top1"] == 1.0


def test_inspect_resnet50_figures():
    result = run("inspect", "resnet50", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["params"] == 25_557_032
    assert 4.08e9 < info["macs"] < 4.10e9
    assert [s["name"] for s in info["stages"]] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert info["bottleneck_256"] == {"bottleneck": 69_632, "basic": 1_179_648}
    text = run("inspect", "resnet50").stdout
    assert "25,557,032" in text and "4.09 G" in text and "69,632" in text and "1,179,648" in text


def test_doctor_never_crashes():
    import platform

    from rbench.env import cpu_model, logical_cores, package_version

    result = run("doctor", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows["python"] == platform.python_version()
    assert rows["onnxruntime"] == package_version("onnxruntime") and rows["torch"] == package_version("torch")
    assert rows["cpu"] == f"{cpu_model()}, {logical_cores()} logical cores"
    table = run("doctor").stdout
    assert package_version("onnxruntime") in table and "CPUExecutionProvider" in table
    assert rows["tensorrt"] == "not installed" or rows["tensorrt"][0].isdigit()
    assert "CPUExecutionProvider" in rows["onnxruntime providers"]
    assert {"python", "torch", "onnx", "pycuda", "openvino", "cuda", "cpu"} <= set(rows)
    if rows["tensorrt"] == "not installed":
        assert rows["tensorrt engines"] == "cannot build: tensorrt is not installed: pip install 'rbench[gpu]'"


def test_doctor_reports_a_broken_package_instead_of_crashing(monkeypatch):
    import importlib

    real = importlib.import_module

    def broken(name, *args, **kwargs):
        if name == "onnx":
            raise ImportError("libonnx.so: cannot open shared object file")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", broken)
    result = run("doctor", "--json")
    assert result.exit_code == 0, result.output
    from rbench.env import package_version

    expected = f"{package_version('onnx')} (error: ImportError: libonnx.so: cannot open shared object file)"
    assert json.loads(result.stdout)["onnx"] == expected


def test_doctor_says_why_engines_cannot_be_built_and_when_they_can(fake_trt, monkeypatch):
    import torch

    if not torch.cuda.is_available():
        rows = json.loads(run("doctor", "--json").stdout)
        assert rows["tensorrt engines"] == (
            "cannot build: no CUDA device: torch sees none (an NVIDIA GPU and its driver are needed)"
        )
    monkeypatch.setattr("rbench.runtime.trt_common.cuda_device", lambda: ("NVIDIA L4", "8.9", "13.0"))
    rows = json.loads(run("doctor", "--json").stdout)
    assert rows["tensorrt engines"] == "can build: TensorRT 11.4.0.106 on NVIDIA L4 (compute capability 8.9)"


def _evil_checkpoint(path: Path) -> Path:
    class RunsCode:
        def __reduce__(self):
            return (print, ("pwned",))

    path.write_bytes(pickle.dumps({"conv1.weight": RunsCode()}))
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet51"], "unknown model 'resnet51'; choose from"),
        (["--weights", "{tmp}/missing.pt"], "weights file not found"),
        (["--weights", "{evil}"], "not a weights-only checkpoint"),
        (["--weights", "{tmp}/garbage.safetensors"], "corrupt safetensors file"),
        (
            ["--precision", "fp32,bf8"],
            "unknown precision 'bf8'; choose from fp32, fp16, int8, int8-u8s8, int8-nncf, or all",
        ),
    ],
)
def test_export_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, message):
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 100)
    evil = _evil_checkpoint(tmp_path / "evil.pt")
    out = tmp_path / "artifacts"
    args = [a.format(tmp=tmp_path, evil=evil) for a in args]
    result = (
        run("export", "--model", "resnet20", *args, "--out", out)
        if "--model" not in args
        else run("export", *args, "--out", out)
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.output and "pwned" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_bytes(p.read_bytes()[:5000]), "is not a valid ONNX model"),
        (lambda p: p.write_bytes(b"GARBAGE" * 100), "is not a valid ONNX model"),
        (lambda p: p.unlink(), "ONNX model not found"),
    ],
    ids=["empty", "truncated", "garbage", "missing"],
)
def test_parity_on_a_corrupt_onnx_exits_2(resnet20_artifact, copy_artifact, damage, message):
    path = copy_artifact(resnet20_artifact)
    damage(path / "model.onnx")
    result = run("parity", path)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/nowhere"], "artifact directory not found"),
        (["{tmp}"], "is not an rbench artifact"),
        (["{art}", "--precision", "bf8"], "Invalid value for '--precision': 'bf8' is not one of"),
        (["{art}", "--images", "{tmp}"], "no images"),
        (
            ["{art}", "--images", "{art}/model.onnx"],
            "--images needs a folder of images (or of class folders), not a file",
        ),
        (["{art}", "--images", "{tmp}/nowhere"], "--images: folder not found"),
    ],
)
def test_parity_bad_input_exits_2(resnet20_artifact, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, art=resnet20_artifact.path) for a in args]
    result = run("parity", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1, result.stderr


def _zero_first_conv(path: Path) -> None:
    model = load_onnx(path / "model.onnx")
    init = model.graph.initializer[0]
    init.raw_data = np.zeros(len(init.raw_data) // 4, np.float32).tobytes()
    (path / "model.onnx").write_bytes(model.SerializeToString())


def test_tampered_artifact_exits_3(resnet20_artifact, copy_artifact):
    path = copy_artifact(resnet20_artifact)
    _zero_first_conv(path)
    result = run("parity", path)
    assert result.exit_code == 3, result.output
    assert "rebuild required" in result.stderr and result.stderr.count("\n") == 1


def test_parity_failure_exits_1(resnet20_artifact, copy_artifact):
    path = copy_artifact(resnet20_artifact)
    _zero_first_conv(path)  # a wrong model whose manifest is made to agree: only parity can catch it
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["precisions"]["fp32"]["sha256"] = sha256_file(path / "model.onnx")
    (path / "manifest.json").write_text(json.dumps(manifest))
    result = cli.invoke(app, ["parity", str(path)], env={"COLUMNS": "80"})
    assert result.exit_code == 1, result.output
    step, failure = result.stderr.splitlines()  # the failed step shows ✗, then one line naming every failure
    assert step.startswith("✗ running ort fp32 and the PyTorch reference")
    assert failure.startswith("parity FAILED: fp32 random/logits: max abs error ")
    assert "; fp32 photos/logits: cosine " in failure and " < 0.99999" in failure
    assert "FAIL ort-cpu-fp32 vs torch-eager-fp32 (fp32 bounds)" in result.stdout and "PASS" not in result.stdout
    assert "✗" in result.stdout  # failing cells are marked, not only coloured
    _fits_80_columns(result.stdout)


def _fits_80_columns(text: str) -> None:
    lines = text.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, text
    assert "…" not in text, text


def test_tables_read_in_an_80_column_pipe(resnet20_artifact, tmp_path):
    env = {"COLUMNS": "80"}
    parity = cli.invoke(app, ["parity", str(resnet20_artifact.path)], env=env)
    assert parity.exit_code == 0 and "random (pass)" in parity.stdout and "photos (pass)" in parity.stdout
    _fits_80_columns(parity.stdout)
    args = ["export", "--model", "resnet20", "--precision", "all", "--out", str(tmp_path)]
    export = cli.invoke(app, args, env=env)
    assert export.exit_code == 0, export.output
    _fits_80_columns(export.stdout.rsplit("\n", 2)[0])  # all but the last line, the artifact's path
    assert "PASS parity of every precision" in export.stdout
    steps = [
        "✓ converting to FP16",
        "✓ calibrating INT8, symmetric activations (percentile, 64 images from photos)",
        "✓ calibrating INT8, uint8 asymmetric activations (percentile, 64 images from",
        "✓ quantizing with NNCF (performance preset, 64 images from photos)",
        "✓ checking int8-nncf parity against PyTorch",
    ]
    assert all(step in export.stderr for step in steps), export.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_before_or_after_the_command(tmp_path, where):
    args = ["export", "--model", "resnet51", "--out", tmp_path]
    result = run("--debug", *args) if where == "before" else run(*args, "--debug")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "BadInputError: unknown model 'resnet51'" in result.stderr


def _digits_tree(root: Path, names: dict[int, str]) -> np.ndarray:
    """Digits test images as root/<class folder>/<image>.png; returns the labels in load order."""
    from PIL import Image

    from rbench.data import digits_images

    labels = []
    for label, folder in sorted(names.items(), key=lambda kv: kv[1]):
        (root / folder).mkdir(parents=True)
        found = [(n, img) for n, img in digits_images("test").items() if n.endswith(f"-{label}.png")][:3]
        for name, image in found:
            Image.fromarray(image).save(root / folder / name)
        labels += [label] * len(found)
    return np.asarray(labels)


def test_parity_on_a_labelled_folder_reports_accuracy(resnet20_artifact, tmp_path):
    from rbench.data import load_images, preprocess_batch
    from rbench.export.artifact import Artifact
    from rbench.runtime import OrtRunner

    labels = _digits_tree(tmp_path, {3: "3", 7: "7", 9: "9"})
    (tmp_path / "loose.png").write_bytes((tmp_path / "3" / next(iter(sorted(os.listdir(tmp_path / "3"))))).read_bytes())
    found = load_images(tmp_path, num_classes=10)
    images, loaded = found.images, found.labels
    assert found.mapping == "indices" and found.skipped == ["loose.png"]
    assert loaded.tolist() == labels.tolist() == [3] * 3 + [7] * 3 + [9] * 3  # numeric folders keep their index
    with OrtRunner(resnet20_artifact.path / "model.onnx") as runner:
        logits = runner.infer({"input": preprocess_batch(images, Artifact.open(resnet20_artifact.path).preprocess)})
    expected = float((logits["logits"].argmax(1) == labels).mean())
    result = run("parity", resnet20_artifact.path, "--images", tmp_path, "--json")
    report = json.loads(result.stdout)
    assert report["accuracy"]["photos"]["runner"] == pytest.approx(expected)
    assert report["accuracy"]["photos"]["reference"] == pytest.approx(expected)  # FP32: the same decisions
    shown = run("parity", resnet20_artifact.path, "--images", tmp_path)
    assert f"top-1 accuracy on 9 labelled photos: ort-cpu-fp32 {expected:.1%}" in shown.stdout
    assert "labels (folder names as class indices): 3=3, 7=7, 9=9" in shown.stderr
    assert "skipped, not in a class folder: loose.png" in shown.stderr


def test_named_class_folders_are_numbered_in_sorted_order(tmp_path):
    from rbench.data import load_images

    _digits_tree(tmp_path, {0: "zero", 1: "one"})
    found = load_images(tmp_path, num_classes=10)
    assert next(iter(found.images)).startswith("one/") and found.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert found.classes == {"one": 0, "zero": 1} and found.mapping == "sorted"


def test_class_folders_map_to_the_models_class_names(tmp_path):
    from rbench.data import load_images

    _digits_tree(tmp_path, {0: "zero", 1: "one"})
    found = load_images(tmp_path, class_names=["zero", "one", "two"], num_classes=3)
    assert found.classes == {"one": 1, "zero": 0} and found.labels.tolist() == [1, 1, 1, 0, 0, 0]
    with pytest.raises(BadInputError, match="class folder\\(s\\) one are not among the model's 2 classes"):
        load_images(tmp_path, class_names=["zero", "nine"])


@pytest.mark.parametrize(
    ("folders", "num_classes", "message"),
    [
        ({12: "12"}, 10, "class folder\\(s\\) 12 give labels outside the model's 10 classes \\(0..9\\)"),
        ({0: "a", 1: "b", 2: "c"}, 2, "class folder\\(s\\) c give labels outside the model's 2 classes"),
    ],
)
def test_labels_outside_the_models_classes_are_refused(tmp_path, folders, num_classes, message):
    from rbench.data import load_images

    _digits_tree(tmp_path, {k % 10: v for k, v in folders.items()})
    with pytest.raises(BadInputError, match=message):
        load_images(tmp_path, num_classes=num_classes)
