"""Time one runner over the batch sizes: cold start, warm-up by time, timed runs; a failing point becomes an error
entry of its row and the sweep carries on (timm ``benchmark.py``'s ``_try_run``).

Timing stays out of runners: this module holds the clock. Inputs are validated once per batch, outside the timed
region, and ``infer(..., check_inputs=False)`` keeps the NaN/Inf scan out of it. The outputs of every timed call are
kept and checked for NaN/Inf afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from rbench.bench.clock import cuda_events, synchronize, wall
from rbench.bench.config import BenchConfig
from rbench.bench.inputs import batches
from rbench.bench.measurement import Measurement
from rbench.bench.results import Point
from rbench.errors import first_line
from rbench.runtime.base import Runner, validate_feed


def validated_feeds(runner: Runner, pool: np.ndarray, batch: int, input_name: str) -> list[dict[str, np.ndarray]]:
    """The pool's batches as feeds in the runner's input dtype, each validated once, outside any timed region."""
    specs = runner.input_specs()
    dtype = next((s.dtype for s in specs if s.name == input_name), np.dtype(np.float32))
    feeds = [{input_name: b.astype(dtype, copy=False)} for b in batches(pool, batch)]
    for feed in feeds:
        validate_feed(feed, specs)
    return feeds


def time_point(runner: Runner, pool: np.ndarray, batch: int, config: BenchConfig, input_name: str) -> Point:
    """Cold call, warm-up by time, then timed calls until both ``duration_s`` and ``min_iterations`` are reached."""
    point = Point(batch)
    try:
        feeds = validated_feeds(runner, pool, batch, input_name)
        reset_peak_rss()
        if config.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
        point.first_inference_s, _ = wall(lambda: runner.infer(feeds[0], check_inputs=False))
        _run_for(runner, feeds, config.warmup_s, 1, config.device)
        samples, outputs = _run_for(runner, feeds, config.duration_s, config.min_iterations, config.device)
    except Exception as exc:  # out of memory, an unsupported op: the row records it and the sweep goes on
        point.error = f"{type(exc).__name__}: {first_line(exc)}"
        return point
    point.peak_rss_mb = peak_rss_mb()
    if config.device == "cuda":
        import torch

        point.peak_device_mb = torch.cuda.max_memory_allocated() / 2**20
    point.samples = keep_samples(samples)
    if config.device == "cuda":
        point.compute_stats = _compute_only(runner, feeds[0], batch, min(len(samples), 200))
    point.stats = Measurement.of(samples, batch)
    point.warnings = point.stats.warnings()
    step = max(1, len(outputs) // SAMPLED)
    point.sampled = [(i % len(feeds), outputs[i]) for i in range(0, len(outputs), step)][:SAMPLED]
    point.nonfinite = sum(int((~np.isfinite(v)).sum()) for out in outputs for v in out.values())
    if point.nonfinite:
        point.warnings.append(f"{point.nonfinite} NaN/Inf values in the outputs of the timed calls")
    return point


def _compute_only(runner: Runner, feed: Mapping[str, np.ndarray], batch: int, count: int) -> Measurement | None:
    """Device time of the work alone, timed with CUDA events on inputs already on the device (end-to-end latency,
    host to device to host, is the point's own ``stats``); ``None`` where the runner cannot run that way."""
    call = runner.device_callable(feed)
    if call is None:
        return None
    call()
    return Measurement.of([cuda_events(call)[0] for _ in range(max(1, count))], batch)


#: Raw samples a results file keeps per point, so ``rbench compare`` can bootstrap saved runs.
MAX_SAMPLES = 2000
#: Timed calls whose outputs the output audit compares with the reference (spread over the timed run).
SAMPLED = 32


def keep_samples(samples: list[float], limit: int = MAX_SAMPLES) -> list[float]:
    """At most ``limit`` samples, evenly strided so their order (and autocorrelation) is kept."""
    if len(samples) <= limit:
        return list(samples)
    step = len(samples) / limit
    return [samples[int(i * step)] for i in range(limit)]


def _run_for(
    runner: Runner, feeds: list[Mapping[str, np.ndarray]], seconds: float, at_least: int, device: str
) -> tuple[list[float], list[dict[str, np.ndarray]]]:
    """Call ``runner`` on the feeds in turn until ``seconds`` have passed and ``at_least`` calls were made."""
    samples: list[float] = []
    outputs: list[dict[str, np.ndarray]] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    i = 0
    while len(samples) < at_least or clock() < deadline:
        feed = feeds[i % len(feeds)]
        start = clock()
        out = runner.infer(feed, check_inputs=False)
        synchronize(device)
        samples.append((clock() - start) * 1e-9)
        outputs.append(out)
        i += 1
    return samples, outputs


class NoopRunner(Runner):
    """Returns its input untouched: what the harness itself costs per iteration."""

    backend = "noop"

    def __init__(self, input_shape: tuple[int, ...], input_name: str = "input") -> None:
        super().__init__("noop", "cpu", "fp32")
        self.input_shape = input_shape
        self.input_name = input_name

    def input_specs(self) -> list[Any]:
        from rbench.runtime.base import TensorSpec

        return [TensorSpec(self.input_name, np.dtype(np.float32), ("batch", *self.input_shape))]

    def _activate(self) -> None:
        pass

    def _deactivate(self) -> None:
        pass

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"output": feed[self.input_name][:, :1, 0, 0]}  # a view: nothing copied, little to scan


def harness_overhead(pool: np.ndarray, config: BenchConfig, input_name: str = "input") -> float:
    """Median seconds per iteration of the timing loop around a runner that does nothing."""
    with NoopRunner(pool.shape[1:], input_name) as noop:
        # by count, not time: a no-op call takes well under a microsecond, and each call's output is kept
        quick = BenchConfig(batch_sizes=(1,), warmup_s=0.01, duration_s=0.001, min_iterations=2000, seed=config.seed)
        point = time_point(noop, pool, 1, quick, input_name)
    assert point.stats is not None, point.error
    return point.stats.p50


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (``/proc/self/clear_refs``), so each point reports its own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float | None:
    """The process's peak resident set since the last reset (``VmHWM``), MiB; ``None`` where unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def timed_activation(runner: Runner) -> float:
    """Seconds ``runner`` takes to activate (session, engine or compile-wrapper creation)."""
    seconds, _ = wall(runner.activate)
    return seconds


def sweep(
    runner: Runner,
    pool: np.ndarray,
    config: BenchConfig,
    input_name: str,
    on_point: Callable[[Point], None] = lambda point: None,
) -> list[Point]:
    """Every batch size of ``config`` on an active runner."""
    points = []
    for batch in config.batch_sizes:
        points.append(time_point(runner, pool, batch, config, input_name))
        on_point(points[-1])
    return points
