"""Every backend honours the same Runner contract and rejects bad input with the same message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rbench.bench.plan import runner_for
from rbench.errors import BadInputError, EnvironmentProblem
from rbench.export.artifact import Artifact
from rbench.runtime import BACKENDS, OrtRunner, TorchRunner

# One factory per backend that runs on a CPU; the GPU-only backends have their contract tests in test_gpu_backends.py.
CPU_BACKENDS = ("torch", "torch-compile", "ort", "openvino")


def test_every_backend_has_a_contract_test():
    from test_gpu_backends import GPU_BACKENDS

    assert set(BACKENDS) == set(CPU_BACKENDS) | set(GPU_BACKENDS)
    assert not set(CPU_BACKENDS) & set(GPU_BACKENDS)


@pytest.fixture(params=CPU_BACKENDS)
def runner(request, resnet20_artifact):
    return runner_for(Artifact.open(resnet20_artifact.path), request.param)


def _good() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)


def test_lifecycle(runner):
    assert not runner.is_active
    with pytest.raises(RuntimeError, match="not active"):
        runner.infer({"input": _good()})
    with runner:
        assert runner.is_active
        out = runner.infer({"input": _good()})
        assert list(out) == ["logits"] and out["logits"].shape == (2, 10) and out["logits"].dtype == np.float32
        assert [s.name for s in runner.input_specs()] == ["input"]
    assert not runner.is_active
    assert runner.precision == "fp32" and runner.device == "cpu"


@pytest.mark.parametrize(
    ("feed", "message"),
    [
        (
            {"image": _good()},
            r"expected inputs \['input'\], got \['image'\]; inputs are input: float32\[batch, 3, 32, 32\]",
        ),
        ({"input": _good().astype(np.float64)}, r"input 'input' has dtype float64, expected float32"),
        (
            {"input": _good()[:, :, :16]},
            r"input 'input' has shape \[2, 3, 16, 32\], expected input: float32\[batch, 3, 32, 32\]",
        ),
        ({"input": _good()[0]}, r"input 'input' has shape \[3, 32, 32\]"),
        ({"input": _good()[:0]}, r"input 'input' has batch size 0; need at least 1"),
        ({"input": np.full((1, 3, 32, 32), np.nan, np.float32)}, r"input 'input' has 3072 NaN/Inf value\(s\)"),
        ({"input": _good().tolist()}, r"input 'input' must be a numpy array, got list"),
    ],
    ids=["name", "dtype", "shape", "rank", "batch0", "nan", "not-array"],
)
def test_bad_input_is_rejected_the_same_way_by_every_backend(runner, feed, message):
    with runner, pytest.raises(BadInputError, match=message):
        runner.infer(feed)


def test_torch_folded_and_channels_last_agree_with_eager(resnet20_artifact):
    artifact = Artifact.open(resnet20_artifact.path)
    model = artifact.reference_model()
    x = {"input": _good()}
    with TorchRunner(model, (3, 32, 32)) as eager:
        ref = eager.infer(x)["logits"]
    from rbench.export.fold import fold_batchnorm

    folded = fold_batchnorm(model).module
    for source, kwargs in ((folded, {}), (model, {"channels_last": True}), (folded, {"channels_last": True})):
        with TorchRunner(lambda source=source: source, (3, 32, 32), **kwargs) as runner:
            out = runner.infer(x)["logits"]
        assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max(), kwargs
    assert next(model.parameters()).dtype == torch.float32 and model.training is False  # the caller's model untouched


def test_ort_unknown_provider_names_the_available_ones(resnet20_artifact):
    runner = OrtRunner(resnet20_artifact.path / "model.onnx", providers=["CUDAExecutionProvider"])
    with pytest.raises(
        EnvironmentProblem, match="CUDAExecutionProvider are not available; available providers are .*CPU"
    ):
        runner.activate()


def test_ort_runner_accepts_bytes(resnet20_artifact):
    path = resnet20_artifact.path / "model.onnx"
    with OrtRunner(path) as from_path, OrtRunner(path.read_bytes()) as from_bytes:
        expected = from_path.infer({"input": _good()})["logits"]
        np.testing.assert_array_equal(from_bytes.infer({"input": _good()})["logits"], expected)
    assert expected.shape == (2, 10)


def test_ort_garbage_model_is_bad_input():
    with pytest.raises(BadInputError, match="ONNX Runtime cannot load the model bytes"):
        OrtRunner(b"not onnx").activate()


def test_cuda_torch_runner_without_cuda_is_an_environment_problem():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(EnvironmentProblem, match="no CUDA device"):
        TorchRunner(torch.nn.Identity(), (3, 4, 4), device="cuda").activate()


def test_ort_io_binding_gives_the_same_outputs(resnet20_artifact):
    x = {"input": _good()}
    with OrtRunner(resnet20_artifact.path / "model.onnx") as plain:
        expected = plain.infer(x)["logits"]
    with OrtRunner(resnet20_artifact.path / "model.onnx", io_binding=True) as bound:
        np.testing.assert_array_equal(bound.infer(x)["logits"], expected)


def test_ort_tensorrt_provider_options(resnet20_artifact):
    runner = runner_for(Artifact.open(resnet20_artifact.path), "ort-trt")
    assert runner.providers == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt_options, cuda_options, cpu_options = runner.provider_options
    cache = trt_options["trt_engine_cache_path"]
    assert cache.startswith(str(resnet20_artifact.path / "engines" / "ort-tensorrt-ort")) and "-trt" in cache
    assert trt_options == {
        "device_id": 0,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": cache,
        "trt_profile_min_shapes": "input:1x3x32x32",
        "trt_profile_opt_shapes": "input:8x3x32x32",
        "trt_profile_max_shapes": "input:32x3x32x32",
    }
    assert (cuda_options, cpu_options) == ({"device_id": 0, "use_tf32": 0}, {})
    assert runner.io_binding and runner.device == "cuda"


@pytest.mark.parametrize("backend", ["ort-cuda", "ort-trt"])
def test_ort_gpu_providers_without_a_gpu_name_the_extra(resnet20_artifact, backend):
    import onnxruntime as ort

    runner = runner_for(Artifact.open(resnet20_artifact.path), backend)
    if set(runner.providers) <= set(ort.get_available_providers()):
        pytest.skip("this onnxruntime has the GPU providers")
    with pytest.raises(EnvironmentProblem, match=r"ExecutionProvider.* not available; .*pip install 'rbench\[gpu\]'"):
        runner.activate()
    assert not (resnet20_artifact.path / "engines").exists()  # nothing created for a runner that cannot start


def test_the_cli_offers_exactly_the_registered_backends():
    from rbench.cli.parity import BackendChoice

    assert [b.value for b in BackendChoice] == list(BACKENDS)


def test_unknown_backend_lists_the_valid_ones(resnet20_artifact):
    with pytest.raises(
        BadInputError,
        match="unknown backend 'tensorflow'; choose from torch, torch-compile, ort, openvino, ort-cuda, ort-trt, trt",
    ):
        runner_for(Artifact.open(resnet20_artifact.path), "tensorflow")


def test_infer_can_skip_input_checks_for_a_feed_already_validated(resnet20_artifact):
    """A benchmark validates its inputs once and must not time the NaN/Inf scan on every call."""
    bad = _good()
    bad[0, 0, 0, 0] = np.nan
    with OrtRunner(resnet20_artifact.path / "model.onnx") as runner:
        with pytest.raises(BadInputError, match="NaN/Inf"):
            runner.infer({"input": bad})
        out = runner.infer({"input": bad}, check_inputs=False)["logits"]  # the backend ran: NaN went through
    assert np.isnan(out[0]).any() and np.isfinite(out[1]).all()


def test_a_runner_whose_activation_fails_halfway_is_released():
    from rbench.runtime.base import Runner, TensorSpec

    released = []

    class Halfway(Runner):
        def input_specs(self):
            return [TensorSpec("input", np.dtype(np.float32), ("batch", 3))]

        def _activate(self):
            self.session = "acquired"
            raise EnvironmentProblem("the device went away")

        def _deactivate(self):
            released.append(getattr(self, "session", None))
            self.session = None

        def _infer(self, feed):
            return {}

    runner = Halfway("halfway", "cpu", "fp32")
    with pytest.raises(EnvironmentProblem, match="went away"):
        runner.activate()
    assert released == ["acquired"] and runner.session is None and not runner.is_active


def test_bf16_only_where_it_is_an_execution_setting(resnet20_artifact):
    artifact = Artifact.open(resnet20_artifact.path)
    with pytest.raises(BadInputError, match="no bf16 execution setting; bf16 runs on torch, torch-compile, openvino"):
        runner_for(artifact, "ort", "bf16")
    runner = runner_for(artifact, "openvino", "bf16")
    assert runner.model_path.name == "model.onnx" and runner.config()["INFERENCE_PRECISION_HINT"] == "bf16"
