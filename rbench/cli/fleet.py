"""``rbench fleet run`` and ``rbench fleet report``: one benchmark on every machine of a Ray cluster, and one report
across them."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rbench.cli._common import app, err, handle_errors, out, progress

fleet_app = typer.Typer(help="One benchmark on many machines, on Ray.", no_args_is_help=True)
app.add_typer(fleet_app, name="fleet")


def _check_run_options(args: list[str]) -> None:
    """``rbench run``'s own parser on the options, here before any node starts: an unknown option or a bad value is
    bad input (exit 2), as it would be on every node."""
    from typer.main import get_command

    from rbench.bench.fleet import check_run_args
    from rbench.cli._common import click_errors
    from rbench.errors import BadInputError

    check_run_args(args)
    command = get_command(app).commands["run"]  # type: ignore[attr-defined]
    try:
        command.make_context("run", list(args))
    except click_errors.ClickException as exc:
        raise BadInputError(f"rbench run options: {exc.format_message()}") from None


@fleet_app.command("run", context_settings={"allow_interspersed_args": False})
@handle_errors
def run(
    address: str = typer.Option(..., help="The cluster: ray://HEAD:10001, HEAD:6379, or auto (this node's)."),
    per_node_resource: str = typer.Option(
        "rbench",
        help="The custom resource each benchmark node has (ray start --resources '{\"rbench\": 1}'); 'none': a "
        "STRICT_SPREAD placement group of whole nodes instead.",
    ),
    nodes: int = typer.Option(None, help="How many of the nodes to run on (default: every one)."),
    timeout_s: float = typer.Option(None, help="End a node's run after this many seconds (recorded as failed)."),
    out_dir: Path = typer.Option(Path("fleet"), "--out", help="FLEET_DIR: each node's results under FLEET_DIR/<node>."),
    as_json: bool = typer.Option(False, "--json", help="Print the fleet record as JSON."),
    run_args: list[str] = typer.Argument(None, help="rbench run options, after --."),
) -> None:
    """Run `rbench run RUN_ARGS` on each node, each alone on its node with its own hardware detection; bring every
    results folder back through Ray into FLEET_DIR/<node>/, record nodes that failed, and write the fleet report.
    Exit 1 when a node's run failed parity, 4 when a node could not run (the others' results are kept)."""
    from rbench.bench.fleet import REPORT, exit_code, fleet_run

    args = list(run_args or [])
    _check_run_options(args)
    if timeout_s is not None and timeout_s <= 0:
        from rbench.errors import BadInputError

        raise BadInputError(f"--timeout-s must be above 0, got {timeout_s:g}")
    resource = None if per_node_resource.lower() == "none" else per_node_resource
    with progress(not as_json) as shown:
        record = fleet_run(address, args, out_dir, resource, nodes, timeout_s, shown)
    if as_json:
        out.print_json(json.dumps(record))
    else:
        for node in record["nodes"]:
            line = f"{node['name']}: {node['status']}" + (f" ({node['error']})" if node["error"] else "")
            out.print(line, markup=False, soft_wrap=True)
        out.print(str(out_dir / f"{REPORT}.md"), markup=False, soft_wrap=True)
    code = exit_code(record)
    if code:
        err.print(f"fleet: {sum(n['status'] != 'ok' for n in record['nodes'])} node(s) did not pass", markup=False)
        raise typer.Exit(code)


@fleet_app.command("report")
@handle_errors
def report(
    fleet_dir: Path = typer.Argument(..., help="A folder rbench fleet run wrote."),
    price: list[str] = typer.Option(
        None, help="USD per node-hour, for every node (--price 1.2) or one (--price NODE=1.2); repeatable."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report's data as JSON."),
) -> None:
    """FLEET_DIR/fleet-report.{md,json,png}: the best passing row per machine, each backend x precision across
    machines, and images per dollar where prices are given."""
    from rbench.bench.fleet import fleet_report, markdown

    data = fleet_report(fleet_dir, price or [])
    if as_json:
        out.print_json(json.dumps(data))
    else:
        out.print(markdown(data), markup=False, soft_wrap=True)
