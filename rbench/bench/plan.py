"""Which rows a run has: backend × precision, each with a runner factory or the reason it cannot run here.

Every row records what it asked for (backend, precision) and, once active, what actually executed; nothing is
substituted silently: a backend that cannot run a precision is a row that says "skipped: <reason>".
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from rbench.export.artifact import Artifact
from rbench.runtime import CompiledTorchRunner, OpenVinoRunner, OrtRunner, Runner, TorchRunner
from rbench.runtime.registry import BACKENDS
from rbench.runtime.torch_runner import fp16_unsupported

GPU_BACKENDS = tuple(name for name, b in BACKENDS.items() if b.device == "cuda")


@dataclass
class RowPlan:
    backend: str
    precision: str  # as requested
    variant: str  # what distinguishes rows of one backend and precision
    factory: Callable[[], Runner] | None
    skip: str | None = None
    file: str | None = None  # the artifact file it runs
    baseline: bool = False

    @property
    def label(self) -> str:
        return " ".join(p for p in (self.backend, self.variant, self.precision) if p)


def plan_rows(
    artifact: Artifact, backends: list[str], precisions: list[str], device: str, threads: int
) -> list[RowPlan]:
    """The rows of a run, the FP32 eager baseline first (every speedup is relative to it)."""
    rows = [_torch_eager_baseline(artifact, device, threads)]
    for backend in backends:
        for precision in precisions:
            rows += _rows(artifact, backend, precision, device, threads)
    return rows


def _folded(artifact: Artifact) -> Callable[[], object]:
    from rbench.export.fold import fold_batchnorm

    return lambda: fold_batchnorm(artifact.reference_model()).module


def _torch_eager_baseline(artifact: Artifact, device: str, threads: int) -> RowPlan:
    return RowPlan(
        "torch",
        "fp32",
        "eager",
        lambda: TorchRunner(artifact.reference_model, artifact.input_shape, device=device, threads=threads),
        file="weights.safetensors",
        baseline=True,
    )


def _rows(artifact: Artifact, backend: str, precision: str, device: str, threads: int) -> list[RowPlan]:
    if backend in GPU_BACKENDS:
        return [_gpu_row(artifact, backend, precision, device)]
    if backend in ("torch", "torch-compile"):
        return [_torch_row(artifact, backend, precision, device, threads)]
    if backend == "ort":  # the CPU provider: a CPU row on any device (ort-cuda is the GPU one)
        return [_ort_row(artifact, precision, threads)]
    return [_openvino_row(artifact, precision, threads)]


def _torch_row(artifact: Artifact, backend: str, precision: str, device: str, threads: int) -> RowPlan:
    compiled = backend == "torch-compile"
    variant = "folded" if compiled else "folded channels_last"
    if precision == "int8":
        return RowPlan(backend, precision, variant, None, "no INT8 path in PyTorch here; INT8 runs on ort, openvino")
    if precision == "fp16" and (why := fp16_unsupported(device)):
        return RowPlan(backend, precision, variant, None, why)
    if compiled and importlib.util.find_spec("torch._inductor") is None:
        return RowPlan(backend, precision, variant, None, "torch.compile's inductor is not available")
    kind = CompiledTorchRunner if compiled else TorchRunner
    kwargs = {"device": device, "precision": precision, "threads": threads, "channels_last": not compiled}
    return RowPlan(
        backend,
        precision,
        variant,
        lambda: kind(_folded(artifact), artifact.input_shape, variant=variant.replace(" ", "+"), **kwargs),
        file="weights.safetensors",
    )


def _ort_row(artifact: Artifact, precision: str, threads: int) -> RowPlan:
    if precision == "bf16":
        return RowPlan("ort", precision, "cpu", None, "ONNX Runtime's CPU provider has no bf16 execution setting")
    path = artifact.onnx_path(precision)
    return RowPlan(
        "ort", precision, "cpu", lambda: OrtRunner(path, precision=precision, intra_op_threads=threads), file=path.name
    )


def _openvino_row(artifact: Artifact, precision: str, threads: int) -> RowPlan:
    if importlib.util.find_spec("openvino") is None:
        return RowPlan("openvino", precision, "cpu", None, "openvino is not installed: pip install 'rbench[openvino]'")
    path = artifact.onnx_path(precision)
    return RowPlan(
        "openvino", precision, "cpu", lambda: OpenVinoRunner(path, precision, threads=threads), file=path.name
    )


def _gpu_row(artifact: Artifact, backend: str, precision: str, device: str) -> RowPlan:
    if device != "cuda":
        return RowPlan(backend, precision, "", None, "no CUDA device here (run with --device cuda on a GPU machine)")
    if precision == "bf16":
        return RowPlan(backend, precision, "", None, f"{backend} runs the artifact's graphs; bf16 has none")
    from rbench.bench.backends import runner_for

    if backend == "trt" and importlib.util.find_spec("tensorrt") is None:
        return RowPlan(backend, precision, "", None, "tensorrt is not installed: pip install 'rbench[gpu]'")
    if backend == "trt":  # the engine is built (or its cache reused) on activation: part of the cold start
        return RowPlan(
            backend,
            precision,
            "",
            lambda: _engine_runner(artifact, precision),
            file=f"engines/model.{precision}.engine",
        )
    file = artifact.onnx_path(precision).name
    return RowPlan(backend, precision, "", lambda: runner_for(artifact, backend, precision), file=file)


def _engine_runner(artifact: Artifact, precision: str) -> Runner:
    from rbench.bench.backends import runner_for
    from rbench.export.engine import BuildConfig, build_engine

    build_engine(artifact, BuildConfig(precision))  # reused while its key (ONNX, settings, TensorRT, GPU) holds
    return runner_for(artifact, "trt", precision)
