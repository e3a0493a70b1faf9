"""Raw latency samples → the statistics a report leads with, after ``torch.utils.benchmark``'s ``Measurement``.

The median leads (latency is skewed); percentiles are nearest-rank, as trtexec and OpenVINO's benchmark_app compute
them; a spread warning is raised when IQR / median exceeds 10%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SPREAD_WARNING = 0.10  # IQR / median


def nearest_rank(sorted_values: np.ndarray, q: float) -> float:
    """The q-th percentile by nearest rank: the smallest value with at least q% of the samples at or below it."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


@dataclass(frozen=True)
class Measurement:
    """Per-iteration latencies (seconds) of one sweep point, each iteration a batch of ``batch`` images."""

    samples: tuple[float, ...]
    batch: int
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError("a measurement needs at least one sample")

    @property
    def _sorted(self) -> np.ndarray:
        return np.sort(np.asarray(self.samples, dtype=np.float64))

    def stats(self) -> dict[str, float]:
        """mean, std, min, p50, p90, p95, p99, max (seconds), cv, iqr/median, throughput (images/s)."""
        values = self._sorted
        median = nearest_rank(values, 50)
        q1, q3 = np.percentile(values, [25, 75])
        mean = float(values.mean())
        return {
            "iterations": len(values),
            "mean": mean,
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values[0]),
            "p50": median,
            "p90": nearest_rank(values, 90),
            "p95": nearest_rank(values, 95),
            "p99": nearest_rank(values, 99),
            "max": float(values[-1]),
            "cv": float(values.std(ddof=1) / mean) if len(values) > 1 and mean > 0 else 0.0,
            "iqr_over_median": float((q3 - q1) / median) if median > 0 else 0.0,
            "throughput": self.batch / median if median > 0 else float("inf"),
            "total_s": float(values.sum()),
        }

    def warnings(self) -> list[str]:
        stats = self.stats()
        out = []
        if stats["iqr_over_median"] > SPREAD_WARNING:
            out.append(f"unstable: IQR is {stats['iqr_over_median']:.0%} of the median (> 10%)")
        return out
