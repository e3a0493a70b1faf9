"""Clocks that synchronize before reading: ``perf_counter_ns`` on the CPU, CUDA events on the GPU.

A GPU measurement reports compute-only latency (inputs already on the device, CUDA events around the work) apart
from end-to-end latency (host to device to host, wall clock after a synchronize).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wall(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call of ``fn`` takes on the host clock, and its result."""
    start = time.perf_counter_ns()
    result = fn()
    return (time.perf_counter_ns() - start) * 1e-9, result


def cuda_events(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds of device time between two CUDA events around ``fn``, synchronized before reading."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    result = fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e-3, result


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
