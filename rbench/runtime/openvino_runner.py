"""OpenVINO on the CPU, from the artifact's ONNX files.

The precision is set explicitly, never left to the plugin: on CPUs with native bf16 (this project's machine reads as
a Zen 4, family 25 model 17, with avx512_bf16) the CPU plugin silently runs an "FP32" model in bf16 unless
``INFERENCE_PRECISION_HINT`` is ``f32``. So ``fp32`` runs with the f32 hint, ``bf16`` with the bf16 hint, ``int8``
is the QDQ graph (FakeQuantize, with f32 around it) and ``fp16`` the FP16 graph with the f32 hint (its weights
decompressed). After compiling, the runner reads back what the convolutions execute in (``executed``), from the
compiled model's runtime graph."""

from __future__ import annotations

import collections
import importlib.util
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rbench.env import has_native_bf16
from rbench.errors import BadInputError, first_line, missing_dependency, unknown_choice
from rbench.precisions import PRECISIONS
from rbench.runtime.base import LayerEvent, Profile, Runner, Streams, TensorSpec
from rbench.runtime.spec import BackendSpec, Consumes, Executed, ModelSource, RunContext

HINTS = {"bf16": "bf16"}
HINTS.update({p: "f32" for p in PRECISIONS if p not in HINTS})  # each graph runs as typed: its Q/DQ and casts
#: A runtime precision of OpenVINO's graph -> the precision (and peak) it is
RUNTIME_PRECISIONS = {"u8": "int8", "i8": "int8", "bf16": "bf16", "f16": "fp16", "f32": "fp32"}


