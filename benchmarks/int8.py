"""INT8 on every backend, side by side: the portable graph against each backend's own quantizer, in bare loops.

    .venv/bin/python benchmarks/int8.py [ARTIFACT_DIR] [results/results.json]

One process, 2 threads, interleaved rounds (every row timed once per round, rounds repeated), so drift hits every
row alike: eager PyTorch FP32 (unfolded, the baseline), torch.compile bf16 and PT2E INT8, ONNX Runtime FP32, its
portable INT8 and U8S8 graphs, OpenVINO's portable INT8 and NNCF IR. Each row's p50 latency at batch 1 and 8 (median
over rounds of each round's median), its ratio to eager FP32 and to its backend's FP32, and its worst cosine
against PyTorch FP32 on the built-in photos. With a ``rbench run`` results file, the same rows' figures from that
run are set beside them.

The runners come from rbench's planner (``runner_for``); the timing is a bare ``perf_counter`` loop here, not
rbench's harness. Writes ``benchmarks/results/int8.json`` and prints the README's table.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ROWS = [  # (label, backend, precision)
    ("eager PyTorch FP32", None, "fp32"),
    ("torch.compile bf16", "torch-compile", "bf16"),
    ("torch.compile PT2E INT8", "torch-compile", "int8"),
    ("ONNX Runtime FP32", "ort", "fp32"),
    ("ONNX Runtime portable INT8", "ort", "int8"),
    ("ONNX Runtime U8S8 INT8", "ort", "int8-u8s8"),
    ("OpenVINO FP32", "openvino", "fp32"),
    ("OpenVINO portable INT8", "openvino", "int8"),
    ("OpenVINO NNCF INT8", "openvino", "int8-nncf"),
]
RUN_LABELS = {  # the same rows' labels in a rbench run
    "eager PyTorch FP32": "torch eager fp32",
    "torch.compile bf16": "torch-compile folded bf16",
    "torch.compile PT2E INT8": "torch-compile folded int8",
    "ONNX Runtime FP32": "ort cpu fp32",
    "ONNX Runtime portable INT8": "ort cpu int8",
    "ONNX Runtime U8S8 INT8": "ort cpu int8-u8s8",
    "OpenVINO FP32": "openvino cpu fp32",
    "OpenVINO portable INT8": "openvino cpu int8",
    "OpenVINO NNCF INT8": "openvino cpu int8-nncf",
}
THREADS, ROUNDS, CALLS = 2, 4, 12


def runners(artifact) -> tuple[dict, dict[str, str]]:
    """The rows this machine runs, activated, and ``label -> why`` for the ones it refuses (rbench's own reason:
    torch bf16 on a CPU without native bf16, say), which get no figure."""
    from rbench.bench.plan import runner_for, why_not
    from rbench.runtime import TorchRunner, get_backend

    made, skipped = {}, {}
    for label, backend, precision in ROWS:
        if backend is None:
            made[label] = TorchRunner(artifact.reference_model, artifact.input_shape, threads=THREADS)
        else:
            spec = get_backend(backend)
            refused = why_not(spec, precision, spec.device)
            if refused is not None:
                skipped[label] = refused[1]
                continue
            made[label] = runner_for(artifact, backend, precision, threads=THREADS)
        made[label].activate()
    return made, skipped


def cosine(artifact, runner) -> float:
    from rbench.bench.parity import compare, infer_in_batches, parity_inputs

    photos = parity_inputs(artifact.preprocess, artifact.input_name)["photos"]
    from rbench.runtime import TorchRunner

    with TorchRunner(artifact.reference_model, artifact.input_shape) as reference:
        expected = infer_in_batches(reference, photos)
    actual = infer_in_batches(runner, photos)
    name = next(iter(expected))
    return float(compare(expected[name], actual[name]).min_cosine)


def timed(runner, feed: dict, calls: int) -> float:
    runner.infer(feed, check_inputs=False)
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        runner.infer(feed, check_inputs=False)
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def main() -> None:
    from rbench.bench.inputs import image_pool
    from rbench.export.artifact import Artifact

    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else sorted((ROOT / "artifacts").glob("resnet50-*"))[-1]
    artifact = Artifact.open(folder)
    pool = image_pool(artifact.preprocess, 32, 0)
    made, skipped = runners(artifact)
    found = {label: {"cosine": cosine(artifact, runner)} for label, runner in made.items()}
    for batch in (1, 8):
        feed = {artifact.input_name: np.ascontiguousarray(pool[:batch])}
        rounds = {label: [] for label in made}
        for _ in range(ROUNDS):
            for label, runner in made.items():
                rounds[label].append(timed(runner, feed, CALLS if batch == 1 else CALLS // 2))
        for label in made:
            found[label][f"p50_ms_b{batch}"] = float(np.median(rounds[label])) * 1e3
    for runner in made.values():
        runner.deactivate()
    report(found, skipped, artifact, Path(sys.argv[2]) if len(sys.argv) > 2 else None)


def report(found: dict, skipped: dict[str, str], artifact, run_file: Path | None) -> None:
    base = found["eager PyTorch FP32"]["p50_ms_b1"]
    fp32 = {"ONNX Runtime": found["ONNX Runtime FP32"]["p50_ms_b1"], "OpenVINO": found["OpenVINO FP32"]["p50_ms_b1"]}
    run = _run_figures(run_file)
    agree = {  # the rbench run's batch-1 p50 over this script's, per row both measured
        label: run[RUN_LABELS[label]] / f["p50_ms_b1"] for label, f in found.items() if run.get(RUN_LABELS[label])
    }
    lines = ["| row | p50 ms b1 | vs eager FP32 | vs its FP32 | p50 ms b8 | worst cosine | rbench run p50 ms b1 |"]
    lines.append("|---|---|---|---|---|---|---|")
    for label, f in found.items():
        own = next((v for k, v in fp32.items() if label.startswith(k)), None)
        p50 = f["p50_ms_b1"]
        vs_own = f"{own / p50:.2f}x" if own else ""
        theirs = f"{run[RUN_LABELS[label]]:.1f} ({agree[label]:.2f}x)" if label in agree else ""
        lines.append(
            f"| {label} | {p50:.1f} | {base / p50:.2f}x | {vs_own} | {f['p50_ms_b8']:.1f} | {f['cosine']:.5f} | "
            f"{theirs} |"
        )
    lines += [f"| {label} | skipped: {why} |  |  |  |  |  |" for label, why in skipped.items()]
    within = [label for label, ratio in agree.items() if abs(ratio - 1) <= 0.15]
    if agree:
        lines.append(f"\n{len(within)} of {len(agree)} rows agree with the rbench run within 15% at batch 1.")
    print("\n".join(lines))
    from rbench.bench.machine import environment

    out = ROOT / "benchmarks" / "results" / "int8.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "artifact": artifact.path.name,
        "threads": THREADS,
        "rounds": ROUNDS,
        "rows": found,
        "skipped": skipped,
        "rbench_run": run,
        "run_over_bare_b1": agree,
    }
    out.write_text(json.dumps({**record, "environment": environment(), "table": lines}, indent=2) + "\n")


def _run_figures(path: Path | None) -> dict[str, float]:
    if path is None or not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {
        r["label"]: p["stats"]["p50"] * 1e3
        for r in data["rows"]
        for p in r["points"]
        if p["batch"] == 1 and p.get("stats")
    }


if __name__ == "__main__":
    main()
