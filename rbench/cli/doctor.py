"""``rbench doctor``: versions, providers and devices; never fails on a missing piece."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from rbench.cli._common import add_columns, app, handle_errors, out, table


@app.command()
@handle_errors
def doctor(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Versions of every backend library, available providers and devices; never fails on a missing piece."""
    from rbench.doctor import report

    rows = report()
    if as_json:
        out.print_json(json.dumps(rows))
        return
    t = table(title="rbench doctor", show_header=False)
    add_columns(t, ("key", "value"), left=("key", "value"))
    for key, value in rows.items():
        t.add_row(key, escape(value))
    out.print(t)
