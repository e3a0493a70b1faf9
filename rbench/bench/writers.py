"""The run's output files, one writer each, in a table: a new format is one function and one line of ``WRITERS``.

Each writer turns ``results.json``'s data into the bytes of one file; ``write_results`` writes every one of them
atomically (a temp file, then a rename).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rbench._io import write_bytes_atomic
from rbench.bench.results import Row, baseline_throughput, rows_of

CSV_COLUMNS = (
    "backend",
    "variant",
    "precision",
    "executed",
    "device",
    "threads",
    "batch",
    "status",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "cv",
    "throughput",
    "speedup",
    "gflops",
    "share_of_peak",
    "cosine",
    "max_abs_rel",
    "top1",
    "parity",
    "accuracy_top1",
    "accuracy_top5",
    "agreement",
    "first_inference_ms",
    "session_s",
    "peak_rss_mb",
    "file",
    "scenario",
    "loadgen_validity",
    "loadgen_value",
)


def csv_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per backend × precision × batch (a skipped row: one line saying why)."""
    rows = rows_of(data)
    base = baseline_throughput(rows)
    out = []
    for r in rows:
        common = _csv_common(r)
        if r.skipped or r.error or not r.points:
            out.append({**common, "status": f"skipped: {r.skipped}" if r.skipped else f"error: {r.error}"})
            continue
        for p in r.points:
            s, e = p.stats, p.efficiency
            out.append(
                {
                    **common,
                    "batch": p.batch,
                    "status": f"error: {p.error}" if p.error else "ok",
                    **({f"{k}_ms": getattr(s, k) * 1e3 for k in ("p50", "p90", "p99", "mean")} if s else {}),
                    "cv": s.cv if s else None,
                    "throughput": s.throughput if s else None,
                    "speedup": s.throughput / base[p.batch] if s and p.batch in base else None,
                    "gflops": e.gflops if e else None,
                    "share_of_peak": e.share_of_peak if e else None,
                    "first_inference_ms": p.first_inference_s * 1e3 if p.first_inference_s else None,
                    "peak_rss_mb": p.peak_rss_mb,
                }
            )
    return out


def _csv_common(r: Row) -> dict[str, Any]:
    """The columns every line of a row shares: what ran, its parity, accuracy and LoadGen figures."""
    common = {k: getattr(r, k) for k in ("backend", "variant", "precision", "executed", "device", "threads", "file")}
    common |= {k: r.parity.get(k) for k in ("cosine", "max_abs_rel", "top1")}
    common["parity"] = "" if not r.parity else ("pass" if r.parity["passed"] else "FAIL")
    common["session_s"] = r.session_s
    common |= {k: r.accuracy.get(v) for k, v in (("accuracy_top1", "top1"), ("accuracy_top5", "top5"))}
    common["agreement"] = r.accuracy.get("agreement")
    validity = r.loadgen.get("validity") or r.loadgen.get("error")
    return common | {
        "scenario": r.loadgen.get("scenario"),
        "loadgen_validity": validity,
        "loadgen_value": r.loadgen.get("value"),
    }


def _json(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def _csv(data: dict[str, Any]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(csv_rows(data))
    return buffer.getvalue().encode()


def _markdown(data: dict[str, Any]) -> bytes:
    from rbench.bench.report import markdown

    return markdown(data).encode()


#: name -> (file name, writer): every file ``rbench run`` writes besides the plots
WRITERS: dict[str, tuple[str, Callable[[dict[str, Any]], bytes]]] = {
    "json": ("results.json", _json),
    "csv": ("results.csv", _csv),
    "markdown": ("report.md", _markdown),
}


def write_results(out: Path, data: dict[str, Any], plots: dict[str, bytes] | None = None) -> dict[str, Path]:
    """Every file of ``WRITERS`` and the PNGs (``rbench.bench.plot.plots``), each written atomically."""
    if plots is None:
        from rbench.bench.plot import plots as make_plots

        plots = make_plots(data)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (file_name, writer) in WRITERS.items():
        paths[name] = out / file_name
        write_bytes_atomic(paths[name], writer(data))
    for name, png in plots.items():
        paths[name] = out / f"{name}.png"
        write_bytes_atomic(paths[name], png)
    return paths
