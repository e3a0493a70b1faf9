"""Raw latency samples -> the result object a report leads with, after ``torch.utils.benchmark``'s ``Measurement``.

The measurement *is* the result: it keeps its raw samples, and its statistics are fields, computed once when it is
made, so readers use ``m.p50`` rather than string keys. The median leads (latency is skewed); percentiles are
nearest-rank, as trtexec and OpenVINO's benchmark_app compute them; a spread warning is raised when IQR / median
exceeds 10%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

SPREAD_WARNING = 0.10  # IQR / median


def nearest_rank(sorted_values: np.ndarray, q: float) -> float:
    """The q-th percentile by nearest rank: the smallest value with at least q% of the samples at or below it."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


@dataclass(frozen=True)
class Measurement:
    """Per-iteration latencies (seconds) of one sweep point, each iteration a batch of ``batch`` images.

    ``Measurement.of(samples, batch)`` makes one; every statistic below is in seconds, except ``cv`` and
    ``iqr_over_median`` (ratios), ``throughput`` (images/s at the median) and ``iterations``.
    """

    p50: float
    iterations: int
    mean: float
    std: float
    min: float
    p90: float
    p95: float
    p99: float
    max: float
    cv: float
    iqr_over_median: float
    throughput: float
    total_s: float
    batch: int = field(default=1, compare=False)
    samples: tuple[float, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def of(cls, samples: tuple[float, ...] | list[float], batch: int) -> Measurement:
        if not len(samples):
            raise ValueError("a measurement needs at least one sample")
        values = np.sort(np.asarray(samples, dtype=np.float64))
        median = nearest_rank(values, 50)
        q1, q3 = np.percentile(values, [25, 75])
        mean = float(values.mean())
        spread = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        return cls(
            p50=median,
            iterations=len(values),
            mean=mean,
            std=spread,
            min=float(values[0]),
            p90=nearest_rank(values, 90),
            p95=nearest_rank(values, 95),
            p99=nearest_rank(values, 99),
            max=float(values[-1]),
            cv=spread / mean if len(values) > 1 and mean > 0 else 0.0,
            iqr_over_median=float((q3 - q1) / median) if median > 0 else 0.0,
            throughput=batch / median if median > 0 else float("inf"),
            total_s=float(values.sum()),
            batch=batch,
            samples=tuple(samples),
        )

    def stats(self) -> dict[str, float]:
        """The statistics as ``results.json`` stores them (schema 1: a point's ``stats``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("batch", "samples")}

    @classmethod
    def from_stats(cls, stats: dict[str, Any], batch: int, samples: list[float] | None = None) -> Measurement:
        """A measurement read back from a results file's ``stats`` (and raw ``samples``, where it kept them)."""
        names = [f.name for f in fields(cls) if f.name not in ("batch", "samples")]
        return cls(**{n: stats[n] for n in names}, batch=batch, samples=tuple(samples or ()))

    def warnings(self) -> list[str]:
        if self.iqr_over_median > SPREAD_WARNING:
            return [f"unstable: IQR is {self.iqr_over_median:.0%} of the median (> 10%)"]
        return []
