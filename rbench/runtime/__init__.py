"""Backends behind one ``Runner`` interface: eager PyTorch, ONNX Runtime (CPU, CUDA, TensorRT provider), TensorRT.

Only the torch and ONNX Runtime CPU runners are imported here; the GPU ones import their libraries on activation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rbench.errors import BadInputError
from rbench.runtime.base import Runner, TensorSpec, validate_feed
from rbench.runtime.ort_runner import OrtRunner, gpu_providers
from rbench.runtime.torch_runner import TorchRunner
from rbench.runtime.trt_common import ENGINE_DIR, engine_path, installed_tensorrt
from rbench.runtime.trt_runner import TrtRunner

if TYPE_CHECKING:
    from rbench.export.artifact import Artifact

__all__ = [
    "BACKENDS",
    "OrtRunner",
    "Runner",
    "TensorSpec",
    "TorchRunner",
    "TrtRunner",
    "runner_for",
    "validate_feed",
]

BACKENDS = ("ort", "ort-cuda", "ort-trt", "torch", "trt")


def runner_for(artifact: Artifact, backend: str, precision: str = "fp32") -> Runner:
    """The runner of ``backend`` for one precision of an artifact (not yet active).

    ``ort*`` run that precision's ONNX file (on the CPU, CUDA or TensorRT provider, the GPU ones with IOBinding);
    ``torch`` runs the artifact's weights eagerly with BatchNorm folded; ``trt`` runs the engine ``rbench build``
    made for that precision.
    """
    if backend == "ort":
        return OrtRunner(artifact.onnx_path(precision), precision=precision)
    if backend in ("ort-cuda", "ort-trt"):
        return _ort_gpu(artifact, backend, precision)
    if backend == "torch":
        return TorchRunner(artifact.reference_model, artifact.input_shape, folded=True, precision=precision)
    if backend == "trt":
        engine = engine_path(artifact.path, precision)
        if not engine.is_file():
            raise BadInputError(
                f"{artifact.path} has no {precision} TensorRT engine; build it with: "
                f"rbench build {artifact.path} --precision {precision}"
            )
        source = artifact.manifest["precisions"].get(precision, {}).get("sha256")
        return TrtRunner(engine, precision=precision, source_sha256=source)
    raise BadInputError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def _ort_gpu(artifact: Artifact, backend: str, precision: str) -> OrtRunner:
    from rbench.doctor import package_version

    chw = "x".join(map(str, artifact.input_shape))
    profile = {k: [f"{artifact.input_name}:{n}x{chw}"] for k, n in (("min", 1), ("opt", 8), ("max", 32))}
    versions = f"ort{package_version('onnxruntime')}-trt{installed_tensorrt() or 'none'}"
    cache = artifact.path / ENGINE_DIR / f"ort-tensorrt-{versions}"
    providers, options = gpu_providers("cuda" if backend == "ort-cuda" else "tensorrt", cache, profile)
    return OrtRunner(artifact.onnx_path(precision), providers, options, precision=precision, io_binding=True)
