"""ONNX Runtime, with configurable execution providers (CPU here; CUDA and TensorRT where a GPU exists)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rbench.errors import BadInputError, EnvironmentProblem, first_line, missing_dependency, unknown_choice
from rbench.runtime.base import LayerEvent, NotSupported, Profile, Runner, Streams, TensorSpec
from rbench.runtime.spec import ENGINE_DIR, BackendSpec, Consumes, Executed, ModelSource, RunContext

ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
}
PROVIDER_DEVICES = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "cuda",
}


class OrtRunner(Runner):
    """Runs an ONNX model with ONNX Runtime.

    Args:
        model: path to an ``.onnx`` file, or its serialized bytes.
        providers: execution providers in order of preference, e.g. ``["CUDAExecutionProvider",
            "CPUExecutionProvider"]``. Each must be available in the installed onnxruntime.
        provider_options: one dict per provider (the TensorRT provider's ``trt_engine_cache_path``, say).
        precision: a label for reports (the ONNX graph itself fixes what runs in which precision).
        intra_op_threads: 0 lets ONNX Runtime choose.
        io_binding: bind inputs and outputs as OrtValues on the provider's device, so a GPU session copies each
            tensor once instead of on every ``run`` (ONNX Runtime's advice for CUDA and TensorRT).
    """

    backend = "ort"

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        provider_options: Sequence[Mapping[str, Any]] | None = None,
        precision: str = "fp32",
        intra_op_threads: int = 0,
        io_binding: bool = False,
    ) -> None:
        device = PROVIDER_DEVICES.get(providers[0], providers[0]) if providers else "cpu"
        super().__init__(
            f"{self.backend}-{providers[0].removesuffix('ExecutionProvider').lower()}-{precision}", device, precision
        )
        self._model = model if isinstance(model, bytes) else Path(model)
        self.providers = list(providers)
        self.provider_options = [dict(o) for o in provider_options] if provider_options else None
        self.intra_op_threads = intra_op_threads
        self.io_binding = io_binding
        self.session: Any = None

    def _activate(self) -> None:
        if importlib.util.find_spec("onnxruntime") is None:
            raise missing_dependency("onnxruntime", "gpu" if self.device == "cuda" else "dev")
        import onnxruntime as ort

        available = ort.get_available_providers()
        missing = [p for p in self.providers if p not in available]
        if missing:
            raise EnvironmentProblem(
                f"requested provider(s) {', '.join(missing)} are not available; "
                f"available providers are {', '.join(available)} (for CUDA/TensorRT: pip install 'rbench[gpu]')"
            )
        for options in self.provider_options or []:  # the TensorRT provider does not create its cache folders
            for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
                if key in options:
                    Path(options[key]).mkdir(parents=True, exist_ok=True)
        if isinstance(self._model, Path) and not self._model.is_file():
            raise BadInputError(f"ONNX model not found: {self._model}")
        options = self.session_options(ort)
        model = self._model if isinstance(self._model, bytes) else str(self._model)
        try:
            self.session = ort.InferenceSession(
                model, options, providers=self.providers, provider_options=self.provider_options
            )
        except Exception as exc:  # onnxruntime raises its own untyped exceptions for corrupt graphs
            first = first_line(exc)
            raise BadInputError(f"ONNX Runtime cannot load {self._describe()}: {first}") from None

    def settings(self) -> dict[str, Any]:
        options = self.session.get_session_options() if self.session is not None else None
        return {
            "providers": self.session.get_providers() if self.session is not None else self.providers,
            "intra_op_threads": options.intra_op_num_threads if options is not None else self.intra_op_threads,
            "io_binding": self.io_binding,
        }

    def session_options(self, ort: Any) -> Any:
        """The ``SessionOptions`` of this runner's session (a backend built on this one changes them here)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.log_severity_level = 3
        return options

    def executed(self) -> Executed:
        """ONNX Runtime runs exactly the artifact's graph: its types say what ran (an FP16 graph on the CPU
        provider runs its convolutions through FP32 kernels)."""
        if self.precision in _EXECUTED:
            return Executed("int8", _EXECUTED[self.precision])
        if self.precision == "fp16" and self.device == "cpu":
            return Executed("fp32", "fp16")
        return Executed(self.precision, self.precision)

    def profile(self, feed: Mapping[str, np.ndarray], calls: int) -> Profile:
        """ONNX Runtime's own profiler (``enable_profiling``) on a second session of the same graph and options:
        each node's ``_kernel_time`` events of the ``calls`` runs after a warm-up, and each run's ``model_run``."""
        import json
        import tempfile
        import time

        import onnxruntime as ort

        warmup = 3
        with tempfile.TemporaryDirectory(prefix="rbench-ort-profile-") as tmp:
            options = self.session_options(ort)
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tmp) / "ort")
            model = self._model if isinstance(self._model, bytes) else str(self._model)
            session = ort.InferenceSession(
                model, options, providers=self.providers, provider_options=self.provider_options
            )
            wall = []
            for i in range(warmup + calls):
                start = time.perf_counter()
                session.run(None, dict(feed))
                if i >= warmup:
                    wall.append((time.perf_counter() - start) * 1e3)
            events = json.loads(Path(session.end_profiling()).read_text())
        runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
        begin = runs[warmup]["ts"] if len(runs) > warmup else 0
        totals: dict[str, list[Any]] = {}
        for e in sorted(events, key=lambda e: e.get("ts", 0)):
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= begin:
                name = e["name"].removesuffix("_kernel_time")
                entry = totals.setdefault(name, [e.get("args", {}).get("op_name", ""), 0.0])
                entry[1] += e["dur"] / 1e3
        layers = [LayerEvent(name, kind, ms, (name,)) for name, (kind, ms) in totals.items()]
        return Profile("onnxruntime enable_profiling", calls, layers, wall)

    def threads_in_use(self) -> int | None:
        threads = self.settings()["intra_op_threads"]
        return int(threads) if threads else None

    def stream_callables(self, feeds: Sequence[Mapping[str, np.ndarray]], requests: int) -> list[Streams]:
        """``requests`` host threads calling one shared session (``run`` is documented as thread-safe), made like
        this runner's own but with ``threads // requests`` intra-op threads each; CPU provider only."""
        if self.device != "cpu":
            raise NotSupported(f"{self.name}: requests in flight run on the CPU provider")
        streams = max(1, requests)
        per_stream = max(1, (self.threads_in_use() or os.cpu_count() or 1) // streams)
        shared = type(self)(self._model, self.providers, self.provider_options, self.precision, per_stream)
        shared.activate()

        def call(k: int) -> Any:
            return lambda i: shared.infer(feeds[(k + i * streams) % len(feeds)], check_inputs=False)

        mode = "threads sharing one InferenceSession"
        calls = [call(k) for k in range(streams)]
        return [Streams(calls, [lambda: None] * streams, mode, streams, streams, per_stream, close=shared.deactivate)]

    def _describe(self) -> str:
        return "the model bytes" if isinstance(self._model, bytes) else str(self._model)

    def _deactivate(self) -> None:
        self.session = None

    def input_specs(self) -> list[TensorSpec]:
        return [
            TensorSpec(i.name, np.dtype(ORT_TYPES.get(i.type, np.float32)), tuple(i.shape))
            for i in self.session.get_inputs()
        ]

    def device_callable(self, feed: Mapping[str, np.ndarray]) -> Any:
        """A run on this feed already bound on the GPU (IOBinding), for compute-only timing; ``None`` on the CPU."""
        if not self.io_binding or self.device != "cuda":
            return None
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, self.device, 0))
        for output in self.session.get_outputs():
            binding.bind_output(output.name, self.device, 0)
        return lambda: self.session.run_with_iobinding(binding)

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        if not self.io_binding:
            return dict(zip(names, self.session.run(names, dict(feed)), strict=True))
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, self.device, 0))
        for name in names:
            binding.bind_output(name, self.device, 0)
        self.session.run_with_iobinding(binding)
        return dict(zip(names, binding.copy_outputs_to_cpu(), strict=True))


