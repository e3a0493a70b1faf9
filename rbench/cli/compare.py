"""``rbench compare OLD.json NEW.json``: significant changes between two runs, for people and for CI gates."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rbench.cli._common import add_columns, app, err, handle_errors, out, table


@app.command()
@handle_errors
def compare(
    old: Path = typer.Argument(..., help="results.json of the reference run (main, say)."),
    new: Path = typer.Argument(..., help="results.json of the run under test (a change, say)."),
    threshold: float = typer.Option(0.05, help="Smallest ratio change that counts (0.05: 5%)."),
    resamples: int = typer.Option(2000, help="Bootstrap resamples per row."),
    allow_env_change: bool = typer.Option(False, help="Compare runs from other machines, libraries or settings."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    as_markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table (a CI job summary)."),
) -> None:
    """Rows faster, slower or unchanged, each with a 95% bootstrap interval. Exit 1 on a significant regression,
    3 when the runs come from different machines, libraries or settings (unless --allow-env-change)."""
    from rbench.bench.compare import compare_results, markdown
    from rbench.bench.results import read_results
    from rbench.errors import BadInputError

    for path in (old, new):
        if not path.is_file():
            raise BadInputError(f"results file not found: {path} (rbench run writes OUT/results.json)")
    result = compare_results(read_results(old), read_results(new), threshold, resamples, allow_env_change)
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
    elif as_markdown:
        out.print(markdown(result), markup=False, soft_wrap=True)
    else:
        t = table(
            title=f"{new.parent.name or new.name} vs {old.parent.name or old.name}: new/old median latency",
            caption=f"95% interval: moving-block bootstrap, {resamples} resamples; significant: the interval "
            f"excludes 1 and the change exceeds {threshold:.0%}.",
        )
        add_columns(t, ("row", "batch", "new/old", "95% interval", "verdict"), left=("row", "verdict"))
        colour = {"slower": "red", "faster": "green"}
        for c in result.changes:
            shown = f"[{colour[c.verdict]}]{c.verdict}[/]" if c.verdict in colour else c.verdict
            t.add_row(
                " ".join(p for p in c.key[:3] if p), c.key[4], f"{c.ratio:.3f}", f"{c.low:.3f}-{c.high:.3f}", shown
            )
        out.print(t)
        for side, keys in (("old", result.only_old), ("new", result.only_new)):
            for key in keys:
                out.print(f"only in the {side} run: {' '.join(p for p in key if p)}", markup=False)
        for difference in result.differences:
            out.print(f"environment differs: {difference}", markup=False)
    if result.regressions:
        names = ", ".join(
            f"{' '.join(p for p in c.key[:3] if p)} b{c.key[4]} ({c.ratio:.2f}x)" for c in result.regressions
        )
        err.print(f"regression: {names}", markup=False, soft_wrap=True)
        raise typer.Exit(1)
