"""Throughput with several requests in flight (``rbench run --streams N``), on the row's own runner.

How a backend puts requests in flight is its runner's business (``Runner.stream_callables``): OpenVINO an
``AsyncInferQueue`` under ``PERFORMANCE_HINT=THROUGHPUT`` beside ``LATENCY`` with one request; ONNX Runtime N threads
sharing one ``InferenceSession`` of ``threads // N`` intra-op threads each; torch on CUDA N CUDA streams, one host
thread each; TensorRT N execution contexts of one engine. This module holds the clock: each setting counts images
completed over wall time after a warm-up, and records its requests, streams and threads per stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from rbench.errors import first_line
from rbench.runtime.base import NotSupported, Runner, Streams


def run_threads(
    call: Callable[[int, int], Any], streams: int, seconds: float, finish: Callable[[int], Any] = lambda k: None
) -> tuple[list[int], float]:
    """``streams`` threads each calling ``call(stream, i)`` until the deadline; ``finish(stream)`` runs before each
    thread stops (a CUDA stream's synchronize). Returns calls per stream and the wall time."""
    counts = [0] * streams
    end, start = time.perf_counter() + seconds, time.perf_counter()

    def worker(k: int) -> None:
        i = 0
        while time.perf_counter() < end:
            call(k, i)
            i += 1
        finish(k)
        counts[k] = i

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(streams)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return counts, time.perf_counter() - start


def throughput(streams: Streams, batch: int, seconds: float) -> dict[str, Any]:
    """Images/s of one setting: a warm-up of a quarter of ``seconds``, then ``seconds`` timed."""
    n = len(streams.calls)
    completed, elapsed = 0, 0.0
    for phase in (seconds / 4, seconds):
        counts, elapsed = run_threads(lambda k, i: streams.calls[k](i), n, phase, lambda k: streams.finish[k]())
        completed = sum(counts)
    return {
        "mode": streams.mode,
        "requests": streams.requests,
        "streams": streams.streams,
        "threads_per_stream": streams.threads_per_stream,
        "throughput": completed * batch / elapsed,
    }


def measure_streams(
    runner: Runner, feeds: Sequence[Mapping[str, np.ndarray]], requests: int, seconds: float
) -> list[dict[str, Any]]:
    """The row's throughput with ``requests`` in flight, for each setting its runner offers (OpenVINO: LATENCY
    with one request beside THROUGHPUT); a runner without the ability says so, an error is recorded."""
    batch = len(next(iter(feeds[0].values())))
    try:
        return [
            {"backend": runner.backend, **throughput(s, batch, seconds)}
            for s in runner.stream_callables(feeds, requests)
        ]
    except NotSupported as exc:
        return [{"backend": runner.backend, "skipped": str(exc)}]
    except Exception as exc:
        return [{"backend": runner.backend, "error": f"{type(exc).__name__}: {first_line(exc)}"}]