def gpu_providers(
    provider: str, cache_dir: str | os.PathLike[str], profile: Mapping[str, Sequence[str]] | None = None
) -> tuple[list[str], list[dict[str, Any]]]:
    """Providers and their options for ``cuda`` or ``tensorrt``, each falling back to the next one.

    For the TensorRT provider: engine and timing caches in ``cache_dir`` (put the TensorRT version in that path:
    ONNX Runtime reuses a stale engine after an upgrade, onnxruntime#22244), and the batch profile as
    ``{"min": ["input:1x3x224x224"], "opt": […], "max": […]}``.
    """
    cuda = {"device_id": 0, "use_tf32": 0}  # FP32 convolutions in FP32, as the TensorRT builder does by default
    if provider == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], [cuda, {}]
    if provider != "tensorrt":
        raise unknown_choice("GPU provider", provider, ("cuda", "tensorrt"))
    tensorrt: dict[str, Any] = {
        "device_id": 0,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
    }
    for key, shapes in (profile or {}).items():
        tensorrt[f"trt_profile_{key}_shapes"] = ",".join(shapes)
    return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], [tensorrt, cuda, {}]


def _cpu(source: ModelSource, precision: str, context: RunContext) -> OrtRunner:
    return OrtRunner(source.onnx_path(precision), precision=precision, intra_op_threads=context.threads)