class OpenVinoRunner(Runner):
    """Runs an ONNX model with OpenVINO's CPU plugin.

    Args:
        model: path to an ``.onnx`` file (of that precision: the INT8 QDQ graph for ``int8``, the FP16 one for
            ``fp16``, the FP32 one for ``fp32`` and ``bf16``).
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8``; sets ``INFERENCE_PRECISION_HINT`` (see the module).
        threads: ``INFERENCE_NUM_THREADS`` (0: OpenVINO's choice).
        latency: ``PERFORMANCE_HINT=LATENCY`` with one stream (one request at a time, as the harness runs it).
    """

    backend = "openvino"

    def __init__(
        self, model: str | os.PathLike[str], precision: str = "fp32", threads: int = 0, latency: bool = True
    ) -> None:
        if precision not in HINTS:
            raise unknown_choice("OpenVINO precision", precision, HINTS)
        super().__init__(f"openvino-cpu-{precision}", "cpu", precision)
        self.model_path = Path(model)
        self.threads = threads
        self.latency = latency
        self.compiled: Any = None
        self.request: Any = None
        self.executed_convolutions: dict[str, int] = {}

    def config(self, mode: str | None = None) -> dict[str, Any]:
        """The compile settings; ``mode`` (THROUGHPUT, LATENCY) replaces the one-stream latency setting."""
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": HINTS[self.precision]}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        if mode is not None:
            config["PERFORMANCE_HINT"] = mode
        elif self.latency:
            config |= {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        return config

    def executed(self) -> Executed:
        """What the convolutions of the compiled graph execute in (the most common one decides the peak)."""
        if not self.executed_convolutions:
            return Executed(self.precision, self.precision)
        main = next(iter(self.executed_convolutions))
        words = "conv " + ", ".join(f"{k} x{v}" for k, v in self.executed_convolutions.items())
        precision = RUNTIME_PRECISIONS.get(main, "fp32")
        return Executed(precision, words + (saturation_note() if precision == "int8" else ""))

    def threads_in_use(self) -> int | None:
        found = self.settings().get("INFERENCE_NUM_THREADS")
        return int(found) if found and str(found).isdigit() else None

    def stream_callables(self, feeds: Sequence[Mapping[str, np.ndarray]], requests: int) -> list[Streams]:
        """The same model compiled under ``PERFORMANCE_HINT=LATENCY`` with one request in flight, then under
        ``THROUGHPUT`` with ``requests`` (0: the queue's optimal count), each an ``AsyncInferQueue`` fed from one
        host thread."""
        return [self._queue(feeds, 1, "LATENCY"), self._queue(feeds, requests, "THROUGHPUT")]

    def _queue(self, feeds: Sequence[Mapping[str, np.ndarray]], requests: int, mode: str) -> Streams:
        """An ``AsyncInferQueue`` of ``requests`` on the model compiled under ``mode``. No completion callback (a
        Python callback from OpenVINO's threads can deadlock the queue's release): every request issued has
        completed once ``wait_all`` returns, so the issued count is the completed count."""
        import openvino as ov

        compiled = ov.Core().compile_model(str(self.model_path), "CPU", self.config(mode))
        queue = ov.AsyncInferQueue(compiled, requests)  # 0: OpenVINO's optimal number of requests
        streams = int(compiled.get_property("NUM_STREAMS"))
        threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        held = [compiled, queue]

        def issue(i: int) -> None:
            queue.start_async(dict(feeds[i % len(feeds)]))

        def close() -> None:
            queue.wait_all()
            held.clear()  # the queue, then the compiled model it runs

        return Streams(
            [issue],
            [queue.wait_all],
            f"AsyncInferQueue, PERFORMANCE_HINT={mode}",
            len(queue),
            streams,
            max(1, threads // max(1, streams)),
            close=close,
        )

    def _activate(self) -> None:
        if importlib.util.find_spec("openvino") is None:
            raise missing_dependency("openvino", "openvino")
        import openvino as ov

        if not self.model_path.is_file():
            raise BadInputError(f"model not found: {self.model_path}")
        core = ov.Core()
        try:
            self.compiled = core.compile_model(core.read_model(str(self.model_path)), "CPU", self.config())
        except Exception as exc:  # OpenVINO raises RuntimeError for graphs it cannot read or compile
            raise BadInputError(f"OpenVINO cannot compile {self.model_path}: {first_line(exc)}") from None
        self.request = self.compiled.create_infer_request()
        self.executed_convolutions = executed_precisions(self.compiled)

    def profile(self, feed: Mapping[str, np.ndarray], calls: int) -> Profile:
        """OpenVINO's performance counters (``PERF_COUNT``, ``get_profiling_info``) on a second compilation with the
        same configuration: each executed node's time summed over ``calls`` inferences after a warm-up, its exec
        type and precision, and the original layers a fused node covers (the runtime model's
        ``originalLayersNames``)."""
        import time

        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(
            core.read_model(str(self.model_path)), "CPU", {**self.config(), "PERF_COUNT": True}
        )
        request = compiled.create_infer_request()
        covers = {}
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            names = info["originalLayersNames"].astype(str) if "originalLayersNames" in info else ""
            covers[op.get_friendly_name()] = tuple(n for n in names.split(",") if n)
        for _ in range(3):
            request.infer(dict(feed))
        totals: dict[str, list[Any]] = {}
        wall = []
        for _ in range(calls):
            start = time.perf_counter()
            request.infer(dict(feed))
            wall.append((time.perf_counter() - start) * 1e3)
            for p in request.get_profiling_info():
                if p.status == p.Status.EXECUTED:
                    entry = totals.setdefault(p.node_name, [f"{p.node_type} {p.exec_type}", 0.0])
                    entry[1] += p.real_time.total_seconds() * 1e3
        layers = [LayerEvent(n, k, ms, covers.get(n, (n,))) for n, (k, ms) in totals.items()]
        return Profile("openvino PERF_COUNT", calls, layers, wall)

    def _deactivate(self) -> None:
        self.request = self.compiled = None

    def settings(self) -> dict[str, Any]:
        """The compiled model's own account of what it runs with, for reports."""
        props = ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT")
        found = {p: _plain(self.compiled.get_property(p)) for p in props} if self.compiled is not None else {}
        return {**found, "convolutions": self.executed_convolutions}

    def input_specs(self) -> list[TensorSpec]:
        from rbench.runtime.ort_runner import ORT_TYPES

        specs = []
        for port in self.compiled.inputs:
            shape = tuple(d.get_length() if d.is_static else "batch" for d in port.get_partial_shape())
            dtype = np.dtype(port.get_element_type().to_dtype())
            specs.append(TensorSpec(port_name(port), dtype if dtype in ORT_TYPES.values() else np.float32, shape))
        return specs

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.request.infer(dict(feed))
        return {port_name(port): self.request.get_tensor(port).data.copy() for port in self.compiled.outputs}


def port_name(port: Any) -> str:
    """The graph's own name of a tensor: an ONNX Cast the FP16 conversion added gives it a second, internal name
    (``{'logits', '/fc/Gemm_cast_to_logits'}``), and OpenVINO's "any name" may pick that one."""
    return min(port.get_names(), key=lambda name: ("/" in name or "_cast_to_" in name, len(name), name))


def _plain(value: Any) -> str:
    """An OpenVINO property as text: ``f32``, not ``<Type: 'float32'>``."""
    return value.to_string() if hasattr(value, "to_string") else str(value).split(".")[-1]


def saturation_note() -> str:
    """What an int8 row on this CPU must say: without VNNI, OpenVINO documents that the 8-bit dot products "admit
    so-called saturation (overflow) of the intermediate buffer" (its saturation-issue page; measured here: the
    portable ResNet-50 graph at worst cosine 0.969 on AMD Zen 3, 0.992 on Zen 4 with VNNI)."""
    from rbench.env import has_vnni

    return "" if has_vnni() else " (CPU without VNNI: 8-bit dot products can saturate)"


def executed_precisions(compiled: Any) -> dict[str, int]:
    """Convolutions per runtime precision in the compiled graph: ``{"u8": 52, "f32": 1}`` for the INT8 artifact."""
    counts: collections.Counter[str] = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == "Convolution":
            counts[info["runtimePrecision"].astype(str)] += 1
    return dict(counts.most_common())


def _unavailable(precision: str, device: str) -> str | None:
    """The NNCF model is made by the export, which needs nncf. bf16 needs a CPU with native bf16: elsewhere the CPU
    plugin takes the bf16 hint and runs f32 (read back on an AMD Zen 3 as ``conv f32 x53``, parity cosine 1.0 and the
    fp32 row's speed), so the row would time the fp32 row again under another name."""
    if precision == "int8-nncf" and importlib.util.find_spec("nncf") is None:
        return "nncf is not installed: pip install 'rbench[nncf]'"
    if precision == "bf16" and not has_native_bf16():
        return "no native bf16 on this CPU (OpenVINO's bf16 hint would run f32: the fp32 row)"
    return None


def _build(source: ModelSource, precision: str, context: RunContext) -> OpenVinoRunner:
    return OpenVinoRunner(source.onnx_path(precision), precision, threads=context.threads)


SPECS = (
    BackendSpec(
        "openvino",
        "cpu",
        "openvino",
        "OpenVINO CPU plugin on the artifact's ONNX (or NNCF's IR), precision hint explicit",
        Consumes.ONNX,
        {
            "fp32": "model.onnx, hint f32",
            "fp16": "model.fp16.onnx, hint f32",
            "bf16": "model.onnx, hint bf16 (a CPU with native bf16)",
            "int8": "model.int8.onnx, hint f32",
            "int8-nncf": "model.int8-nncf.xml (NNCF IR), hint f32",
            "int8-mixed": "model.int8-mixed.onnx, hint f32",
            "fp16-mixed": "model.fp16-mixed.onnx, hint f32",
        },
        _build,
        needs=("openvino",),
        unavailable=_unavailable,
        variant="cpu",
        streams=True,
        marker="D",
        triton="openvino",
    ),
)
