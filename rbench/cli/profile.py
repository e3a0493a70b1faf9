"""``rbench profile``: per-layer time on every backend × precision, named by PyTorch module, rolled up by stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from rbench.bench.profile import DEFAULT_CALLS
from rbench.cli._common import add_columns, app, handle_errors, out, progress, table
from rbench.precisions import PRECISIONS
from rbench.runtime.registry import BACKENDS

#: The backends with a per-layer profiler on a CPU (TensorRT's IProfiler needs a GPU).
CPU_PROFILED = tuple(name for name, spec in BACKENDS.items() if spec.device == "cpu")


@app.command("profile")
@handle_errors
def profile_command(
    model: str = typer.Option(None, help="Model to export and profile [default: resnet50]."),
    weights: str = typer.Option("random", help="'random' (seeded), 'init', a weights file or checkpoint."),
    artifact: Path = typer.Option(None, help="An artifact directory to profile instead of --model/--weights."),
    backends: str = typer.Option(",".join(CPU_PROFILED), help="Comma list of backends, or 'all'."),
    precision: str = typer.Option("fp32", help=f"Comma list of {', '.join(PRECISIONS)}, or 'all'."),
    batch: int = typer.Option(1, help="Batch size."),
    iterations: int = typer.Option(DEFAULT_CALLS, help="Profiled calls per row (after a warm-up)."),
    threads: int = typer.Option(0, help="Threads for every backend; 0: every core this process may use."),
    seed: int = typer.Option(0, help="Seed for random weights."),
    artifacts_dir: Path = typer.Option(Path("artifacts"), help="Where exported artifacts go."),
    out_dir: Path = typer.Option(Path("results/profile"), "--out", help="Folder for profile.json, .md and PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print profile.json instead of tables."),
) -> None:
    """Where the time goes: each backend's own profiler, mapped to PyTorch modules and stages (stem, layer1..N,
    head), with the profiler's overhead and the share of time it attributes. The last line is the output folder."""
    data = run_profile(
        model,
        weights,
        artifact,
        backends,
        precision,
        batch,
        iterations,
        threads,
        seed,
        artifacts_dir,
        out_dir,
        not as_json,
    )
    if as_json:
        out.print_json(json.dumps(data))
        return
    show(data)
    out.print(str(out_dir), markup=False, soft_wrap=True)


def run_profile(
    model: str | None,
    weights: str,
    artifact: Path | None,
    backends: str,
    precision: str,
    batch: int,
    iterations: int,
    threads: int,
    seed: int,
    artifacts_dir: Path,
    out_dir: Path,
    shown_progress: bool,
) -> dict[str, Any]:
    """Check the input, export if needed, profile, write; the profile's JSON."""
    from rbench.bench.profile import profile_artifact
    from rbench.bench.run import prepare_artifact
    from rbench.cli.run import _check_inputs, _choices
    from rbench.errors import BadInputError

    if batch < 1 or iterations < 1:
        raise BadInputError(f"--batch and --iterations must be 1 or more, got {batch} and {iterations}")
    precisions, chosen = _choices(precision, backends)
    model_config = _check_inputs(model, weights, artifact, out_dir, seed)
    with progress(shown_progress) as shown:
        measured = prepare_artifact(model_config, artifact, precisions, artifacts_dir, shown)
        profile_artifact(measured, chosen, precisions, out_dir, batch, iterations, threads, shown)
    return json.loads((out_dir / "profile.json").read_text())


def show(data: dict[str, Any]) -> None:
    rows = [r for r in data["rows"] if "skipped" not in r]
    stages = list(dict.fromkeys(s for r in rows for s in r["stages"]))
    t = table(
        title=f"time per stage, ms (share), batch {data['batch']}",
        caption="profiled: under the backend's profiler; overhead: against the same row unprofiled; "
        "attributed: the share of profiled time the profiler names a module for.",
    )
    add_columns(t, ["row", *stages, "profiled", "overhead", "attributed"], left=["row"])
    for r in rows:
        total = r["layer_sum_ms"] or 1
        cells = [f"{r['stages'].get(s, 0):.3g} ({r['stages'].get(s, 0) / total:.0%})" for s in stages]
        share = r["attributed_ms"] / r["profiled_ms"] if r["profiled_ms"] else 0
        t.add_row(
            f"{r['backend']} {r['precision']}",
            *cells,
            f"{r['profiled_ms']:.3g}",
            f"{r['profiler_overhead']:+.0%}",
            f"{share:.0%}",
        )
    out.print(t)
    for r in data["rows"]:
        if "skipped" in r:
            out.print(f"skipped: {r['backend']} {r['precision']}: {r['skipped']}", markup=False, soft_wrap=True)
