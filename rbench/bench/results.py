"""The results of a run and ``results.json`` (schema ``RESULTS_SCHEMA``): this module owns both.

``RunResult`` holds ``Row`` s (one per backend × precision), each with a ``Point`` per batch size, whose latency is a
``Measurement`` and whose efficiency is computed when the point is made. What fails a run is decided on each row
alone (``Row.failures``).

JSON layout: ``schema``, ``created``, ``command``, ``seed``, ``environment`` (``rbench.bench.machine``: CPU vendor,
family, model, stepping, microcode, hypervisor, caches, ISA flags, measured clock, cores; GPU, driver and CUDA;
library versions; rbench's version and git SHA), ``config`` (the ``BenchConfig``), ``artifact``, ``model`` (MACs),
``peaks`` (every GEMM probe, and the best per precision), ``harness_overhead_s``, ``passed`` and ``rows``: backend,
precision requested and executed, variant, device, file, threads, settings, session creation time, parity (max error
/ max|ref|, cosine, top-1, bounds, passed), ``failures``, and per batch: statistics (seconds; throughput in images/s),
raw samples, first-inference time, peak RSS, warnings, error, audits, efficiency (GFLOP/s, share of peak). Files of
schema 1 written before ``failures`` and the machine record existed still read (``rbench compare``).
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from rbench.bench.config import BenchConfig
from rbench.bench.measurement import Measurement
from rbench.bench.peak import Probe, best_per_precision

RESULTS_SCHEMA = 1


@dataclass(frozen=True)
class Efficiency:
    """Achieved GFLOP/s (2 x MACs per image) and its share of this machine's measured peak for what executed."""

    gflops: float
    peak_precision: str
    peak_gflops: float | None
    peak_library: str | None
    share_of_peak: float | None
    probe_beaten: bool
    #: the CPU's peak on paper for that precision (``rbench.bench.peak.theoretical_peaks``), and the share of it
    theoretical_gflops: float | None = None
    share_of_theoretical: float | None = None

    @classmethod
    def of(
        cls, throughput: float, macs: int, precision: str, peaks: dict[str, Probe], paper: dict[str, Any] | None = None
    ) -> Efficiency:
        gflops = 2 * macs * throughput / 1e9
        peak = peaks.get(precision)
        share = gflops / peak.gflops if peak and peak.gflops else None
        ceiling = (paper or {}).get(precision)
        return cls(
            gflops,
            precision,
            peak.gflops if peak else None,
            peak.library if peak else None,
            share,
            bool(share and share > 1),
            ceiling.gflops if ceiling else None,
            gflops / ceiling.gflops if ceiling else None,
        )


