"""``rbench deploy triton``: a Triton model repository for the row a benchmark chose, configured from its figures."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rbench.cli._common import app, handle_errors, out

deploy_app = typer.Typer(help="Serve what a benchmark chose.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("triton")
@handle_errors
def triton(
    results: Path = typer.Argument(..., help="A results.json from rbench run."),
    latency_bound_ms: float = typer.Option(15.0, help="The p99 latency a deployed batch must meet, ms."),
    row: str = typer.Option(None, help="BACKEND:PRECISION[:VARIANT] to deploy instead of the fastest passing row."),
    name: str = typer.Option("resnet50", help="The model's name in the repository."),
    out_dir: Path = typer.Option(Path("model_repository"), "--out", help="The model repository."),
    force: bool = typer.Option(False, help="Replace an existing model version."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written and why, as JSON."),
) -> None:
    """Write OUT/NAME/config.pbtxt (checked against Triton's ModelConfig schema) and OUT/NAME/1/<model file>, with
    why that row, where each field came from, and the perf_analyzer command that checks it on a server. Exit 1 when
    no row passed or none meets the bound."""
    from rbench.bench.deploy import deploy_triton

    written = deploy_triton(results, latency_bound_ms, row, name, out_dir, force)
    if as_json:
        out.print_json(json.dumps(written))
        return
    out.print(f"chose {written['why']}", markup=False, soft_wrap=True)
    for key, source in written["fields"].items():
        out.print(f"  {key}: {source}", markup=False, soft_wrap=True)
    out.print(f"check it on a server: {written['perf_analyzer']}", markup=False, soft_wrap=True)
    out.print(f"expected: {json.dumps(written['measured'])}", markup=False, soft_wrap=True)
    out.print(written["config"], markup=False, soft_wrap=True)
