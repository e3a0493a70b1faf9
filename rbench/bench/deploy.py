"""``rbench deploy triton``: a Triton Inference Server model repository for the row a benchmark chose.

Which row: the fastest (highest images/s at a batch whose p99 meets the bound) of the rows that passed parity and
their audits on a backend Triton serves (``BackendSpec.triton``); ``row`` names one instead. Every field of the
``config.pbtxt`` comes from that run's measurements or from the artifact, and the config is parsed back with Triton's
own schema (``tritonclient.grpc.model_config_pb2.ModelConfig``) before anything is written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rbench.errors import BadInputError, RbenchError, missing_dependency

#: Triton's name for each backend's platform, and the model file it loads from a version folder
TRITON = {
    "onnxruntime": ("onnxruntime", "model.onnx"),
    "openvino": ("openvino", "model.xml"),
    "tensorrt": ("tensorrt", "model.plan"),
}


class NoRow(RbenchError):
    """No row meets what deployment asks (exit 1: a gate, like a parity failure)."""

    exit_code = 1


@dataclass
class Choice:
    row: Any  # rbench.bench.results.Row
    batch: int  # the batch that gives the most images/s within the bound
    max_batch: int  # the largest batch measured within the bound
    why: str
    in_bound: dict[int, Any] = field(default_factory=dict)  # batch -> Measurement, within the bound


def choose_row(data: dict[str, Any], bound_ms: float, wanted: str | None = None) -> Choice:
    """The row to deploy (module docstring); ``wanted`` is ``BACKEND:PRECISION[:VARIANT]``."""
    from rbench.bench.results import rows_of
    from rbench.runtime.registry import BACKENDS

    rows = [r for r in rows_of(data) if not r.baseline]
    passing = [r for r in rows if not r.skipped and not r.error and not r.failed and _audits_pass(r)]
    servable = [r for r in passing if r.backend in BACKENDS and BACKENDS[r.backend].triton]
    if wanted is not None:
        parts = wanted.split(":")
        if len(parts) not in (2, 3):
            raise BadInputError(f"--row {wanted!r}: write BACKEND:PRECISION or BACKEND:PRECISION:VARIANT")
        matches = [r for r in rows if [r.backend, r.precision, *([r.variant] if len(parts) == 3 else [])] == parts]
        if not matches:
            names = ", ".join(sorted({f"{r.backend}:{r.precision}" for r in rows}))
            raise BadInputError(f"--row {wanted}: no such row in the results; they have {names}")
        if matches[0] not in servable:
            reason = (
                matches[0].skipped
                or matches[0].error
                or "; ".join(matches[0].failures())
                or ("Triton has no backend for it" if matches[0] in passing else "an audit failed")
            )
            raise NoRow(f"--row {wanted} cannot be deployed: {reason}")
        servable = matches[:1]
    if not servable:
        why = "no row passed parity and its audits" if not passing else "no passing row is on a backend Triton serves"
        raise NoRow(f"nothing to deploy: {why}")
    best: Choice | None = None
    best_p99 = min(p.stats.p99 for r in servable for p in r.points if p.stats)
    for r in servable:
        in_bound = {p.batch: p.stats for p in r.points if p.stats and p.stats.p99 * 1e3 <= bound_ms}
        if not in_bound:
            continue
        batch = max(in_bound, key=lambda b: in_bound[b].throughput)
        if best is None or in_bound[batch].throughput > best.in_bound[best.batch].throughput:
            best = Choice(r, batch, max(in_bound), "", in_bound)
    if best is None:
        raise NoRow(f"no passing row meets p99 <= {bound_ms:g} ms; the best p99 found is {best_p99 * 1e3:.3g} ms")
    s = best.in_bound[best.batch]
    best.why = (
        f"{best.row.label}: the most images/s ({s.throughput:.1f} at batch {best.batch}, p99 {s.p99 * 1e3:.3g} ms "
        f"<= {bound_ms:g} ms) of {len(servable)} row(s) that passed parity and their audits on a backend Triton serves"
        if wanted is None else f"{best.row.label}: named with --row; batch {best.batch} has the most images/s "
        f"within p99 <= {bound_ms:g} ms ({s.throughput:.1f}, p99 {s.p99 * 1e3:.3g} ms)"
    )  # fmt: skip
    return best


def _audits_pass(row: Any) -> bool:
    return all(a.get("passed", True) for p in row.points for a in p.audits.values() if isinstance(a, dict))


def model_config(choice: Choice, artifact: Any, name: str, bound_ms: float) -> tuple[str, dict[str, Any]]:
    """The ``config.pbtxt`` text, checked against Triton's schema, and where each field came from."""
    from rbench.runtime.registry import BACKENDS

    row = choice.row
    backend, _ = TRITON[BACKENDS[row.backend].triton]
    measured = choice.in_bound[choice.batch]
    delay_us = max(0, int((bound_ms - measured.p99 * 1e3) * 1e3))
    gpu = row.device == "cuda"
    count, count_from = _instances(row, choice.batch)
    shape = list(artifact.input_shape)
    lines = [
        f'name: "{name}"',
        f'backend: "{backend}"',
        f"max_batch_size: {choice.max_batch}",
        f'input [{{ name: "{artifact.input_name}" data_type: TYPE_FP32 dims: {shape} }}]',
        f'output [{{ name: "{artifact.manifest["model"]["output_name"]}" data_type: TYPE_FP32 '
        f"dims: [{artifact.num_classes}] }}]",
        f"dynamic_batching {{ preferred_batch_size: [{choice.batch}] max_queue_delay_microseconds: {delay_us} }}",
        f"instance_group [{{ count: {count} kind: {'KIND_GPU' if gpu else 'KIND_CPU'} }}]",
    ]
    params = _parameters(row)
    lines += [f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in params.items()]
    text = "\n".join(lines) + "\n"
    check_config(text)
    sources = {
        "backend": f"the row's backend {row.backend} ({row.file})",
        "max_batch_size": f"the largest batch measured with p99 <= {bound_ms:g} ms: {sorted(choice.in_bound)}",
        "input/output": "the artifact's manifest (names, input shape, classes); FP32 at the model's edges",
        "preferred_batch_size": f"batch {choice.batch}: the most images/s within the bound "
        + ", ".join(f"b{b} {m.throughput:.1f}/s p99 {m.p99 * 1e3:.3g} ms" for b, m in sorted(choice.in_bound.items())),
        "max_queue_delay_microseconds": f"the bound {bound_ms:g} ms minus the measured p99 {measured.p99 * 1e3:.3g} ms "
        f"at batch {choice.batch}",
        "instance_group": count_from,
        "parameters": f"what the row ran with: {row.settings}",
    }
    return text, sources


