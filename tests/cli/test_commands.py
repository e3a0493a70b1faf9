"""The command line end to end on a small model, and every bad input: exit code, one line, nothing half-written."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rbench._io import sha256_file
from rbench.cli import app
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
    assert summary["model"]["input_shape"] == [1, 3, 32, 32] and summary["export"]["simplify"] is True
    assert Path(summary["artifact"]).is_dir()
    report = json.loads(run("parity", resnet20_artifact.path, "--json").stdout)
    assert report["passed"] is True and report["inputs"]["photos"]["logits"]["top1"] == 1.0


def test_parity_on_a_folder_of_images(resnet20_artifact, tmp_path):
    from PIL import Image
    from skimage import data

    for name in ("astronaut", "coffee"):
        Image.fromarray(getattr(data, name)()).save(tmp_path / f"{name}.png")
    report = json.loads(run("parity", resnet20_artifact.path, "--images", tmp_path, "--json").stdout)
    assert report["passed"] and report["inputs"]["photos"]["logits"]["top1"] == 1.0


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
    result = run("doctor", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows["tensorrt"] == "not installed" or rows["tensorrt"][0].isdigit()
    assert "CPUExecutionProvider" in rows["onnxruntime providers"]
    assert {"python", "torch", "onnx", "pycuda", "openvino", "cuda", "cpu"} <= set(rows)
    if rows["tensorrt"] == "not installed":
        assert rows["tensorrt engines"] == "cannot build: tensorrt is not installed: pip install 'rbench[gpu]'"


def test_doctor_says_why_engines_cannot_be_built_and_when_they_can(fake_trt, monkeypatch):
    import torch

    if not torch.cuda.is_available():
        rows = json.loads(run("doctor", "--json").stdout)
        assert rows["tensorrt engines"] == (
            "cannot build: no CUDA device: TensorRT needs an NVIDIA GPU and its driver, and torch sees none"
        )
    monkeypatch.setattr("rbench.runtime.trt_common._cuda_device", lambda: ("NVIDIA L4", "8.9", "13.0"))
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
        (["--model", "resnet51"], "unknown model 'resnet51'; valid models:"),
        (["--weights", "{tmp}/missing.pt"], "weights file not found"),
        (["--weights", "{evil}"], "not a weights-only checkpoint"),
        (["--weights", "{tmp}/garbage.safetensors"], "corrupt safetensors file"),
        (["--precision", "fp32,bf8"], "unsupported precision 'bf8'"),
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
        (["{art}", "--precision", "bf8"], "'bf8' is not one of"),
        (["{art}", "--images", "{tmp}"], "no images"),
    ],
)
def test_parity_bad_input_exits_2(resnet20_artifact, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, art=resnet20_artifact.path) for a in args]
    result = run("parity", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


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
    result = run("parity", path)
    assert result.exit_code == 1, result.output
    assert "parity FAILED" in result.stderr and "max abs error" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = run("--debug", "export", "--model", "resnet51", "--out", tmp_path)
    assert result.exit_code != 0 and result.exc_info is not None
    assert type(result.exception).__name__ == "BadInputError"


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
    from rbench.data import load_labelled_folder, preprocess_batch
    from rbench.export.artifact import Artifact
    from rbench.runtime import OrtRunner

    labels = _digits_tree(tmp_path, {3: "3", 7: "7", 9: "9"})
    images, loaded = load_labelled_folder(tmp_path)
    assert loaded.tolist() == labels.tolist() == [3] * 3 + [7] * 3 + [9] * 3  # numeric folders keep their index
    with OrtRunner(resnet20_artifact.path / "model.onnx") as runner:
        logits = runner.infer({"input": preprocess_batch(images, Artifact.open(resnet20_artifact.path).preprocess)})
    expected = float((logits["logits"].argmax(1) == labels).mean())
    result = run("parity", resnet20_artifact.path, "--images", tmp_path, "--json")
    report = json.loads(result.stdout)
    assert report["accuracy"]["photos"]["runner"] == pytest.approx(expected)
    assert report["accuracy"]["photos"]["reference"] == pytest.approx(expected)  # FP32: the same decisions
    table = run("parity", resnet20_artifact.path, "--images", tmp_path).stdout
    assert f"top-1 accuracy on 9 labelled photos: ort-cpu-fp32 {expected:.1%}" in table


def test_named_class_folders_are_numbered_in_sorted_order(tmp_path):
    from rbench.data import load_labelled_folder

    _digits_tree(tmp_path, {0: "zero", 1: "one"})
    images, labels = load_labelled_folder(tmp_path)
    assert next(iter(images)).startswith("one/") and labels.tolist() == [0, 0, 0, 1, 1, 1]
