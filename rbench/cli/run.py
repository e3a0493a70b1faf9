"""``rbench run``: the main job. Builds what is missing, times every backend over a batch sweep with parity on
every row, and writes results.json, results.csv, report.md and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from rbench.bench.config import BenchConfig
from rbench.cli._common import (
    _state,
    add_columns,
    app,
    choice_list,
    err,
    handle_errors,
    mark,
    model_config_for,
    out,
    progress,
    table,
)
from rbench.precisions import PRECISIONS
from rbench.runtime.registry import BACKENDS


@app.command()
@handle_errors
def run(
    model: str = typer.Option(
        None, help="Model name (see rbench inspect --list) [default: the checkpoint's, or resnet50]."
    ),
    weights: str = typer.Option(
        "random", help="'random' (seeded), 'init', a .safetensors/.pt/.pth file, or an rbench train checkpoint."
    ),
    artifact: Path = typer.Option(None, help="An artifact directory to measure instead of --model/--weights."),
    precision: str = typer.Option("all", help=f"Comma list of {', '.join(PRECISIONS)}, or 'all'."),
    backends: str = typer.Option(",".join(BACKENDS), help="Comma list of backends, or 'all'."),
    device: str = typer.Option("auto", help="auto (cuda where torch sees a GPU, else cpu), cpu or cuda."),
    batch_sizes: str = typer.Option(",".join(map(str, BenchConfig.batch_sizes)), help="Comma list of batch sizes."),
    warmup_s: float = typer.Option(BenchConfig.warmup_s, help="Warm-up per point, seconds."),
    duration_s: float = typer.Option(
        BenchConfig.duration_s, help="Timed duration per point, seconds (and at least --min-iterations)."
    ),
    min_iterations: int = typer.Option(BenchConfig.min_iterations, help="Timed calls per point, at least."),
    threads: int = typer.Option(
        BenchConfig.threads, help="Threads for every backend; 0: every core this process may use."
    ),
    seed: int = typer.Option(BenchConfig.seed, help="Seed for random weights and the input pool's order."),
    audit: bool = typer.Option(
        BenchConfig.audit, help="Also run the seed audit (another seed must move throughput <= 5%)."
    ),
    streams: int = typer.Option(
        BenchConfig.streams, help="Also measure throughput with N requests in flight (0: OpenVINO's optimum)."
    ),
    scenario: str = typer.Option(
        None,
        help="Also drive every row through an MLPerf LoadGen scenario: single-stream, multi-stream, offline, server.",
    ),
    target_qps: float = typer.Option(10.0, help="LoadGen server: queries per second (Poisson arrivals)."),
    latency_bound_ms: float = typer.Option(15.0, help="LoadGen server: the p99 latency bound (MLPerf: 15 ms)."),
    mlperf_official: bool = typer.Option(False, help="LoadGen with MLPerf's own settings (10 minutes and more each)."),
    eval_data: str = typer.Option(
        None, help="Also measure every row's accuracy on labelled images: digits, or a folder of class folders."
    ),
    artifacts_dir: Path = typer.Option(Path("artifacts"), help="Where exported artifacts go."),
    out_dir: Path = typer.Option(Path("results"), "--out", help="Folder for results.json, .csv, report.md, PNGs."),
    as_json: bool = typer.Option(False, "--json", help="Print results.json instead of tables."),
    profile: bool = typer.Option(False, help="Also profile every row per layer (rbench profile), into OUT/profile."),
    peak: bool = typer.Option(
        BenchConfig.peak, help="Measure this machine's GEMM peak before and after the rows (share of peak)."
    ),
) -> None:
    """Benchmark latency and throughput of every backend and precision, with parity on every row.

    The last line of standard output is the results folder. Exit 1 when any row fails parity.
    """
    from rbench.bench.machine import environment
    from rbench.bench.results import run_failures
    from rbench.bench.run import prepare_artifact, run_benchmark
    from rbench.bench.writers import write_results

    chosen_precisions, chosen_backends = _choices(precision, backends)
    sizes = _sizes(batch_sizes)
    config = BenchConfig(
        sizes,
        warmup_s,
        duration_s,
        min_iterations,
        threads,
        seed,
        device=_device(device),
        audit=audit,
        streams=streams,
        peak=peak,
    )
    loadgen = _scenario(scenario, target_qps, latency_bound_ms, mlperf_official, sizes)
    model_config = _check_inputs(model, weights, artifact, out_dir, seed)
    if eval_data is not None and eval_data != "digits":
        from rbench.data import check_image_folder

        check_image_folder(eval_data, "--eval-data")
    with progress(not as_json) as shown:
        measured = prepare_artifact(model_config, artifact, chosen_precisions, artifacts_dir, shown)
        labelled = _eval_set(eval_data, measured, shown)
        result = run_benchmark(
            measured,
            chosen_backends,
            chosen_precisions,
            config,
            shown,
            scenario=loadgen,
            log_dir=out_dir / "loadgen",
            eval_data=labelled,
        )
        data = result.to_json(list(_state["argv"]), environment())
        shown.step("writing results.json, results.csv, report.md and plots")
        paths = write_results(out_dir, data)
    if profile:
        from rbench.bench.profile import profile_artifact

        with progress(not as_json) as shown:
            profile_artifact(
                measured,
                chosen_backends,
                chosen_precisions,
                out_dir / "profile",
                sizes[0],
                threads=threads,
                progress=shown,
            )
    _show(data, paths["json"].parent, as_json)
    if not data["passed"]:
        err.print(f"parity FAILED: {'; '.join(run_failures(data))}", markup=False, soft_wrap=True)
        raise typer.Exit(1)


def _eval_set(data: str | None, artifact: Any, shown: Any) -> Any:
    if data is None:
        return None
    from rbench.bench.accuracy import artifact_eval_set

    shown.step(f"reading {data} for accuracy")
    found = artifact_eval_set(artifact, data, progress=shown)
    for note in found.notes:
        shown.note(note)
    return found


def _show(data: dict[str, Any], folder: Path, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(data))
        return
    out.print(live_table(data))
    for line in skipped_lines(data):
        out.print(line, markup=False)
    out.print(f"{'PASS' if data['passed'] else '[red]FAIL[/]'}: parity and finite outputs on every row that ran")
    out.print(str(folder), markup=False, soft_wrap=True)


def _choices(precision: str, backends: str) -> tuple[list[str], list[str]]:
    from rbench.precisions import parse_precisions, with_variants

    # each precision with its backend-tuned variants: int8 is the portable graph and each backend's own
    precisions = with_variants(parse_precisions(precision, tuple(PRECISIONS), fp32_first=False))
    return precisions, choice_list(backends, list(BACKENDS), "backend")


def _scenario(name: str | None, qps: float, bound_ms: float, official: bool, sizes: tuple[int, ...]) -> Any:
    if name is None:
        if official:
            from rbench.errors import BadInputError

            raise BadInputError("--mlperf-official applies to a LoadGen run: add --scenario")
        return None
    from rbench.bench.loadgen import ScenarioConfig

    config = ScenarioConfig(name, target_qps=qps, latency_bound_ms=bound_ms, batch=max(sizes), official=official)
    if official:
        err.print("note: MLPerf's official settings run each scenario for at least 10 minutes per row", markup=False)
    return config


def _sizes(text: str) -> tuple[int, ...]:
    from rbench.errors import BadInputError

    try:
        sizes = tuple(dict.fromkeys(int(t) for t in text.split(",") if t.strip()))
    except ValueError:
        raise BadInputError(f"--batch-sizes takes a comma list of whole numbers, got {text!r}") from None
    return sizes


def _device(device: str) -> str:
    import torch

    from rbench.errors import EnvironmentProblem, unknown_choice

    if device not in ("auto", "cpu", "cuda"):
        raise unknown_choice("device", device, ("auto", "cpu", "cuda"))
    if device == "cuda" and not torch.cuda.is_available():
        raise EnvironmentProblem("--device cuda, but torch sees no CUDA device (a CUDA build of torch and a GPU)")
    return "cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device


def _check_inputs(model: str | None, weights: str, artifact: Path | None, out_dir: Path, seed: int) -> Any:
    """Bad input in one line, before any model is built or exported; the model to export (None with --artifact)."""
    from rbench._io import check_output_folder
    from rbench.models import validate_model_config

    config = None
    if artifact is not None:
        from rbench.export.artifact import Artifact

        Artifact.open(artifact)  # prepare_artifact verifies every file next, before any heavy work
    else:
        config = model_config_for(model, weights, seed)
        validate_model_config(config)
    check_output_folder(out_dir)
    return config


def skipped_lines(data: dict[str, Any]) -> list[str]:
    """Rows that did not run, one line per backend and reason: "skipped: trt fp32, fp16, int8, bf16: no CUDA …"."""
    from rbench.bench.report import skipped_groups
    from rbench.bench.results import rows_of

    return [f"{kind}: {label}: {why}" for kind, label, why in skipped_groups(rows_of(data))]


def live_table(data: dict[str, Any]) -> Any:
    """One line per row and batch: fits 80 columns; wider terminals show the same, with room."""
    t = table(
        title=f"{data['artifact'].rsplit('/', 1)[-1]}: latency per batch, vs eager FP32, share of peak, parity",
        caption="p50 per call; x: throughput over eager PyTorch FP32 at the same batch; peak: this run's best "
        "GEMM of the executed precision; parity: PyTorch FP32 on the photos; audit ✗: an honesty audit failed.",
    )
    from rbench.bench.results import baseline_throughput, rows_of

    rows = rows_of(data)
    accuracy = any(r.accuracy for r in rows)
    columns = ("row", "batch", "p50 ms", "img/s", "x", "peak", "parity", *(("top-1",) if accuracy else ()))
    add_columns(t, columns, left=("row", "parity"))
    base = baseline_throughput(rows)
    for r in rows:
        if r.skipped or r.error:
            continue  # listed below the table, grouped (skipped_lines)
        label = f"{r.label} [{r.executed}]" if r.executed and r.executed != r.precision else r.label
        verdict = mark(f"cos {r.parity['cosine']:.5f}", r.parity["passed"]) if r.parity else ""
        if any(a and not a["passed"] for p in r.points for a in p.audits.values()):
            verdict += " [red]audit ✗[/]"  # the findings are in the row's line above and in report.md
        top1 = (f"{r.accuracy['top1']:.2%}",) if r.accuracy else ("",) if accuracy else ()
        for p in r.points:
            if p.stats is None:
                t.add_row(label, str(p.batch), "", "", "", "", f"error: {p.error}", *top1)
                continue
            speed = f"{p.stats.throughput / base[p.batch]:.2f}" if p.batch in base else ""
            share = f"{p.efficiency.share_of_peak:.0%}" if p.efficiency and p.efficiency.share_of_peak else ""
            cells = (f"{p.stats.p50 * 1e3:.2f}", f"{p.stats.throughput:.1f}", speed, share, verdict, *top1)
            t.add_row(label, str(p.batch), *cells)
    return t