def _instances(row: Any, batch: int) -> tuple[int, str]:
    """The instance count from the row's ``--streams`` measurement at ``batch`` (its best setting), else 1."""
    runs = row.concurrency.get(str(batch)) or row.concurrency.get(batch) or []  # type: ignore[call-overload]
    runs = [r for r in runs if "throughput" in r]
    if not runs:
        return 1, "one instance: no --streams measurement at this batch in the results"
    best = max(runs, key=lambda r: r["throughput"])
    count = int(best.get("streams") or best.get("requests") or 1)
    return count, f"--streams: {best.get('mode', '')} {count} stream(s), {best['throughput']:.1f} images/s, the best"


def _parameters(row: Any) -> dict[str, str]:
    """Backend parameters matching what the row ran: ONNX Runtime's threads; OpenVINO's hints and threads."""
    from rbench.runtime.registry import BACKENDS

    kind = BACKENDS[row.backend].triton
    out: dict[str, str] = {}
    if kind == "onnxruntime" and row.threads:
        out["intra_op_thread_count"] = str(row.threads)
    if kind == "openvino":
        settings = row.settings or {}
        hint = settings.get("INFERENCE_PRECISION_HINT") or settings.get("hint") or (
            "bf16" if row.precision == "bf16" else "f32")  # fmt: skip
        out["INFERENCE_PRECISION_HINT"] = str(hint).lower()
        out["PERFORMANCE_HINT"] = str(settings.get("PERFORMANCE_HINT", "LATENCY")).upper()
        if row.threads:
            out["INFERENCE_NUM_THREADS"] = str(row.threads)
    return out


