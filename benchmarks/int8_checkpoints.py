"""Every INT8 row's parity on ResNet checkpoints that are not rbench's default export.

    .venv/bin/python benchmarks/int8_checkpoints.py [CASE ...]

Cases (default: all):

- ``torchvision-like``: a torchvision-format ResNet-18 checkpoint, a plain ``state_dict`` saved with ``torch.save``
  to a ``.pth`` under torchvision's parameter names, with trained-like statistics: BatchNorm gammas log-normal
  (sigma 0.5) with 5% of channels nearly dead (x 0.01), running variances log-normal (sigma 0.6), convolution
  weights Student-t (3 degrees of freedom, heavy-tailed) at the same standard deviation. torchvision's published
  weights cannot be downloaded here.
- ``resnet18``, ``resnet50``, ``resnet20``: rbench's default export of each (random seeded weights).

Each case is one ``rbench run --precision int8 --no-peak`` (torch-compile, ONNX Runtime, OpenVINO) in a temporary
folder; per row: what executed, worst cosine on the photos, pass or fail, batch-1 and batch-8 p50. Writes
``benchmarks/results/int8-checkpoints.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("torchvision-like", "resnet18", "resnet50", "resnet20")


def torchvision_like(path: Path, seed: int = 7) -> None:
    """The torchvision-format ResNet-18 checkpoint described above, written to ``path``."""
    import torch

    from rbench.models import create_model

    state = {k: v.clone() for k, v in create_model("resnet18", weights="random", seed=seed).state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    student = torch.distributions.StudentT(3.0)
    torch.manual_seed(seed)
    for name, value in state.items():
        if name.endswith(("bn1.weight", "bn2.weight", "downsample.1.weight")):
            value.mul_(torch.exp(0.5 * torch.randn(value.shape, generator=generator)))
            value[torch.rand(value.shape, generator=generator) < 0.05] *= 0.01
        elif name.endswith("running_var"):
            value.mul_(torch.exp(0.6 * torch.randn(value.shape, generator=generator)))
        elif name.endswith(".weight") and value.ndim == 4:
            sample = student.sample(value.shape)
            value.copy_(sample / sample.std() * value.std())
    torch.save(state, path)


def run_case(case: str, tmp: Path) -> dict:
    args = ["--model", case]
    if case == "torchvision-like":
        weights = tmp / "resnet18-torchvision-like.pth"
        torchvision_like(weights)
        args = ["--model", "resnet18", "--weights", str(weights)]
    out = tmp / case
    command = [sys.executable, "-m", "rbench", "run", *args, "--precision", "int8", "--no-peak"]
    command += ["--backends", "torch-compile,ort,openvino", "--artifacts-dir", str(out / "artifacts")]
    command += ["--out", str(out / "results")]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    results = json.loads((out / "results" / "results.json").read_text())
    rows = []
    for row in results["rows"]:
        if row.get("skipped"):
            continue
        p50 = {p["batch"]: round(p["stats"]["p50"] * 1e3, 2) for p in row["points"] if p.get("stats")}
        rows.append(
            {
                "row": row["label"],
                "executed": row["executed"],
                "cosine": row["parity"].get("cosine"),
                "passed": row["parity"].get("passed"),
                "p50_ms": p50,
            }
        )
    return {"case": case, "exit": done.returncode, "rows": rows}


def main(cases: list[str]) -> None:
    from rbench.bench.machine import environment

    found = []
    with tempfile.TemporaryDirectory(prefix="rbench-int8-checkpoints-") as tmp:
        for case in cases:
            found.append(run_case(case, Path(tmp)))
            print(json.dumps(found[-1]), flush=True)
    out = ROOT / "benchmarks" / "results" / "int8-checkpoints.json"
    out.write_text(json.dumps({"environment": environment(), "cases": found}, indent=1) + "\n")
    print(out)


if __name__ == "__main__":
    main(sys.argv[1:] or list(CASES))
