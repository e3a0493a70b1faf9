"""``rbench compare OLD.json NEW.json``: which rows got faster or slower, with a confidence interval that holds.

Latency samples are neither normal nor independent (a noisy neighbour slows a stretch of consecutive calls), so the
interval of the ratio of medians comes from a moving-block bootstrap: each run's samples are resampled in blocks of
consecutive calls (length about n^(1/3)), the median ratio is taken over ``resamples`` draws, and the 2.5th and 97.5th
percentiles bound it. A change is significant only when the interval excludes 1 *and* the ratio passes the
threshold (asv pairs a statistical test with a ratio factor the same way; a t-test alone, as pyperf does, is
fragile on such samples).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rbench.errors import ArtifactError, BadInputError

#: What must be equal for two runs to be compared without ``--allow-env-change`` (the CPU: ``cpu_differences``).
ENVIRONMENT_KEYS = (
    ("gpu", lambda d: d["environment"]["gpu"].get("name")),
    ("libraries", lambda d: {k: v for k, v in d["environment"]["libraries"].items() if k != "rbench"}),
    ("settings", lambda d: {k: v for k, v in d["config"].items() if k not in ("batch_sizes", "seed")}),
    ("model", lambda d: d["model"]),
)


@dataclass(frozen=True)
class Change:
    key: tuple[str, ...]  # backend, variant, precision, device, batch
    old_p50: float
    new_p50: float
    ratio: float  # new / old median latency: above 1 is slower
    low: float
    high: float
    verdict: str  # "slower", "faster", "no significant change"

    @property
    def throughput_ratio(self) -> float:
        return 1 / self.ratio


def bootstrap_ratio(
    old: np.ndarray, new: np.ndarray, resamples: int = 2000, seed: int = 0, block: int | None = None
) -> tuple[float, float, float]:
    """Median(new) / median(old), and its 95% interval by a moving-block bootstrap of each sample series."""
    rng = np.random.default_rng(seed)
    ratio = float(np.median(new) / np.median(old))
    draws = _block_medians(new, resamples, rng, block) / _block_medians(old, resamples, rng, block)
    low, high = np.percentile(draws, [2.5, 97.5])
    return ratio, float(low), float(high)


def _block_medians(x: np.ndarray, resamples: int, rng: np.random.Generator, block: int | None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    size = block or max(1, round(n ** (1 / 3)))
    starts = rng.integers(0, n - size + 1, size=(resamples, -(-n // size)))
    index = (starts[:, :, None] + np.arange(size)).reshape(resamples, -1)[:, :n]
    return np.median(x[index], axis=1)


def verdict(ratio: float, low: float, high: float, threshold: float) -> str:
    if low > 1 and ratio > 1 + threshold:
        return "slower"
    if high < 1 and ratio < 1 / (1 + threshold):
        return "faster"
    return "no significant change"


def row_key(row: dict[str, Any], point: dict[str, Any]) -> tuple[str, ...]:
    return (row["backend"], row["variant"], row["precision"], row["device"], str(point["batch"]))


def _points(data: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    return {row_key(r, p): p for r in data["rows"] for p in r["points"] if p.get("stats") and p.get("samples")}


def environment_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between the machines, libraries and settings of two runs."""
    from rbench.bench.machine import cpu_differences

    found = cpu_differences(old["environment"]["cpu"], new["environment"]["cpu"])
    return found + [f"{name}: {get(old)} -> {get(new)}" for name, get in ENVIRONMENT_KEYS if get(old) != get(new)]


@dataclass
class Comparison:
    changes: list[Change]
    only_old: list[tuple[str, ...]]
    only_new: list[tuple[str, ...]]
    differences: list[str]
    threshold: float
    resamples: int

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == "slower"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "resamples": self.resamples,
            "confidence": 0.95,
            "environment_differences": self.differences,
            "rows": [{**asdict(c), "key": list(c.key), "throughput_ratio": c.throughput_ratio} for c in self.changes],
            "only_old": [list(k) for k in self.only_old],
            "only_new": [list(k) for k in self.only_new],
            "regressions": len(self.regressions),
        }


def compare_results(
    old: dict[str, Any],
    new: dict[str, Any],
    threshold: float = 0.05,
    resamples: int = 2000,
    allow_env_change: bool = False,
    seed: int = 0,
) -> Comparison:
    """Match rows by backend, variant, precision, device and batch; bootstrap each matched pair."""
    if not 0 <= threshold < 10 or not 100 <= resamples <= 1_000_000:
        raise BadInputError(f"--threshold must be 0 to 10 and --resamples 100 or more; got {threshold}, {resamples}")
    differences = environment_differences(old, new)
    if differences and not allow_env_change:
        raise ArtifactError(
            "the two runs would mislead: " + "; ".join(differences) + " (--allow-env-change compares them anyway)"
        )
    a, b = _points(old), _points(new)
    changes = []
    for key in (k for k in a if k in b):
        ratio, low, high = bootstrap_ratio(
            np.asarray(a[key]["samples"]), np.asarray(b[key]["samples"]), resamples, seed
        )
        changes.append(
            Change(
                key,
                a[key]["stats"]["p50"],
                b[key]["stats"]["p50"],
                ratio,
                low,
                high,
                verdict(ratio, low, high, threshold),
            )
        )
    return Comparison(
        changes, [k for k in a if k not in b], [k for k in b if k not in a], differences, threshold, resamples
    )


def markdown(comparison: Comparison) -> str:
    """A table for a CI job summary."""
    lines = [
        f"rbench compare: {len(comparison.regressions)} significant regression(s) beyond {comparison.threshold:.0%} "
        f"(95% interval, moving-block bootstrap, {comparison.resamples} resamples)",
        "",
        "| row | batch | old p50 ms | new p50 ms | new/old | 95% interval | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparison.changes:
        label = " ".join(p for p in c.key[:3] if p)
        lines.append(
            f"| {label} | {c.key[4]} | {c.old_p50 * 1e3:.2f} | {c.new_p50 * 1e3:.2f} | {c.ratio:.3f} | "
            f"{c.low:.3f} to {c.high:.3f} | {c.verdict} |"
        )
    for side, keys in (("old", comparison.only_old), ("new", comparison.only_new)):
        lines += [f"- only in the {side} run: {' '.join(p for p in k if p)}" for k in keys]
    lines += [f"- environment differs: {d}" for d in comparison.differences]
    return "\n".join(lines) + "\n"
