"""The GPU backends: the Runner contract, real TensorRT engines of the default ResNet-50 and their parity.

Marked ``gpu``: skipped without CUDA (``tests/conftest.py``), and the TensorRT ones without ``tensorrt`` too.
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from rbench.bench.parity import artifact_parity
from rbench.bench.plan import runner_for
from rbench.errors import BadInputError, EnvironmentProblem
from rbench.export.artifact import Artifact
from rbench.export.engine import BuildConfig, build_engine
from rbench.runtime import TrtRunner

pytestmark = pytest.mark.gpu
GPU_BACKENDS = ("ort-cuda", "ort-trt", "trt")
PRECISIONS = ("fp32", "fp16", "int8")


def _needs_tensorrt() -> None:
    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip("needs tensorrt: pip install 'rbench[gpu]'")


@pytest.fixture(scope="module")
def timing_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("timing")


def _copy(result, tmp_path_factory) -> Artifact:
    """Engines go into a copy, so the session's shared artifacts stay as export made them."""
    destination = tmp_path_factory.mktemp("gpu") / result.path.name
    shutil.copytree(result.path, destination)
    return Artifact.open(destination)


@pytest.fixture(scope="module")
def resnet50_engines(resnet50_artifact, timing_dir, tmp_path_factory):
    _needs_tensorrt()
    artifact = _copy(resnet50_artifact, tmp_path_factory)
    return artifact, {p: build_engine(artifact, BuildConfig(p, timing_cache_dir=timing_dir)) for p in PRECISIONS}


@pytest.fixture(scope="module")
def resnet20(resnet20_artifact, tmp_path_factory) -> Artifact:
    return _copy(resnet20_artifact, tmp_path_factory)


@pytest.fixture(scope="module")
def resnet20_engine(resnet20, timing_dir):
    _needs_tensorrt()
    return build_engine(resnet20, BuildConfig("fp32", max_batch=16, timing_cache_dir=timing_dir))


@pytest.fixture(params=GPU_BACKENDS)
def gpu_runner(request, resnet20):
    if request.param == "trt":
        request.getfixturevalue("resnet20_engine")
    else:
        _needs_onnxruntime_gpu()
    runner = runner_for(resnet20, request.param, "fp32")
    runner.activate()  # installed but broken (a provider missing, a library not loading) fails, never skips
    runner.deactivate()
    return runner


def _needs_onnxruntime_gpu() -> None:
    from importlib import metadata

    try:
        metadata.version("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        pytest.skip("needs onnxruntime-gpu: pip install 'rbench[gpu]'")


def _good(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, 32, 32), dtype=np.float32)


def test_gpu_lifecycle(gpu_runner):
    with gpu_runner:
        out = gpu_runner.infer({"input": _good()})
        assert list(out) == ["logits"] and out["logits"].shape == (2, 10) and out["logits"].dtype == np.float32
    assert not gpu_runner.is_active and gpu_runner.device == "cuda"


@pytest.mark.parametrize(
    ("feed", "message"),
    [
        ({"image": _good()}, r"expected inputs \['input'\], got \['image'\]"),
        ({"input": _good().astype(np.float64)}, r"input 'input' has dtype float64, expected float32"),
        ({"input": _good()[:, :, :16]}, r"input 'input' has shape \[2, 3, 16, 32\]"),
        ({"input": np.full((1, 3, 32, 32), np.nan, np.float32)}, r"3072 NaN/Inf value\(s\)"),
    ],
    ids=["name", "dtype", "shape", "nan"],
)
def test_gpu_bad_input_is_rejected_like_everywhere_else(gpu_runner, feed, message):
    with gpu_runner, pytest.raises(BadInputError, match=message):
        gpu_runner.infer(feed)


def test_engines_build_for_every_precision_and_a_second_build_hits_the_cache(resnet50_engines, timing_dir):
    artifact, built = resnet50_engines
    for precision, result in built.items():
        assert result.engine.is_file() and result.sidecar["settings"]["precision"] == precision
    again = build_engine(artifact, BuildConfig("fp16", timing_cache_dir=timing_dir))
    assert again.cached and again.engine.read_bytes() == built["fp16"].engine.read_bytes()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_trt_parity_on_the_photos(resnet50_engines, precision):
    artifact, _ = resnet50_engines
    report = artifact_parity(artifact, "trt", precision)
    assert report.passed, report.failures
    photos = report.stats["photos"]["logits"]
    if precision == "fp16":
        assert photos.min_cosine >= 0.9995 and photos.top1 >= 0.99


def test_cuda_graph_replays_give_the_same_outputs(resnet50_engines):
    _, built = resnet50_engines
    x = {"input": np.random.default_rng(1).standard_normal((4, 3, 224, 224), dtype=np.float32)}
    with TrtRunner(built["fp16"].engine) as plain:
        expected = plain.infer(x)["logits"]
    with TrtRunner(built["fp16"].engine, cuda_graph=True) as graphed:
        for _ in range(3):  # first run, capture, replays
            np.testing.assert_allclose(graphed.infer(x)["logits"], expected, rtol=1e-3, atol=1e-3)


def test_an_active_engine_refuses_a_batch_outside_its_profile(resnet20_engine):
    message = r"batch size 17, outside the engine's optimization profile \[1, 16\]"
    with TrtRunner(resnet20_engine.engine, precision="fp32") as runner, pytest.raises(BadInputError, match=message):
        runner.infer({"input": _good(17)})


def test_pycuda_memory_matches_torch_memory(resnet20_engine):
    if importlib.util.find_spec("pycuda") is None:
        pytest.skip("pycuda is not installed")
    x = {"input": _good(4)}
    with TrtRunner(resnet20_engine.engine, precision="fp32", memory="torch") as a:
        expected = a.infer(x)["logits"]
    with TrtRunner(resnet20_engine.engine, precision="fp32", memory="pycuda") as b:
        np.testing.assert_allclose(b.infer(x)["logits"], expected, rtol=1e-5, atol=1e-5)


def test_ort_cuda_parity_with_io_binding(resnet20):
    try:
        report = artifact_parity(resnet20, "ort-cuda", "fp32")
    except EnvironmentProblem as exc:
        pytest.skip(str(exc))
    assert report.passed, report.failures
