"""``results.json`` checked against its schema on reading: each field a reader uses, with its type, so a corrupt file
is bad input (exit 2) in one line naming the file and the field, never a traceback and never exit 1 (a CI gate
reads 1 as a regression)."""

from __future__ import annotations

import math
from numbers import Real
from pathlib import Path
from typing import Any

from rbench.errors import BadInputError

_ROW = {"backend": str, "precision": str, "variant": str, "device": str, "points": list}
_STATS = ("p50", "p90", "p99", "mean", "throughput")


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _bad(path: Path, where: str, value: Any, expected: str) -> BadInputError:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return BadInputError(f"corrupt results {path}: {where} is {shown}, expected {expected}")


def _need(record: dict[str, Any], key: str, kind: type, path: Path, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise BadInputError(f"corrupt results {path}: {where} has no {key!r}")
    value = record[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _bad(path, f"{where}.{key}" if where else key, value, kind.__name__)
    return value


def validate_results(data: Any, path: Path) -> None:
    """Every field ``rbench compare`` and the reports read, with its type; raise ``BadInputError`` at the first
    that is missing or wrong."""
    if not isinstance(data, dict):
        raise _bad(path, "the file", data, "a JSON object")
    for key, kind in (("environment", dict), ("config", dict), ("model", dict), ("rows", list)):
        _need(data, key, kind, path, "")
    for i, row in enumerate(data["rows"]):
        where = f"rows[{i}]"
        if not isinstance(row, dict):
            raise _bad(path, where, row, "an object")
        for key, kind in _ROW.items():
            _need(row, key, kind, path, where)
        for j, point in enumerate(row["points"]):
            _point(point, path, f"{where}.points[{j}]")


def _point(point: Any, path: Path, where: str) -> None:
    if not isinstance(point, dict):
        raise _bad(path, where, point, "an object")
    batch = _need(point, "batch", int, path, where)
    if batch < 1:
        raise _bad(path, f"{where}.batch", batch, "a batch size of 1 or more")
    stats = point.get("stats")
    if stats is not None:
        if not isinstance(stats, dict):
            raise _bad(path, f"{where}.stats", stats, "an object")
        for key in _STATS:
            if key in stats and not _number(stats[key]):
                raise _bad(path, f"{where}.stats.{key}", stats[key], "a finite number")
    samples = point.get("samples", [])
    if not isinstance(samples, list):
        raise _bad(path, f"{where}.samples", samples, "a list of seconds")
    for k, value in enumerate(samples):
        if not _number(value) or value < 0:
            raise _bad(path, f"{where}.samples[{k}]", value, "a latency in seconds (a number >= 0)")
