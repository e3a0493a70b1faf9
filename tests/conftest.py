"""Shared fixtures; GPU tests skip themselves where torch sees no CUDA device."""

from __future__ import annotations

from pathlib import Path

import pytest

from rbench.bench.parity import export_artifact
from rbench.export.pipeline import ExportResult, ModelConfig


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def resnet20_artifact(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    """A small exported artifact shared by tests that only read it."""
    return export_artifact(ModelConfig("resnet20"), out=tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def resnet20_all(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    """resnet20 in every exported precision (the tuned INT8 variants included), for tests that only read it."""
    from rbench.precisions import EXPORTED

    return export_artifact(ModelConfig("resnet20"), out=tmp_path_factory.mktemp("artifacts"), precisions=EXPORTED)


@pytest.fixture(scope="session")
def resnet50_artifact(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    """The default model in every precision, as `make export` makes it, once per session (about a minute)."""
    return export_artifact(
        ModelConfig("resnet50"), out=tmp_path_factory.mktemp("artifacts"), precisions=("fp32", "fp16", "int8")
    )


QUICK_RUN = ["--batch-sizes", "1,2", "--warmup-s", "0", "--duration-s", "0.05", "--min-iterations", "3"]


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory, resnet20_artifact) -> tuple[Path, object]:
    """One short ``rbench run`` of resnet20 on every CPU backend and two GPU ones (which skip), fp32, int8 (with its
    tuned variants) and bf16, for the tests that read its results: ``(results folder, CLI result)``."""
    import shutil

    from typer.testing import CliRunner

    from rbench.cli import app

    out = tmp_path_factory.mktemp("run") / "results"
    artifact = out.parent / "artifacts" / resnet20_artifact.path.name
    shutil.copytree(resnet20_artifact.path, artifact)  # run completes it in place with int8: not the shared one
    args = ["run", "--artifact", str(artifact), "--out", str(out), *QUICK_RUN, "--threads", "2"]
    args += ["--backends", "torch,ort,openvino,trt,ort-cuda", "--precision", "fp32,int8,bf16"]
    return out, CliRunner().invoke(app, args, env={"COLUMNS": "80"})


@pytest.fixture
def copy_artifact(tmp_path: Path):
    """Copy an artifact directory so a test can damage it."""
    import shutil

    def copy(result: ExportResult) -> Path:
        dst = tmp_path / result.path.name
        shutil.copytree(result.path, dst)
        return dst

    return copy


FAKE_GPU = ("NVIDIA H100 80GB HBM3", "9.0", "13.0")


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch):
    """``import tensorrt`` gives ``tests/fake_tensorrt.py`` (fresh per test); the machine still has no GPU."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("tensorrt", Path(__file__).with_name("fake_tensorrt.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module


@pytest.fixture
def fake_gpu(fake_trt, monkeypatch: pytest.MonkeyPatch):
    """The fake TensorRT on a pretend H100 (compute capability 9.0)."""
    monkeypatch.setattr("rbench.runtime.trt_common.cuda_device", lambda: FAKE_GPU)
    return fake_trt


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory):
    """resnet20 trained on digits for 6 epochs (about 20 s; about 95% validation top-1), once per session."""
    from rbench.train import TrainConfig, train

    return train(TrainConfig(model="resnet20", data="digits", epochs=6, out=str(tmp_path_factory.mktemp("runs"))))


def write_image_tree(root: Path, per_class: dict[str, int], seed: int = 0, size: int = 20) -> Path:
    """``root/<class>/<i>.png``: each class a colour of its own plus noise, learnable in a few steps."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k, (name, count) in enumerate(per_class.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        colour = np.array([(k * 97) % 256, (k * 53 + 80) % 256, (k * 151 + 20) % 256])
        for i in range(count):
            pixels = np.clip(colour + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def cli_run(*args) -> object:
    """``rbench ARGS`` in process, every argument as a string."""
    from typer.testing import CliRunner

    from rbench.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_exit_2(result, message: str) -> None:
    """Bad input: exit 2, one line on stderr naming ``message``, no traceback or escapes, nothing on stdout."""
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output and "\x1b[" not in result.stderr
    assert result.stdout == "", result.stdout
