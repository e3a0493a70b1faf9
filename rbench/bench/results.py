"""``results.json`` (schema ``RESULTS_SCHEMA``, documented in the README), ``results.csv`` and the environment.

JSON layout: ``schema``, ``created``, ``command``, ``seed``, ``environment`` (CPU model, cores and flags; GPU,
driver and CUDA; library versions; rbench's version and git SHA), ``config`` (the ``BenchConfig``), ``artifact``,
``model`` (name, MACs), ``peaks`` (every GEMM probe, and the best per precision), ``harness_overhead_s`` and
``rows``: backend, precision requested and executed, variant, device, file, threads, settings, session creation
time, parity (max error / max|ref|, cosine, top-1, bounds, passed), and per batch: statistics (seconds; throughput
in images/s), first-inference time, peak RSS, warnings, error, efficiency (GFLOP/s, share of peak).
"""

from __future__ import annotations

import csv
import datetime
import io
import platform
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rbench._io import write_bytes_atomic, write_json_atomic

RESULTS_SCHEMA = 1
LIBRARIES = ("rbench", "torch", "onnx", "onnxruntime", "openvino", "tensorrt", "numpy", "mlcommons-loadgen")
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_bf16", "amx_int8", "avx_vnni")
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


def environment() -> dict[str, Any]:
    from rbench.env import cpu_flags, cpu_model, cuda_device, driver_version, logical_cores, package_version
    from rbench.errors import EnvironmentProblem

    try:
        gpu, capability, cuda = cuda_device()
        gpu_info: dict[str, Any] = {"name": gpu, "compute_capability": capability, "cuda": cuda}
    except EnvironmentProblem as exc:
        gpu_info = {"name": None, "why": str(exc)}
    gpu_info["driver"] = driver_version()
    flags = cpu_flags()
    return {
        "cpu": {"model": cpu_model(), "logical_cores": logical_cores(), "flags": [f for f in CPU_FLAGS if f in flags]},
        "gpu": gpu_info,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": {name: package_version(name) for name in LIBRARIES},
        "rbench_git_sha": git_sha(),
    }


def git_sha() -> str | None:
    """The commit of the rbench checkout this runs from, where it is one."""
    root = Path(__file__).resolve().parents[2]
    try:
        found = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None


def to_json(result: Any, command: list[str], env: dict[str, Any]) -> dict[str, Any]:
    from rbench.bench.peak import best_per_precision
    from rbench.bench.run import efficiency

    best = best_per_precision(result.peaks)
    rows = []
    for row in result.rows:
        entry = row.to_dict()
        for point, raw in zip(row.points, entry["points"], strict=True):
            raw["efficiency"] = efficiency(row, point, result.macs, best)
        rows.append(entry)
    return {
        "schema": RESULTS_SCHEMA,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "seed": result.config.seed,
        "environment": env,
        "config": asdict(result.config),
        "artifact": str(result.artifact),
        "model": {"macs": result.macs},
        "peaks": {
            "probes": [asdict(p) for p in result.peaks],
            "best": {k: asdict(v) for k, v in best.items()},
        },
        "harness_overhead_s": result.overhead_s,
        "passed": result.passed,
        "rows": rows,
    }


def baseline_throughput(data: dict[str, Any]) -> dict[int, float]:
    """Batch → images/s of the eager FP32 baseline row, which every speedup divides by."""
    return {
        p["batch"]: p["stats"]["throughput"] for r in data["rows"] if r["baseline"] for p in r["points"] if p["stats"]
    }


def csv_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per backend × precision × batch (a skipped row: one line saying why)."""
    base = baseline_throughput(data)
    out = []
    for r in data["rows"]:
        common = {k: r.get(k) for k in ("backend", "variant", "precision", "executed", "device", "threads", "file")}
        common |= {k: r["parity"].get(k) for k in ("cosine", "max_abs_rel", "top1")}
        common["parity"] = "" if not r["parity"] else ("pass" if r["parity"]["passed"] else "FAIL")
        common["session_s"] = r["session_s"]
        accuracy = r.get("accuracy") or {}
        common |= {"accuracy_top1": accuracy.get("top1"), "accuracy_top5": accuracy.get("top5")}
        common["agreement"] = accuracy.get("agreement")
        loadgen = r.get("loadgen") or {}
        common |= {
            "scenario": loadgen.get("scenario"),
            "loadgen_validity": loadgen.get("validity") or loadgen.get("error"),
            "loadgen_value": loadgen.get("value"),
        }
        if r["skipped"] or r["error"] or not r["points"]:
            out.append({**common, "status": f"skipped: {r['skipped']}" if r["skipped"] else f"error: {r['error']}"})
            continue
        for p in r["points"]:
            s, e = p["stats"] or {}, p.get("efficiency") or {}
            out.append(
                {
                    **common,
                    "batch": p["batch"],
                    "status": f"error: {p['error']}" if p["error"] else "ok",
                    **{f"{k}_ms": s[k] * 1e3 for k in ("p50", "p90", "p99", "mean") if k in s},
                    "cv": s.get("cv"),
                    "throughput": s.get("throughput"),
                    "speedup": s["throughput"] / base[p["batch"]] if s and p["batch"] in base else None,
                    "gflops": e.get("gflops"),
                    "share_of_peak": e.get("share_of_peak"),
                    "first_inference_ms": p["first_inference_s"] * 1e3 if p["first_inference_s"] else None,
                    "peak_rss_mb": p["peak_rss_mb"],
                }
            )
    return out


def write_results(out: Path, data: dict[str, Any], markdown: str, plots: dict[str, bytes]) -> dict[str, Path]:
    """results.json, results.csv, report.md and the PNGs, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "csv": out / "results.csv", "markdown": out / "report.md"}
    write_json_atomic(paths["json"], data)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(csv_rows(data))
    write_bytes_atomic(paths["csv"], buffer.getvalue().encode())
    write_bytes_atomic(paths["markdown"], markdown.encode())
    for name, png in plots.items():
        paths[name] = out / f"{name}.png"
        write_bytes_atomic(paths[name], png)
    return paths


def read_results(path: Path) -> dict[str, Any]:
    """A results.json this or an older rbench wrote; another schema is refused (exit 3)."""
    from rbench._io import read_json_record

    return read_json_record(path, RESULTS_SCHEMA, lambda d: (d["rows"], d["environment"], d["config"]), "results")