def _gpu(provider: str) -> Any:
    def build(source: ModelSource, precision: str, context: RunContext) -> OrtRunner:
        from rbench.env import package_version

        chw = "x".join(map(str, source.input_shape))
        profile = {k: [f"{source.input_name}:{n}x{chw}"] for k, n in (("min", 1), ("opt", 8), ("max", 32))}
        versions = f"ort{package_version('onnxruntime')}-trt{package_version('tensorrt') or 'none'}"
        cache = source.path / ENGINE_DIR / f"ort-tensorrt-{versions}"
        providers, options = gpu_providers(provider, cache, profile)
        return OrtRunner(source.onnx_path(precision), providers, options, precision=precision, io_binding=True)

    return build


_GRAPHS = {
    "fp32": "model.onnx",
    "fp16": "model.fp16.onnx",
    "int8": "model.int8.onnx (QDQ)",
    "int8-mixed": "model.int8-mixed.onnx (QDQ, debugger's layers in FP32)",
    "fp16-mixed": "model.fp16-mixed.onnx (debugger's layers in FP32)",
}
_EXECUTED = {
    "int8": "int8 QDQ graph, s8 activations (first conv, classifier fp32)",
    "int8-u8s8": "int8 QDQ graph, u8 activations (first conv, classifier fp32)",
}


def _gpu_spec(name: str, provider: str, description: str, marker: str) -> BackendSpec:
    """ONNX Runtime on a GPU provider: the artifact's graphs, IOBinding, compute-only timing."""
    return BackendSpec(
        name,
        "cuda",
        "gpu",
        description,
        Consumes.ONNX,
        _GRAPHS,
        _gpu(provider),
        needs=("onnxruntime",),
        device_timing=True,
        marker=marker,
        lacks={"bf16": f"{name} runs the artifact's graphs; bf16 has none"},
        triton="onnxruntime",
    )


SPECS = (
    BackendSpec(
        "ort",
        "cpu",
        "dev",
        "ONNX Runtime, CPU provider, on the artifact's ONNX of that precision",
        Consumes.ONNX,
        {**_GRAPHS, "int8-u8s8": "model.int8-u8s8.onnx (QDQ, uint8 activations)"},
        _cpu,
        needs=("onnxruntime",),
        variant="cpu",
        streams=True,
        marker="^",
        lacks={"bf16": "ONNX Runtime's CPU provider has no bf16 execution setting"},
        triton="onnxruntime",
    ),
    _gpu_spec("ort-cuda", "cuda", "ONNX Runtime, CUDA provider with IOBinding (TF32 off)", "v"),
    _gpu_spec("ort-trt", "tensorrt", "ONNX Runtime, TensorRT provider with IOBinding and engine caches", "X"),
)
