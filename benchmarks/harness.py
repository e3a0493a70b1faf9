"""How much the harness itself costs and how far its figures are from a bare loop, measured side by side.

    .venv/bin/python benchmarks/harness.py [results/results.json]

1. Harness overhead per iteration (a no-op runner through the timing loop) against ResNet-18 batch-1 latency on
   ONNX Runtime CPU, the fastest ResNet-18 row: the goal is <= 1%.
2. The ONNX Runtime row against a bare ``InferenceSession.run`` loop on the same model, threads and inputs, in
   alternating blocks of one run (so drift hits both alike): the goal is within 5%.
3. From a ``rbench run`` results file (``make bench``): the fastest row that passes parity at batch 1 against eager
   FP32 (goal >= 5x, aim 6x), and the best FP32 row's share of the measured FP32 peak (goal >= 80%).

Writes ``benchmarks/results/harness.json`` and prints the README's lines. Timings on a shared 2-core machine vary
run to run; every comparison here is within one run.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def bare_loop(session, feeds, seconds: float) -> list[float]:
    samples, deadline, i = [], time.perf_counter() + seconds, 0
    while time.perf_counter() < deadline or len(samples) < 10:
        start = time.perf_counter_ns()
        session.run(None, feeds[i % len(feeds)])
        samples.append((time.perf_counter_ns() - start) * 1e-9)
        i += 1
    return samples


def main() -> None:
    import onnxruntime as ort

    from rbench.bench.config import BenchConfig
    from rbench.bench.inputs import batches, image_pool
    from rbench.bench.parity import export_artifact
    from rbench.bench.sweep import harness_overhead, time_point
    from rbench.export.pipeline import ModelConfig
    from rbench.models import get_spec
    from rbench.runtime import OrtRunner

    threads = 2
    with tempfile.TemporaryDirectory() as tmp:
        artifact = export_artifact(ModelConfig("resnet18"), out=tmp)
        path = artifact.path / "model.onnx"
        pool = image_pool(get_spec("resnet18").preprocess, 32, 0)
        config = BenchConfig(batch_sizes=(1,), warmup_s=1.0, duration_s=3.0, min_iterations=50, threads=threads)
        overhead = harness_overhead(pool, config)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = [{"input": b} for b in batches(pool, 1)]
        harness, bare = [], []
        with OrtRunner(path, intra_op_threads=threads) as runner:
            bare_loop(session, feeds, 1.0)  # warm both
            for _ in range(4):  # alternating blocks: A B A B ...
                harness.append(time_point(runner, pool, 1, config, "input").stats.p50)
                bare.append(float(np.median(bare_loop(session, feeds, 3.0))))
    latency = float(np.median(harness))
    summary = {
        "threads": threads,
        "overhead_s": overhead,
        "resnet18_ort_b1_p50_s": latency,
        "overhead_share": overhead / latency,
        "ort_row_p50_s": harness,
        "bare_loop_p50_s": bare,
        "ort_row_over_bare": float(np.median(harness) / np.median(bare)),
    }
    summary |= from_results(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "results" / "results.json")
    out = ROOT / "benchmarks" / "results" / "harness.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"harness overhead {overhead * 1e6:.1f} us per call = {summary['overhead_share']:.3%} of ResNet-18 "
        f"batch-1 on ONNX Runtime ({latency * 1e3:.2f} ms)"
    )
    print(
        f"ONNX Runtime row / bare InferenceSession.run loop, medians of 4 alternating blocks: "
        f"{summary['ort_row_over_bare']:.3f}"
    )
    for key in ("fastest_passing_b1", "best_fp32"):
        if key in summary:
            print(key, summary[key])
    print(f"-> {out}")


def from_results(path: Path) -> dict:
    """The speed and peak figures of a ``rbench run`` results file, if there is one."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    rows = [r for r in data["rows"] if r["points"] and r["parity"] and r["parity"]["passed"]]
    base = next(r for r in data["rows"] if r["baseline"])
    b1 = {r["label"]: next((p for p in r["points"] if p["batch"] == 1 and p["stats"]), None) for r in rows}
    base_b1 = next(p for p in base["points"] if p["batch"] == 1)["stats"]["throughput"]
    label, best = max(((k, v) for k, v in b1.items() if v), key=lambda kv: kv[1]["stats"]["throughput"])
    fp32 = [(r["label"], p) for r in rows if r["precision"] == "fp32" for p in r["points"] if p.get("efficiency")]
    fp32_label, fp32_best = max(fp32, key=lambda lp: lp[1]["efficiency"]["gflops"])
    return {
        "results": str(path),
        "fastest_passing_b1": {
            "row": label,
            "p50_ms": best["stats"]["p50"] * 1e3,
            "eager_fp32_p50_ms": 1e3 / base_b1,
            "speedup": best["stats"]["throughput"] / base_b1,
        },
        "best_fp32": {
            "row": fp32_label,
            "batch": fp32_best["batch"],
            "gflops": fp32_best["efficiency"]["gflops"],
            "share_of_peak": fp32_best["efficiency"]["share_of_peak"],
            "peak": data["peaks"]["best"]["fp32"],
        },
    }


if __name__ == "__main__":
    main()
