"""TensorRT: run an engine that ``rbench build`` made, after checking that it is the engine it claims to be.

Activation checks, in order: the sidecar exists and parses (exit 2), the engine's SHA-256 matches it and it was built
from the artifact's ONNX (exit 3), it was built for this TensorRT version and compute capability (exit 3; where
TensorRT or the GPU is missing, a version that differs from the installed package's is still exit 3, else exit 4).
Only then are its bytes deserialized, and a ``None`` engine is refused rather than used.
Execution follows NVIDIA's ``common_runtime.py``: set each input's shape and every tensor's address by name, then
``execute_async_v3`` on one stream; ``--streams N`` adds N execution contexts, each with a stream of its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rbench.errors import ArtifactError, EnvironmentProblem
from rbench.precisions import PORTABLE
from rbench.runtime.base import LayerEvent, Profile, Runner, Streams, TensorSpec
from rbench.runtime.cuda_memory import DeviceMemory, device_memory
from rbench.runtime.spec import BackendSpec, Consumes, ModelSource, RunContext
from rbench.runtime.trt_common import (
    check_compatible,
    import_tensorrt,
    installed_tensorrt,
    probe_platform,
    read_sidecar,
    verify_engine_file,
)


class TrtRunner(Runner):
    """Runs a serialized TensorRT engine.

    Args:
        engine_file: an ``.engine`` file with its ``.engine.json`` sidecar beside it.
        precision: a label for reports (the engine's types came from its ONNX graph).
        cuda_graph: capture each new input shape into a CUDA graph and replay it (torch device memory only).
        memory: ``auto`` (torch CUDA tensors when torch is installed, else pycuda), ``torch`` or ``pycuda``.
        source_sha256: the SHA-256 of the ONNX the engine must have been built from (an artifact's), if known.
    """

    backend = "trt"

    def __init__(
        self,
        engine_file: str | os.PathLike[str],
        precision: str = "fp16",
        cuda_graph: bool = False,
        memory: str = "auto",
        source_sha256: str | None = None,
    ) -> None:
        super().__init__(f"trt-{precision}", "cuda", precision)
        self.engine_file = Path(engine_file)
        self.cuda_graph = cuda_graph
        self.memory_kind = memory
        self.source_sha256 = source_sha256
        self.sidecar: dict[str, Any] | None = None
        self._engine: Any = None
        self._context: Any = None
        self._memory: DeviceMemory | None = None
        self._keep_alive: tuple[Any, ...] = ()
        self._nptype: Callable[[Any], type] = np.dtype
        self._outputs: list[str] = []
        self._graphs: dict[tuple[tuple[str, tuple[int, ...], int], ...], Callable[[], None]] = {}
        self._streams: list[tuple[Any, DeviceMemory]] = []  # --streams: an execution context and memory each

    def check(self) -> dict[str, Any]:
        """Every check that needs no deserialization; returns the sidecar."""
        sidecar = read_sidecar(self.engine_file)
        verify_engine_file(self.engine_file, sidecar)
        built_from = sidecar["source"]["sha256"]
        if self.source_sha256 is not None and built_from != self.source_sha256:
            raise ArtifactError(
                f"rebuild required: {self.engine_file.name} was built from an ONNX with sha256 {built_from[:12]}…, "
                f"the artifact's is {self.source_sha256[:12]}…"
            )
        try:
            here = probe_platform()
        except EnvironmentProblem:
            check_compatible(
                sidecar, installed_tensorrt()
            )  # a foreign engine is refused even where TensorRT can't load
            raise
        check_compatible(sidecar, here)
        return sidecar

    def _activate(self) -> None:
        sidecar = self.check()
        trt = import_tensorrt()
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self._keep_alive = (logger, runtime)  # the engine must not outlive its runtime and logger
        engine = runtime.deserialize_cuda_engine(self.engine_file.read_bytes())
        if engine is None:
            raise ArtifactError(f"rebuild required: TensorRT could not deserialize {self.engine_file} (see its log)")
        context = engine.create_execution_context()
        if context is None:
            raise EnvironmentProblem(f"TensorRT could not create an execution context for {self.engine_file}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._memory = device_memory(self.memory_kind)
        self.sidecar, self._engine, self._context, self._nptype = sidecar, engine, context, trt.nptype

    def _deactivate(self) -> None:
        for _, memory in self._streams:
            memory.close()
        self._streams.clear()  # their contexts go before the engine
        if self._memory is not None:
            self._memory.close()
        self._graphs.clear()
        self._context = self._engine = self._memory = None  # context before engine before runtime
        self._keep_alive = ()

    def input_specs(self) -> list[TensorSpec]:
        """From the sidecar, so a feed is validated (including the profile's batch range) before TensorRT sees it."""
        sidecar = self.sidecar or read_sidecar(self.engine_file)
        return [
            TensorSpec(i["name"], np.dtype(i["dtype"]), ("batch", *i["shape"][1:]), (i["min_batch"], i["max_batch"]))
            for i in sidecar["inputs"]
        ]

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        memory = self._memory
        assert memory is not None
        self._enqueue(self._bind(self._context, memory, feed))
        return {name: memory.to_host(name) for name in self._outputs}

    def _bind(
        self, context: Any, memory: DeviceMemory, feed: Mapping[str, np.ndarray]
    ) -> tuple[tuple[str, tuple[int, ...], int], ...]:
        """Copy ``feed`` into ``memory``, size the outputs, and give ``context`` every tensor's shape and address."""
        bound: list[tuple[str, tuple[int, ...], int]] = []
        for name, array in feed.items():
            context.set_input_shape(name, tuple(array.shape))
            bound.append((name, tuple(array.shape), memory.to_device(name, array)))
        for name in self._outputs:
            shape = tuple(context.get_tensor_shape(name))
            dtype = np.dtype(self._nptype(self._engine.get_tensor_dtype(name)))
            bound.append((name, shape, memory.empty(name, shape, dtype)))
        for name, _, address in bound:
            context.set_tensor_address(name, address)
        return tuple(bound)

    def device_callable(self, feed: Mapping[str, np.ndarray]) -> Callable[[], None] | None:
        """For compute-only latency: the engine on ``feed`` already on the device, in an execution context and
        buffers of its own, enqueued on a stream joined to torch's current one, so CUDA events around a call time
        exactly the engine's work. ``None`` with pycuda memory (no torch stream to join)."""
        if self._engine is None or self._memory is None or self._memory.kind != "torch":
            return None
        context, memory = self._new_context(feed)
        enqueue = self._enqueuer(context, memory)
        return lambda: memory.joined(enqueue)

    def _new_context(self, feed: Mapping[str, np.ndarray]) -> tuple[Any, DeviceMemory]:
        """Another execution context of the engine, with device memory of its own holding ``feed``; both live
        until the runner is released."""
        context = self._engine.create_execution_context()
        if context is None:
            raise EnvironmentProblem(f"TensorRT could not create another execution context for {self.engine_file}")
        memory = device_memory(self.memory_kind)
        self._streams.append((context, memory))
        self._bind(context, memory, feed)
        return context, memory

    def _enqueuer(self, context: Any, memory: DeviceMemory) -> Callable[[], None]:
        def enqueue() -> None:
            if not context.execute_async_v3(memory.stream):
                raise EnvironmentProblem(f"TensorRT failed to enqueue {self.engine_file.name} (see its log above)")

        return enqueue

    def profile(self, feed: Mapping[str, np.ndarray], calls: int) -> Profile:
        """TensorRT's own per-layer times: an ``IProfiler`` on an execution context of its own, attached after a
        warm-up, that TensorRT calls with each layer's time after every inference (as ``trtexec --dumpProfile``)."""
        import time

        trt = import_tensorrt()
        context, memory = self._new_context(feed)
        enqueue = self._enqueuer(context, memory)
        for _ in range(3):
            enqueue()
            memory.synchronize()
        times = layer_times(trt)
        context.profiler = times
        wall = []
        for _ in range(calls):
            start = time.perf_counter()
            enqueue()
            memory.synchronize()
            wall.append((time.perf_counter() - start) * 1e3)
        return Profile("tensorrt IProfiler", calls, trt_layer_events(times.totals), wall)

    def stream_callables(self, feeds: Sequence[Mapping[str, np.ndarray]], requests: int) -> list[Streams]:
        """For ``--streams``: one execution context and one CUDA stream (with buffers of its own) per request, the
        inputs copied to the device once. ``calls[k](i)`` enqueues one inference on stream ``k`` without waiting;
        ``finish[k]()`` waits for that stream. Contexts of one engine run concurrently, each on its own stream (the
        TensorRT developer guide's "Streaming"); they live until the runner is released."""
        count = max(1, requests)
        calls, finish = [], []
        for k in range(count):
            context, memory = self._new_context(feeds[k % len(feeds)])
            enqueue = self._enqueuer(context, memory)
            calls.append(lambda i, enqueue=enqueue: enqueue())
            finish.append(memory.synchronize)
        mode = "TensorRT execution contexts, one CUDA stream and host thread each"
        return [Streams(calls, finish, mode, count, count, 1)]

    def _enqueue(self, bound: tuple[tuple[str, tuple[int, ...], int], ...]) -> None:
        """Run the engine; with ``cuda_graph``, replay the graph captured for these shapes and buffer addresses."""
        memory = self._memory
        assert memory is not None
        enqueue = self._enqueuer(self._context, memory)

        if not self.cuda_graph:
            enqueue()
            return
        if bound not in self._graphs:
            enqueue()  # TensorRT does lazy work on the first run of a shape; a graph must not capture it
            self._graphs[bound] = memory.capture(enqueue)
            return
        self._graphs[bound]()


def layer_times(trt: Any) -> Any:
    """An ``IProfiler`` that sums each layer's reported time over the calls, in the order layers first report."""

    class LayerTimes(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.totals: dict[str, float] = {}

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.totals[layer_name] = self.totals.get(layer_name, 0.0) + ms

    return LayerTimes()


def trt_layer_events(totals: Mapping[str, float]) -> list[LayerEvent]:
    """TensorRT's layer names as the ONNX nodes they cover: a fused layer is its nodes joined by ``" + "``; a
    Myelin region ``{ForeignNode[A...B]}`` names only its first and last node, and is listed with those two (its
    time stays whole, never split among nodes); a reformatting layer covers no node (time not attributed)."""
    events = []
    for name, ms in totals.items():
        if name.startswith("{ForeignNode[") and name.endswith("]}"):
            covers, kind = tuple(name[len("{ForeignNode[") : -2].split("...")), "Myelin region"
        elif name.startswith("Reformatting CopyNode"):
            covers, kind = (), "Reformat"
        else:
            covers, kind = tuple(part.strip() for part in name.split(" + ")), "layer"
        events.append(LayerEvent(name, kind, ms, covers))
    return events


def _build(source: ModelSource, precision: str, run: RunContext) -> TrtRunner:
    """The engine ``rbench build`` made for that precision; a benchmark row builds it (or reuses its cache) on the
    way, as part of its cold start."""
    if run.build_engine is not None:
        run.build_engine(source, precision)
    engine = source.engine_file(precision)
    return TrtRunner(engine, precision=precision, source_sha256=source.source_sha256(precision))


SPECS = (
    BackendSpec(
        "trt",
        "cuda",
        "gpu",
        "TensorRT, the engine rbench build made for that precision",
        Consumes.ENGINE,
        {p: f"engines/model.{p}.engine" for p in PORTABLE},  # what rbench build makes
        _build,
        needs=("tensorrt",),
        streams=True,
        device_timing=True,
        marker="P",
        lacks={"bf16": "trt runs the artifact's graphs; bf16 has none"},
        triton="tensorrt",
    ),
)
