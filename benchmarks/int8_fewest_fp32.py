"""INT8 held to the ImageNet bounds on every model family, with the fewest layers kept in FP32.

    .venv/bin/python benchmarks/int8_fewest_fp32.py [MODEL ...]

For each model (default: the families whose INT8 bounds are looser, CIFAR ResNets and plain nets, beside the ImageNet
ResNets), the default export (random seeded weights, photos calibration) is made, and ``rbench debug precision
--precision int8 --bound imagenet --fix`` searches for the fewest layers to keep in FP32 so that the photos meet
the ImageNet INT8 bounds (max abs 0.15 x max|ref|, cosine 0.99, top-1 90%). Per model: the portable graph's figures,
the layers kept, the variant's parity on ONNX Runtime and OpenVINO, and its batch-1 latency against the portable
graph's on ONNX Runtime (interleaved rounds). Writes ``benchmarks/results/int8-fewest-fp32.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("resnet20", "resnet56", "resnet110", "plain20", "plain18", "resnet18")


def main(models: list[str]) -> None:
    from rbench.bench.debug import debug_precision
    from rbench.bench.machine import environment
    from rbench.bench.parity import export_artifact
    from rbench.export.artifact import Artifact
    from rbench.models import ModelConfig

    rows = []
    with tempfile.TemporaryDirectory(prefix="rbench-fewest-") as tmp:
        for name in models:
            start = time.perf_counter()
            result = export_artifact(ModelConfig(name), out=Path(tmp), precisions=("fp32", "int8"))
            artifact = Artifact.open(result.path)
            report = debug_precision(artifact, "int8", bound="imagenet", fix=True)
            fix = report.fix or {}
            rows.append({
                "model": name,
                "family": artifact.bounds_family,
                "layers": len(report.layers),
                "portable": {k: round(v, 5) for k, v in report.output.items()},
                "portable_meets_imagenet": report.passed,
                "first": report.first,
                "kept": fix.get("kept"),
                "met": fix.get("met"),
                "parity": fix.get("parity"),
                "speed": fix.get("speed"),
                "graphs_tried": fix.get("graphs_tried"),
                "seconds": round(time.perf_counter() - start, 1),
            })
            print(json.dumps(rows[-1]), flush=True)
    out = ROOT / "benchmarks" / "results" / "int8-fewest-fp32.json"
    out.write_text(json.dumps({"environment": environment(), "rows": rows}, indent=1) + "\n")
    print(out)


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
