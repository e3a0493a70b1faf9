"""Throughput with several requests in flight (``rbench run --streams N``).

- OpenVINO: ``AsyncInferQueue`` on a model compiled with ``PERFORMANCE_HINT=THROUGHPUT`` (``N=0``: the queue's
  optimal request count), beside the same model under ``LATENCY`` with one request.
- ONNX Runtime: N threads calling one shared ``InferenceSession`` (its ``run`` is documented as thread-safe), each
  stream given ``threads // N`` intra-op threads.
- torch on CUDA: N CUDA streams, one host thread each, inputs already on the device; TensorRT: N execution contexts
  of one engine, each with its own CUDA stream, buffers and host thread.

Each measurement counts images completed over wall time after a warm-up, and records its streams and the threads
per stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rbench.errors import first_line


def _until(seconds: float) -> float:
    return time.perf_counter() + seconds


def openvino_throughput(
    model: Path, hint: str, feeds: list[np.ndarray], streams: int, seconds: float, threads: int, mode: str
) -> dict[str, Any]:
    """Images/s of an OpenVINO model with ``streams`` requests in flight (``mode``: THROUGHPUT or LATENCY)."""
    import openvino as ov

    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": mode}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(model), "CPU", config)
    queue = ov.AsyncInferQueue(compiled, streams)  # 0: OpenVINO's optimal number of requests
    done = [0]
    queue.set_callback(lambda request, userdata: done.__setitem__(0, done[0] + 1))
    for phase in ("warm-up", "timed"):
        end, issued = _until(seconds / 4 if phase == "warm-up" else seconds), 0
        done[0], start = 0, time.perf_counter()
        while time.perf_counter() < end:
            queue.start_async({0: feeds[issued % len(feeds)]})
            issued += 1
        queue.wait_all()
        elapsed = time.perf_counter() - start
    in_flight = len(queue)
    found_streams = int(compiled.get_property("NUM_STREAMS"))
    found_threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
    return {
        "backend": "openvino",
        "mode": f"AsyncInferQueue, PERFORMANCE_HINT={mode}",
        "requests": in_flight,
        "streams": found_streams,
        "threads_per_stream": max(1, found_threads // max(1, found_streams)),
        "throughput": done[0] * len(feeds[0]) / elapsed,
    }


def run_threads(
    call: Callable[[int, int], Any], streams: int, seconds: float, finish: Callable[[int], Any] = lambda k: None
) -> tuple[list[int], float]:
    """``streams`` threads each calling ``call(stream, i)`` until the deadline (after a warm-up of a quarter of it);
    ``finish(stream)`` runs before each thread stops (a CUDA stream's synchronize). Returns calls per stream and the
    wall time of the timed phase."""
    counts = [0] * streams

    def worker(k: int, end: float) -> None:
        i = 0
        while time.perf_counter() < end:
            call(k, i)
            i += 1
        finish(k)
        counts[k] = i

    elapsed = 0.0
    for phase_seconds in (seconds / 4, seconds):
        end, start = _until(phase_seconds), time.perf_counter()
        workers = [threading.Thread(target=worker, args=(k, end)) for k in range(streams)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - start
    return counts, elapsed


def cuda_streams_throughput(runner: Any, feeds: list[np.ndarray], streams: int, seconds: float) -> dict[str, Any]:
    """Images/s with ``streams`` CUDA streams, one host thread each, inputs already on the device: a torch runner's
    device path under ``torch.cuda.stream``, or a TensorRT runner's execution contexts, one per stream."""
    name = runner.input_specs()[0].name
    inputs = [{name: feeds[k % len(feeds)]} for k in range(streams)]
    if runner.backend == "trt":
        calls, finish = runner.stream_callables(inputs)
        mode = "TensorRT execution contexts, one CUDA stream and host thread each"
    else:
        import torch

        devices = [runner.device_callable(feed) for feed in inputs]
        cuda_streams = [torch.cuda.Stream() for _ in range(streams)]

        def on_stream(k: int) -> Callable[[], None]:
            def call() -> None:
                with torch.cuda.stream(cuda_streams[k]):
                    devices[k]()

            return call

        calls = [on_stream(k) for k in range(streams)]
        finish = [s.synchronize for s in cuda_streams]
        mode = "CUDA streams, one host thread each"
    counts, elapsed = run_threads(lambda k, i: calls[k](), streams, seconds, finish=lambda k: finish[k]())
    return {
        "backend": runner.backend,
        "mode": mode,
        "requests": streams,
        "streams": streams,
        "threads_per_stream": 1,
        "throughput": sum(counts) * len(feeds[0]) / elapsed,
    }


def ort_throughput(model: Path, feeds: list[np.ndarray], streams: int, seconds: float, threads: int) -> dict[str, Any]:
    """Images/s of ``streams`` threads sharing one ONNX Runtime session."""
    import onnxruntime as ort

    per_stream = max(1, threads // max(1, streams))
    options = ort.SessionOptions()
    options.intra_op_num_threads = per_stream
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    counts, elapsed = run_threads(
        lambda k, i: session.run(None, {name: feeds[(k + i * streams) % len(feeds)]}), streams, seconds
    )
    return {
        "backend": "ort",
        "mode": "threads sharing one InferenceSession",
        "requests": streams,
        "streams": streams,
        "threads_per_stream": per_stream,
        "throughput": sum(counts) * len(feeds[0]) / elapsed,
    }


def measure_streams(
    backend: str, model: Path, precision: str, feeds: list[np.ndarray], streams: int, seconds: float, threads: int
) -> list[dict[str, Any]]:
    """The row's throughput with ``streams`` in flight (and, for OpenVINO, its LATENCY setting for comparison)."""
    from rbench.runtime.openvino_runner import HINTS

    try:
        if backend == "openvino":
            hint = HINTS[precision]
            return [
                openvino_throughput(model, hint, feeds, 1, seconds, threads, "LATENCY"),
                openvino_throughput(model, hint, feeds, streams, seconds, threads, "THROUGHPUT"),
            ]
        if backend == "ort":
            return [ort_throughput(model, feeds, max(1, streams), seconds, threads)]
    except Exception as exc:
        return [{"backend": backend, "error": f"{type(exc).__name__}: {first_line(exc)}"}]
    return [{"backend": backend, "skipped": "requests in flight: ort, openvino; torch and trt on CUDA (streams)"}]
