"""``rbench run``: prepare the artifact, then every row: activate, parity on the photos, sweep the batch sizes.

Every figure comes from this run on this machine: parity against PyTorch FP32 (unfolded) on the photos, latency
statistics from raw samples, the harness's own overhead, and the machine's peak per precision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rbench.bench.config import BenchConfig
from rbench.bench.inputs import image_pool
from rbench.bench.machine import cpu_record
from rbench.bench.parity import compare, infer_in_batches, parity_inputs, sig, tolerance_for
from rbench.bench.peak import Probe, best_per_precision, measure_peaks, theoretical_peaks
from rbench.bench.plan import RowPlan, plan_rows
from rbench.bench.results import Efficiency, Point, Row, RunResult
from rbench.bench.sweep import harness_overhead, sweep, timed_activation
from rbench.errors import first_line
from rbench.export.artifact import Artifact
from rbench.models import ModelConfig
from rbench.progress import Progress, Silent
from rbench.runtime import Runner

#: What every row is compared against: the photos, the reference's outputs on them, and its outputs on the pool
References = tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]


def run_benchmark(
    artifact: Artifact,
    backends: list[str],
    precisions: list[str],
    config: BenchConfig,
    progress: Progress = Silent(),
    on_row: Callable[[Row], None] = lambda row: None,
    scenario: Any = None,
    log_dir: Path | None = None,
    eval_data: Any = None,
) -> RunResult:
    """Time every row of ``plan_rows`` on ``artifact``; a row that cannot run says why, and the run goes on.

    With ``eval_data`` (a ``rbench.data.EvalSet``) every row that ran also measures its accuracy there.

    With ``scenario`` (a ``rbench.bench.loadgen.ScenarioConfig``) every row that ran also goes through that MLPerf
    LoadGen scenario; its logs go to ``log_dir/<row>``.
    """
    threads = config.resolved_threads()
    plans = plan_rows(artifact, backends, precisions, config.device, threads)  # an unknown backend fails here
    pool = image_pool(artifact.preprocess, config.pool_size, config.seed)
    references, labelled, macs = _references(artifact, pool, eval_data, progress)
    peaks: list[Probe] = []
    if config.peak:
        progress.step("measuring this machine's peak (best large GEMM per precision)")
        peaks = measure_peaks(threads)
    progress.step("measuring the harness's own overhead")
    overhead = harness_overhead(pool, config, artifact.input_name)
    context = _Context(artifact, pool, references, config, progress, macs, best_per_precision(peaks), labelled)
    context = replace(context, loadgen=(scenario, log_dir or Path("loadgen")) if scenario is not None else None)
    rows: list[Row] = []
    for plan in plans:
        if plan.factory is not None:  # a planned skip is listed with the results, not shown as a step
            progress.step(f"{plan.label}", total=len(config.batch_sizes))
        rows.append(_run_row(plan, context))
        if rows[-1].failed:
            progress.fail()
        if plan.factory is not None:
            progress.note(summary(rows[-1], rows[0]))
        on_row(rows[-1])
    if config.peak:
        progress.step("measuring this machine's peak again, after the rows (each row is held to the best of both)")
        peaks += measure_peaks(threads, round="after")
    paper = theoretical_peaks(cpu_record())
    _final_efficiency(rows, macs, best_per_precision(peaks), paper)
    return RunResult(artifact.path, rows, peaks, overhead, macs, config, paper)


def _final_efficiency(rows: list[Row], macs: int, peaks: dict[str, Probe], paper: dict[str, Any]) -> None:
    """Each point's efficiency against the best probe of both rounds and the CPU's peak on paper (the live line
    used the first round's)."""
    for row in rows:
        for point in row.points:
            if point.stats is not None and row.executed_precision:
                point.efficiency = Efficiency.of(point.stats.throughput, macs, row.executed_precision, peaks, paper)


def _references(
    artifact: Artifact, pool: np.ndarray, eval_data: Any, progress: Progress
) -> tuple[References, tuple[Any, np.ndarray] | None, int]:
    """PyTorch FP32's (unfolded) outputs on the photos and the pool, its predictions on ``eval_data``, the MACs."""
    from rbench.models.stats import stage_stats
    from rbench.runtime import TorchRunner

    photos = parity_inputs(artifact.preprocess, artifact.input_name)["photos"]
    progress.step("PyTorch FP32 reference outputs and MACs")
    model = artifact.reference_model()
    macs = sum(s.macs for s in stage_stats(model, artifact.input_shape))
    with TorchRunner(model, artifact.input_shape) as reference:
        expected = infer_in_batches(reference, photos)
        on_pool = next(iter(infer_in_batches(reference, {artifact.input_name: pool}).values()))
        labelled = _reference_predictions(reference, eval_data, artifact.input_name)
    return (photos, expected, on_pool), labelled, macs


@dataclass(frozen=True)
class _Context:
    """What every row of one run shares."""

    artifact: Artifact
    pool: np.ndarray
    references: References
    config: BenchConfig
    progress: Progress
    macs: int
    peaks: dict[str, Probe]
    labelled: tuple[Any, np.ndarray] | None = None
    loadgen: tuple[Any, Path] | None = None


def summary(row: Row, baseline: Row) -> str:
    """One line per finished row, as it finishes: latency, throughput and speedup per batch, then parity."""
    if row.skipped or row.error:
        return f"skipped: {row.skipped}" if row.skipped else f"error: {row.error}"
    base = {p.batch: p.stats.throughput for p in baseline.points if p.stats}
    parts = []
    for p in row.points:
        if p.stats is None:
            parts.append(f"b{p.batch} error: {p.error}")
            continue
        speed = f", {p.stats.throughput / base[p.batch]:.2f}x" if p.batch in base else ""
        parts.append(f"b{p.batch} {p.stats.p50 * 1e3:.2f} ms{speed}")
    verdict = "pass" if row.parity.get("passed") else "FAIL"
    findings = [a["finding"] for p in row.points for a in p.audits.values() if a and a.get("finding")]
    audits = "; ".join(findings) if findings else "audits pass"
    return f"{'; '.join(parts)}; parity cos {row.parity.get('cosine')} {verdict}; {audits} [{row.executed}]"


def _run_row(plan: RowPlan, context: _Context) -> Row:
    """Activate, then measure; a row that cannot start says why."""
    row = Row(plan.backend, plan.precision, plan.variant, plan.label, context.config.device, plan.file, plan.baseline)
    if plan.factory is None:
        row.skipped = plan.skip
        return row
    try:
        runner = plan.factory()
        row.device = runner.device
        row.session_s = timed_activation(runner)
    except Exception as exc:  # a backend that cannot start here: its row says why
        row.skipped = first_line(exc)
        return row
    try:
        _measure(row, plan, runner, context)
    except Exception as exc:
        row.error = f"{type(exc).__name__}: {first_line(exc)}"
    finally:
        runner.deactivate()
    return row


def _measure(row: Row, plan: RowPlan, runner: Runner, context: _Context) -> None:
    """Parity on the photos, the sweep (each point's efficiency as it is made), the audits, and what was asked
    besides: requests in flight, a LoadGen scenario, accuracy."""
    artifact, config = context.artifact, context.config
    photos, expected, _ = context.references
    row.settings = runner.settings()
    row.threads = runner.threads_in_use()
    executed = runner.executed()
    row.executed, row.executed_precision = executed.detail + _kept_fp32(artifact, plan), executed.precision
    row.parity = _parity(runner, photos, expected, plan.precision, artifact.bounds_family)
    before = runner.compiles()

    def made(point: Point) -> None:
        if point.stats is not None:
            point.efficiency = Efficiency.of(point.stats.throughput, context.macs, executed.precision, context.peaks)
        context.progress.advance()

    row.points = sweep(runner, context.pool, config, artifact.input_name, on_point=made)
    if before is not None:
        row.recompiled = _recompiled_during_timing(runner.compiles, before, len(config.batch_sizes))
    _audit(row, runner, context)
    if config.streams != 1 and plan.spec is not None and plan.spec.streams:
        row.concurrency = _concurrency(runner, context)
    if context.loadgen is not None:
        row.loadgen = _loadgen(runner, row, artifact, context.pool, *context.loadgen)
    if context.labelled is not None:
        row.accuracy = _accuracy(runner, artifact.input_name, *context.labelled)


def _kept_fp32(artifact: Artifact, plan: RowPlan) -> str:
    """What a row running a graph whose layers the export's accuracy control kept in FP32 adds to what it executed."""
    entry = artifact.manifest["precisions"].get(plan.precision, {})
    kept = (entry.get("accuracy") or {}).get("kept")
    if not kept or not (plan.file or "").startswith(entry["file"]):
        return ""
    return f"; {', '.join(kept)} fp32 (accuracy control at export)"


def _reference_predictions(reference: Any, eval_data: Any, input_name: str) -> tuple[Any, np.ndarray] | None:
    """The eval set and PyTorch FP32's top-1 class on each of its images (what every row's agreement is against)."""
    if eval_data is None:
        return None
    from rbench.bench.accuracy import runner_logits

    return eval_data, runner_logits(reference, eval_data.x, input_name).argmax(1)


def _accuracy(runner: Any, input_name: str, eval_data: Any, reference: np.ndarray) -> dict[str, Any]:
    from rbench.bench.accuracy import runner_logits
    from rbench.data.metrics import accuracy

    logits = runner_logits(runner, eval_data.x, input_name)
    scores = accuracy(logits, eval_data.y)
    del scores["confusion"]
    return {**scores, "agreement": float((logits.argmax(1) == reference).mean()), "data": eval_data.description}


def _audit(row: Row, runner: Runner, context: _Context) -> None:
    """The output audit on every point; the cache audit (and with ``--audit`` the seed audit) on the first."""
    from rbench.bench.audit import audit_cache, audit_outputs, audit_seed
    from rbench.bench.inputs import photo_mask

    artifact, config, pool, on_pool = context.artifact, context.config, context.pool, context.references[2]
    tolerance = tolerance_for(row.precision, artifact.bounds_family)
    measured = [p for p in row.points if p.stats]
    photos = photo_mask(len(pool), config.seed)
    for point in measured:
        point.audits["outputs"] = audit_outputs(point, len(pool), on_pool, tolerance, photos)
        point.sampled = []
    if measured:
        first = measured[0]
        first.audits["cache"] = audit_cache(runner, pool, first.batch, config, artifact.input_name)
        if config.audit:
            first.audits["seed"] = audit_seed(runner, artifact.preprocess, first.batch, config, artifact.input_name)
    for point in measured:
        point.warnings += [a["finding"] for a in point.audits.values() if a and a.get("finding")]


def _concurrency(runner: Runner, context: _Context) -> dict[str, Any]:
    """Per batch size: the row's throughput with ``--streams`` requests in flight (``rbench.bench.concurrency``);
    a runner that has no way to (torch on the CPU) leaves the row without it."""
    from rbench.bench.concurrency import measure_streams
    from rbench.bench.sweep import validated_feeds

    config, name = context.config, context.artifact.input_name
    found = {}
    for b in config.batch_sizes:
        feeds = validated_feeds(runner, context.pool, b, name)
        measured = measure_streams(runner, feeds, config.streams, config.duration_s)
        if not all("skipped" in m for m in measured):
            found[str(b)] = measured
    return found


def _loadgen(
    runner: Any, row: Row, artifact: Artifact, pool: np.ndarray, scenario: Any, log_dir: Path
) -> dict[str, Any]:
    """The row again, driven by LoadGen; single-stream's p90 is set beside rbench's own batch-1 p90."""
    from rbench.bench.loadgen import run_scenario

    measured = {p.batch: p.stats for p in row.points if p.stats}
    if not measured:
        return {"error": "no timed point to size the scenario from"}
    batch = scenario.batch if scenario.scenario == "offline" and scenario.batch in measured else min(measured)
    expected = measured[batch].p50 if scenario.scenario == "offline" else measured[batch].p50 / batch
    slug = row.label.replace(" ", "-")
    try:
        result = run_scenario(runner, pool, artifact.input_name, scenario, expected, log_dir / slug)
    except Exception as exc:
        return {"scenario": scenario.scenario, "error": f"{type(exc).__name__}: {first_line(exc)}"}
    if scenario.scenario == "single-stream" and 1 in measured and result.get("value"):
        result["rbench_p90_ns"] = measured[1].p90 * 1e9
        result["loadgen_over_rbench_p90"] = sig(result["value"] / result["rbench_p90_ns"], 4)
    return result


def _recompiled_during_timing(compiles: Callable[[], int | None], before: int, shapes: int) -> bool:
    """One compilation per batch size is expected (in its cold call); more means a recompile while timing."""
    return (compiles() or 0) - before > shapes


def _parity(
    runner: Any, photos: dict[str, np.ndarray], expected: dict[str, np.ndarray], precision: str, family: str
) -> dict[str, Any]:
    tolerance = tolerance_for(precision, family)
    actual = infer_in_batches(runner, photos)
    name = next(iter(expected))
    stats = compare(expected[name], actual[name])
    failing = stats.failing(tolerance)
    return {
        "max_abs_rel": sig(stats.min_passing_rel),
        "cosine": sig(stats.min_cosine),
        "top1": sig(stats.top1),
        "passed": not failing,
        "failing": [f"{precision} photos/{name}: {why}" for why in failing.values()],
        "bounds": {"max_abs_rel": tolerance.max_abs_rel, "cosine": tolerance.min_cosine, "top1": tolerance.min_top1},
    }


def prepare_artifact(
    model_config: ModelConfig | None,
    artifact_dir: Path | None,
    precisions: list[str],
    artifacts_root: Path,
    progress: Progress = Silent(),
) -> Artifact:
    """The artifact a run measures, with every exported precision it needs.

    An existing one (``artifact_dir``) is verified first (every file against its recorded SHA-256: exit 3 before
    any work), then completed in the folder the user named, whatever its name; nothing else is ever measured in
    its place. Otherwise the model is exported (or re-exported, reusing every file made with the same settings)
    into ``artifacts_root``. Parity is the run's own, per row, so the export does not repeat it; each INT8 graph it
    makes is held to its bounds on every CPU backend here (``rbench.bench.debug.accuracy_control``)."""
    from rbench.bench.debug import accuracy_control
    from rbench.export.converters import available
    from rbench.export.onnx_export import ExportConfig
    from rbench.export.pipeline import export_artifact
    from rbench.precisions import get_precision

    needed, notes = available(sorted({"fp32"} | {p for p in precisions if get_precision(p).exported}))
    for note in notes:  # its rows say the same, as their skip reason
        progress.note(note)
    if artifact_dir is None:
        assert model_config is not None, "a model to export, or an artifact"
        result = export_artifact(
            model_config, ExportConfig(), artifacts_root, needed, progress, control=accuracy_control
        )
        return Artifact.open(result.path)
    artifact = Artifact.open(artifact_dir).verify()
    if set(needed) <= set(artifact.precisions):
        return artifact
    m, export = artifact.manifest["model"], artifact.manifest.get("export", {})
    names = tuple(m["class_names"]) if m.get("class_names") else None
    seed = model_config.seed if model_config else 0
    weights = str(artifact.path / "weights.safetensors")
    config = ModelConfig(m["name"], weights, seed, m["num_classes"], m.get("options", {}), names, artifact.preprocess)
    config = replace(config, trained=m.get("trained"))
    settings = {k: export[k] for k in ("opset", "dynamic_batch", "simplify") if k in export}
    # only what is missing: the export carries every file the artifact already has over, untouched
    result = export_artifact(
        config,
        ExportConfig(**settings),
        artifact.path.parent,
        needed,
        progress,
        into=artifact.path,
        control=accuracy_control,
    )
    return Artifact.open(result.path)