def check_config(text: str) -> Any:
    """Parse ``text`` as Triton's ``ModelConfig`` (its own protobuf schema, shipped with tritonclient)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise missing_dependency("tritonclient", "deploy") from None
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def deploy_triton(
    results: Path, bound_ms: float = 15.0, row: str | None = None, name: str = "resnet50",
    out: Path = Path("model_repository"), force: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Write ``out/<name>/config.pbtxt`` and ``out/<name>/1/<model file>`` for the chosen row; what was written."""
    from rbench._io import check_output_folder, write_bytes_atomic, write_json_atomic
    from rbench.bench.results import read_results
    from rbench.export.artifact import Artifact
    from rbench.runtime.registry import BACKENDS

    if not bound_ms > 0:
        raise BadInputError(f"--latency-bound-ms must be above 0, got {bound_ms}")
    if not name or "/" in name or name.startswith("."):
        raise BadInputError(f"--name {name!r} is not a model name Triton takes")
    check_config("")  # the schema is there before any work
    check_output_folder(out)
    version = out / name / "1"
    if version.exists() and not force:
        raise BadInputError(f"{version} exists; add --force to replace that model version")
    data = read_results(results)
    choice = choose_row(data, bound_ms, row)
    artifact = Artifact.open(data["artifact"]).verify()
    text, sources = model_config(choice, artifact, name, bound_ms)
    kind = BACKENDS[choice.row.backend].triton
    _, filename = TRITON[kind]
    (out / name).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-version-", dir=out / name))
    try:
        _model_files(artifact, choice.row, kind, tmp / filename)
        if version.exists():
            shutil.rmtree(version)
        os.replace(tmp, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_bytes_atomic(out / name / "config.pbtxt", text.encode())
    measured = choice.in_bound[choice.batch]
    count = _instances(choice.row, choice.batch)[0]
    command = (
        f"perf_analyzer -m {name} -b {choice.batch} --concurrency-range {count} -i grpc -u localhost:8001 "
        f"--shape {artifact.input_name}:{','.join(str(d) for d in artifact.input_shape)} --percentile 99"
    )
    expected = {
        "row": choice.row.label, "file": choice.row.file, "batch": choice.batch, "why": choice.why,
        "measured": {"p50_ms": measured.p50 * 1e3, "p99_ms": measured.p99 * 1e3, "images_per_s": measured.throughput},
        "fields": sources, "perf_analyzer": command, "results": str(results),
    }  # fmt: skip
    write_json_atomic(out / name / "rbench-expected.json", expected)
    return {"config": str(out / name / "config.pbtxt"), "model": str(version / filename), **expected}


def _model_files(artifact: Any, row: Any, kind: str, target: Path) -> None:
    """The row's model file as Triton's backend loads it: the ONNX itself, the TensorRT engine, or OpenVINO IR (the
    NNCF IR copied; an ONNX converted without compression)."""
    source = artifact.path / row.file
    if kind == "openvino":
        if source.suffix == ".xml":
            shutil.copy2(source, target)
            shutil.copy2(source.with_suffix(".bin"), target.with_suffix(".bin"))
            return
        import openvino as ov

        ov.save_model(ov.Core().read_model(str(source)), str(target), compress_to_fp16=False)
        return
    shutil.copy2(source, target)


__all__ = ["NoRow", "check_config", "choose_row", "deploy_triton"]
