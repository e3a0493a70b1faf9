"""An artifact's files onto runners: the one place that knows which file each backend runs."""

from __future__ import annotations

from rbench.errors import BadInputError
from rbench.export.artifact import ENGINE_DIR, Artifact
from rbench.precisions import get_precision
from rbench.runtime import (
    CompiledTorchRunner,
    OpenVinoRunner,
    OrtRunner,
    Runner,
    TorchRunner,
    TrtRunner,
    get_backend,
    gpu_providers,
)

#: Backends that run bf16 as an execution setting on the FP32 graph (autocast, OpenVINO's precision hint).
BF16_BACKENDS = ("torch", "torch-compile", "openvino")


def runner_for(artifact: Artifact, backend: str, precision: str = "fp32") -> Runner:
    """The runner of ``backend`` for one precision of an artifact (not yet active).

    ``ort*`` run that precision's ONNX file (on the CPU, CUDA or TensorRT provider, the GPU ones with IOBinding);
    ``openvino`` runs it on OpenVINO's CPU plugin with an explicit precision hint; ``torch`` runs the artifact's
    weights eagerly with BatchNorm folded, ``torch-compile`` the same under ``torch.compile``; ``trt`` runs the
    engine ``rbench build`` made for that precision.
    """
    get_backend(backend)
    if not get_precision(precision).exported and backend not in BF16_BACKENDS:
        raise BadInputError(
            f"{backend} has no {precision} execution setting (it runs the artifact's graphs: fp32, fp16, int8); "
            f"{precision} runs on {', '.join(BF16_BACKENDS)}"
        )
    if backend == "ort":
        return OrtRunner(artifact.onnx_path(precision), precision=precision)
    if backend in ("ort-cuda", "ort-trt"):
        return _ort_gpu(artifact, backend, precision)
    if backend in ("torch", "torch-compile"):
        from rbench.export.fold import fold_batchnorm

        def folded() -> object:
            return fold_batchnorm(artifact.reference_model()).module

        kind = TorchRunner if backend == "torch" else CompiledTorchRunner
        return kind(folded, artifact.input_shape, variant="folded", precision=precision)
    if backend == "openvino":
        return OpenVinoRunner(artifact.onnx_path(precision), precision)
    engine = artifact.engine_path(precision)
    if not engine.is_file():
        raise BadInputError(
            f"{artifact.path} has no {precision} TensorRT engine; build it with: "
            f"rbench build {artifact.path} --precision {precision}"
        )
    source = artifact.manifest["precisions"].get(precision, {}).get("sha256")
    return TrtRunner(engine, precision=precision, source_sha256=source)


def _ort_gpu(artifact: Artifact, backend: str, precision: str) -> OrtRunner:
    from rbench.env import package_version

    chw = "x".join(map(str, artifact.input_shape))
    profile = {k: [f"{artifact.input_name}:{n}x{chw}"] for k, n in (("min", 1), ("opt", 8), ("max", 32))}
    versions = f"ort{package_version('onnxruntime')}-trt{package_version('tensorrt') or 'none'}"
    cache = artifact.path / ENGINE_DIR / f"ort-tensorrt-{versions}"
    providers, options = gpu_providers("cuda" if backend == "ort-cuda" else "tensorrt", cache, profile)
    return OrtRunner(artifact.onnx_path(precision), providers, options, precision=precision, io_binding=True)
