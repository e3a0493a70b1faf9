"""``rbench eval``'s library side: a checkpoint in PyTorch, or an artifact on each backend × precision asked for,
on one labelled set; accuracy, agreement with PyTorch FP32, and a confusion-matrix PNG per row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rbench._io import write_json_atomic
from rbench.bench.accuracy import (
    EvalSet,
    artifact_eval_set,
    confusion_png,
    eval_set,
    runner_logits,
    torch_logits,
)
from rbench.data.metrics import accuracy
from rbench.errors import BadInputError, EnvironmentProblem
from rbench.progress import Progress, Silent
from rbench.runtime.registry import DEFAULT_BACKEND


def evaluate_target(
    target: Path,
    data: str,
    backends: list[str] | None,
    precisions: list[str],
    out_dir: Path,
    labels: str | None = None,
    progress: Progress = Silent(),
) -> dict[str, Any]:
    if target.is_file():
        return _checkpoint(target, data, backends, precisions, out_dir, labels, progress)
    return _artifact(target, data, backends or [DEFAULT_BACKEND], precisions, out_dir, labels, progress)


def _checkpoint(
    path: Path,
    data: str,
    backends: list[str] | None,
    precisions: list[str],
    out_dir: Path,
    labels: str | None,
    progress: Progress,
) -> dict[str, Any]:
    from rbench.models.checkpoint import load_checkpoint, preprocess_from

    if (backends not in (None, ["torch"])) or precisions != ["fp32"]:
        raise BadInputError(
            f"a checkpoint runs in PyTorch FP32; for other backends and precisions export it first: "
            f"rbench export --weights {path} --precision all, then rbench eval ARTIFACT_DIR"
        )
    progress.step(f"loading {path.name}")
    model, meta = load_checkpoint(path)
    names = meta.get("class_names")
    found = eval_set(data, preprocess_from(meta), names, int(meta["num_classes"]), meta, labels, progress)
    progress.step("PyTorch FP32", total=len(found.y))
    logits = torch_logits(model, found.x, progress)
    row = _row("torch", "fp32", logits, found, names, out_dir, meta["architecture"])
    return _result(meta["architecture"], str(path), found, [row], out_dir)


def _artifact(
    path: Path,
    data: str,
    backends: list[str],
    precisions: list[str],
    out_dir: Path,
    labels: str | None,
    progress: Progress,
) -> dict[str, Any]:
    from rbench.bench.plan import runner_for
    from rbench.export.artifact import Artifact

    artifact = Artifact.open(path)
    m = artifact.manifest["model"]
    names = artifact.class_names
    found = artifact_eval_set(artifact, data, labels, progress)
    progress.step("PyTorch FP32 reference (BatchNorm unfolded)", total=len(found.y))
    reference = torch_logits(artifact.reference_model(), found.x, progress).argmax(1)
    rows, single = [], len(backends) * len(precisions) == 1
    for backend in backends:
        for precision in precisions:
            progress.step(f"{backend} {precision}", total=len(found.y))
            try:
                with runner_for(artifact, backend, precision) as runner:
                    logits = runner_logits(runner, found.x, artifact.input_name, progress)
            except (EnvironmentProblem, BadInputError) as exc:
                if single:
                    raise
                rows.append({"backend": backend, "precision": precision, "skipped": str(exc)})
                continue
            row = _row(backend, precision, logits, found, names, out_dir, m["name"])
            row["agreement"] = float((logits.argmax(1) == reference).mean())
            rows.append(row)
    if not any("top1" in r for r in rows):
        raise EnvironmentProblem(
            "no backend and precision asked for could run: " + "; ".join(r["skipped"] for r in rows)
        )
    return _result(m["name"], str(path), found, rows, out_dir)


def _row(
    backend: str,
    precision: str,
    logits: np.ndarray,
    found: EvalSet,
    names: list[str] | None,
    out_dir: Path,
    model: str,
) -> dict[str, Any]:
    scores = accuracy(logits, found.y)
    png = out_dir / f"confusion-{backend}-{precision}.png"
    title = f"{model}, {backend} {precision}: top-1 {scores['top1']:.2%} on {len(found.y)} images"
    confusion_png(png, scores["confusion"], names or [str(i) for i in range(logits.shape[1])], title)
    return {"backend": backend, "precision": precision, **scores, "confusion_png": str(png)}


def _result(model: str, target: str, found: EvalSet, rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    result = {"model": model, "target": target, "data": found.description, "notes": found.notes, "rows": rows}
    write_json_atomic(out_dir / "eval.json", result)
    return result


__all__ = ["evaluate_target"]