@dataclass
class Point:
    """One batch size of one row."""

    batch: int
    stats: Measurement | None = None
    first_inference_s: float | None = None  # the cold call at this shape (torch.compile compiles here)
    peak_rss_mb: float | None = None
    peak_device_mb: float | None = None  # CUDA: what torch's allocator held at most (not other libraries' memory)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    nonfinite: int = 0  # NaN/Inf values in the outputs of the timed calls
    samples: list[float] = field(default_factory=list)  # raw latencies (s), in order; at most MAX_SAMPLES kept
    audits: dict[str, Any] = field(default_factory=dict)  # rbench.bench.audit's findings on this point
    #: CUDA only: compute alone (inputs already on the device, CUDA events), where the runner offers it
    compute_stats: Measurement | None = None
    efficiency: Efficiency | None = None
    #: (feed index, outputs) of up to SAMPLED timed calls, spread over the run, for the output audit (not saved)
    sampled: list[tuple[int, dict[str, np.ndarray]]] = field(default_factory=list, repr=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Point:
        """A point read back from results.json (any schema-1 file; fields it lacks take their defaults)."""
        known = {f.name for f in fields(cls)} - {"stats", "compute_stats", "efficiency", "sampled"}
        point = cls(**{k: v for k, v in raw.items() if k in known})
        samples = raw.get("samples") or []
        if raw.get("stats"):
            point.stats = Measurement.from_stats(raw["stats"], point.batch, samples)
        if raw.get("compute_stats"):
            point.compute_stats = Measurement.from_stats(raw["compute_stats"], point.batch)
        if raw.get("efficiency"):
            names = {f.name for f in fields(Efficiency)}
            point.efficiency = Efficiency(**{k: v for k, v in raw["efficiency"].items() if k in names})
        return point

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sampled"}
        for key in ("stats", "compute_stats"):
            out[key] = out[key].stats() if out[key] is not None else None
        out["efficiency"] = asdict(self.efficiency) if self.efficiency else {}
        return out


@dataclass
class Row:
    """One backend × precision: what ran, how close to PyTorch, and a point per batch size."""

    backend: str
    precision: str
    variant: str
    label: str
    device: str
    file: str | None
    baseline: bool = False
    skipped: str | None = None
    error: str | None = None
    executed: str | None = None  # what actually executed, in words
    executed_precision: str | None = None  # the precision its arithmetic ran in: the peak it is held to
    threads: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    session_s: float | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)
    recompiled: bool = False
    loadgen: dict[str, Any] = field(default_factory=dict)  # an MLPerf LoadGen scenario's figures, if one ran
    concurrency: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # batch -> --streams measurements
    accuracy: dict[str, Any] = field(default_factory=dict)  # --eval-data: top-1, top-5, agreement with PyTorch FP32

    def failures(self) -> list[str]:
        """What fails the run on this row: parity, timed outputs that are not the reference's (the output audit),
        NaN/Inf in the timed outputs."""
        found = list(self.parity.get("failing", [])) if self.parity and not self.parity["passed"] else []
        for p in self.points:
            outputs = p.audits.get("outputs") or {}
            if outputs and not outputs.get("passed", True):
                found.append(f"{self.label} b{p.batch}: {outputs.get('finding') or 'timed outputs differ'}")
            if p.nonfinite:
                found.append(f"{self.label} b{p.batch}: {p.nonfinite} NaN/Inf values in timed outputs")
        return found

    @property
    def failed(self) -> bool:
        return bool(self.failures())

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Row:
        """A row read back from results.json, its points typed."""
        known = {f.name for f in fields(cls)} - {"points"}
        row = cls(**{k: v for k, v in raw.items() if k in known})
        row.points = [Point.from_dict(p) for p in raw.get("points", [])]
        return row

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "points"}
        return {**out, "points": [p.to_dict() for p in self.points], "failed": self.failed, "failures": self.failures()}


@dataclass
class RunResult:
    artifact: Path
    rows: list[Row]
    peaks: list[Probe]
    overhead_s: float
    macs: int
    config: BenchConfig
    theoretical: dict[str, Any] = field(default_factory=dict)  # precision -> rbench.bench.peak.Theoretical

    @property
    def passed(self) -> bool:
        return not any(r.failed for r in self.rows)

    def to_json(self, command: list[str], env: dict[str, Any]) -> dict[str, Any]:
        return {
            "schema": RESULTS_SCHEMA,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": command,
            "seed": self.config.seed,
            "environment": env,
            "config": asdict(self.config),
            "artifact": str(Path(self.artifact).absolute()),  # what reads it later (deploy) may run elsewhere
            "model": {"macs": self.macs},
            "peaks": {
                "probes": [asdict(p) for p in self.peaks],
                "best": {k: asdict(v) for k, v in best_per_precision(self.peaks).items()},
                "theoretical": {k: asdict(v) for k, v in self.theoretical.items()},
            },
            "harness_overhead_s": self.overhead_s,
            "passed": self.passed,
            "rows": [r.to_dict() for r in self.rows],
        }


def run_failures(data: dict[str, Any]) -> list[str]:
    """What failed a run, from its results.json (each row's own ``failures``)."""
    return [f for r in data["rows"] for f in r.get("failures", [])]


def rows_of(data: dict[str, Any]) -> list[Row]:
    """The typed rows of a results.json's data: what the report, plots and CSV read."""
    return [Row.from_dict(r) for r in data["rows"]]


def baseline_throughput(rows: list[Row]) -> dict[int, float]:
    """Batch → images/s of the eager FP32 baseline row, which every speedup divides by."""
    return {p.batch: p.stats.throughput for r in rows if r.baseline for p in r.points if p.stats}


def read_results(path: Path) -> dict[str, Any]:
    """A results.json this or an older rbench wrote, checked against the schema: another schema is refused (exit
    3); a file that does not parse, or a field of the wrong type, is bad input (exit 2) naming the file and field."""
    from rbench._io import read_json_record
    from rbench.bench.schema import validate_results

    return read_json_record(path, RESULTS_SCHEMA, lambda d: validate_results(d, path), "results")
