"""``rbench fleet``: one ``rbench run`` on each machine of a Ray cluster, its results brought back through Ray.

Placement. Each selected node runs one benchmark and nothing else of rbench's: with a per-node resource (``ray start
--resources '{"rbench": 1}'``) the task asks for that node's whole resource and all its CPUs, pinned to the node;
without one, a ``STRICT_SPREAD`` placement group holds a bundle of each node's CPUs, so no two benchmarks share a
node. The run is a subprocess of the Ray worker (``python -m rbench run``), so it detects that node's own hardware
and backends, and dies with its worker.

Collection. The run's whole results folder (results.json, report, plots) comes back as the task's return value, not
through a shared file system, and is written under ``FLEET_DIR/<node>/``. A node whose run fails, whose worker dies
or which leaves the cluster is recorded with its error; the others' results are kept.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rbench.errors import BadInputError, EnvironmentProblem, first_line, missing_dependency

#: What ``rbench fleet run`` writes in FLEET_DIR (and ``fleet report`` reads), and the report's files
FLEET_RECORD = "fleet.json"
FLEET_SCHEMA = 1
REPORT = "fleet-report"
#: Options of ``rbench run`` that the fleet sets itself on every node
FLEET_OWNS = ("--out", "--json")


@dataclass
class NodeRun:
    """One node's part of a fleet: where it ran and how it ended (``ok``, ``parity failed`` or ``failed``)."""

    name: str  # the folder under FLEET_DIR: hostname and the start of Ray's node id
    node_id: str
    address: str
    cpus: float
    status: str = "failed"
    rc: int | None = None
    error: str | None = None
    elapsed_s: float | None = None
    files: list[str] = field(default_factory=list)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise missing_dependency("ray", "fleet") from None
    return ray


def check_run_args(args: list[str]) -> None:
    """Refuse what the fleet sets itself (``--out``, ``--json``)."""
    owned = [a for a in args if a.split("=", 1)[0] in FLEET_OWNS]
    if owned:
        raise BadInputError(f"rbench fleet run sets {', '.join(FLEET_OWNS)} on every node; drop {' '.join(owned)}")


def _die_with_parent() -> None:  # pragma: no cover  (runs in the child before exec)
    """The benchmark ends with the Ray worker that started it (Linux ``PR_SET_PDEATHSIG``)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)


def node_run(args: list[str], timeout_s: float | None) -> dict[str, Any]:
    """On a node: ``rbench run ARGS`` in a temporary folder; its rc, the end of its error output and every file of
    its results folder (relative path → bytes)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rbench-fleet-") as tmp:
        results = Path(tmp) / "results"
        command = [sys.executable, "-m", "rbench", "run", *args, "--out", str(results)]
        try:
            done = subprocess.run(
                command, cwd=tmp, capture_output=True, text=True, timeout=timeout_s, preexec_fn=_die_with_parent
            )
            rc, stderr = done.returncode, done.stderr
        except subprocess.TimeoutExpired:
            rc, stderr = None, f"rbench run timed out after {timeout_s:g} s"
        files = {
            str(p.relative_to(results)): p.read_bytes() for p in sorted(results.rglob("*")) if p.is_file()
        } if results.is_dir() else {}  # fmt: skip
    lines = [line for line in stderr.splitlines() if line.strip()]
    return {"rc": rc, "error": lines[-1] if lines else None, "files": files, "elapsed_s": time.monotonic() - started}


def _node_name(node: dict[str, Any]) -> str:
    host = re.sub(r"[^A-Za-z0-9._-]", "-", node.get("NodeManagerHostname") or node["NodeManagerAddress"])
    return f"{host}-{node['NodeID'][:8]}"


def _select(ray: Any, resource: str | None, count: int | None) -> list[dict[str, Any]]:
    alive = sorted((n for n in ray.nodes() if n.get("Alive")), key=lambda n: n["NodeID"])
    chosen = [n for n in alive if n["Resources"].get(resource, 0) >= 1] if resource else alive
    if not chosen:
        raise EnvironmentProblem(
            f"no live node of the cluster has the resource {resource!r}: start each with "
            f"ray start --resources '{{\"{resource}\": 1}}', or pass --per-node-resource none"
        )
    if count is not None:
        if not 1 <= count <= len(chosen):
            raise BadInputError(f"--nodes {count}: the cluster has {len(chosen)} node(s) to run on")
        chosen = chosen[:count]
    return chosen


def _submit(
    ray: Any, chosen: list[dict[str, Any]], resource: str | None, args: list[str], timeout_s: float | None
) -> tuple[list[Any], list[dict[str, Any]], Any]:
    """One task per node (module docstring): the futures, the node each runs on (in the same order) and the placement
    group, if any."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

    task = ray.remote(node_run)
    if resource:
        return (
            [
                task.options(
                    num_cpus=n["Resources"].get("CPU", 0),
                    resources={resource: n["Resources"][resource]},
                    scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
                    max_retries=0,
                ).remote(args, timeout_s)
                for n in chosen
            ],
            chosen,
            None,
        )
    from ray.util.placement_group import placement_group, placement_group_table

    bundles = [{"CPU": n["Resources"].get("CPU", 1)} for n in chosen]
    group = placement_group(bundles, strategy="STRICT_SPREAD")
    if not group.wait(60):
        raise EnvironmentProblem(f"a STRICT_SPREAD placement group of {len(chosen)} whole nodes was not placed in 60 s")
    where = placement_group_table(group)["bundles_to_node_id"]
    futures = [
        task.options(
            num_cpus=bundles[i]["CPU"],
            scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i),
            max_retries=0,
        ).remote(args, timeout_s)
        for i in range(len(chosen))
    ]
    by_id = {n["NodeID"]: n for n in chosen}
    return futures, [by_id.get(where[i], chosen[i]) for i in range(len(chosen))], group  # where each bundle landed


def fleet_run(
    address: str,
    args: list[str],
    out: Path,
    resource: str | None = "rbench",
    nodes: int | None = None,
    timeout_s: float | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Run ``rbench run ARGS`` on each selected node of the cluster at ``address`` and write what came back under
    ``out`` (module docstring), with ``fleet.json`` and the fleet report. Returns the fleet record."""
    check_run_args(args)
    if (out / FLEET_RECORD).exists():
        raise BadInputError(f"{out} already holds a fleet ({FLEET_RECORD}); choose another --out")
    ray = _ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EnvironmentProblem(f"cannot connect to the Ray cluster at {address}: {first_line(exc)}") from None
    try:
        chosen = _select(ray, resource, nodes)
        if progress is not None:
            progress.step(f"rbench run on {len(chosen)} node(s)", total=len(chosen))
        futures, placed, group = _submit(ray, chosen, resource, args, timeout_s)
        runs = [
            NodeRun(_node_name(n), n["NodeID"], n["NodeManagerAddress"], n["Resources"].get("CPU", 0)) for n in placed
        ]
        out.mkdir(parents=True, exist_ok=True)
        pending = dict(zip(futures, runs, strict=True))
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                run = pending.pop(done[0])
                _collect(ray, done[0], run, out)
                if progress is not None:
                    progress.advance()
        except BaseException:  # Ctrl-C, SIGTERM: no benchmark is left running on the cluster
            for future in pending:
                ray.cancel(future, force=True)
            raise
        if group is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(group)
    finally:
        ray.shutdown()
    placement = f"per-node resource {resource!r}, all CPUs" if resource else "STRICT_SPREAD placement group"
    record = {
        "schema": FLEET_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "address": address,
        "run_args": args,
        "placement": placement,
        "nodes": [asdict(r) for r in runs],
    }
    from rbench._io import write_json_atomic

    write_json_atomic(out / FLEET_RECORD, record)
    fleet_report(out)
    return record


def _collect(ray: Any, future: Any, run: NodeRun, out: Path) -> None:
    """What one node's task returned, or its error, into ``run``; its results folder under ``out/<node>``."""
    try:
        got = ray.get(future)
    except ray.exceptions.RayError as exc:
        run.error = f"{type(exc).__name__}: {first_line(exc)}"
        return
    run.rc, run.elapsed_s, files = got["rc"], got["elapsed_s"], got["files"]
    if "results.json" not in files:
        run.error = got["error"] or f"rbench run exited {run.rc} without results"
        return
    run.status = "ok" if run.rc == 0 else "parity failed" if run.rc == 1 else "failed"
    run.error = None if run.rc == 0 else got["error"]
    staging = Path(tempfile.mkdtemp(prefix=f".{run.name}-", dir=out))
    for name, data in files.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_bytes(data)
    shutil.rmtree(out / run.name, ignore_errors=True)
    staging.rename(out / run.name)
    run.files = sorted(files)


def exit_code(record: dict[str, Any]) -> int:
    """0 when every node ran and passed; 1 when a node's run failed parity; 4 when a node could not run."""
    status = {n["status"] for n in record["nodes"]}
    return 0 if status == {"ok"} else 1 if "parity failed" in status else 4


def read_fleet(fleet_dir: Path) -> dict[str, Any]:
    from rbench._io import read_json_record

    path = Path(fleet_dir) / FLEET_RECORD
    if not path.is_file():
        raise BadInputError(f"{fleet_dir} is not a fleet folder: it has no {FLEET_RECORD} (rbench fleet run writes it)")
    return read_json_record(path, FLEET_SCHEMA, lambda r: [(n["name"], n["status"]) for n in r["nodes"]], "fleet")


@dataclass
class Machine:
    name: str
    status: str
    error: str | None = None
    describe: str = ""
    best: dict[str, Any] | None = None  # the best passing row: label, batch, images/s, p50 ms at the smallest batch
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)  # "backend precision" → its figures or why none
    price: float | None = None
    images_per_dollar: float | None = None


def parse_prices(prices: list[str], names: list[str]) -> dict[str, float]:
    """``--price USD`` (every node) or ``--price NODE=USD`` (one node) → node → price per node-hour."""
    found: dict[str, float] = {}
    for text in prices:
        name, _, value = text.rpartition("=")
        try:
            price = float(value)
        except ValueError:
            raise BadInputError(f"--price {text!r}: write USD per node-hour, or NODE=USD") from None
        if price <= 0:
            raise BadInputError(f"--price {text!r}: a price per node-hour must be above 0")
        if name and name not in names:
            raise BadInputError(f"--price {text!r}: no node {name!r} in the fleet; it has {', '.join(names)}")
        found.update({name: price} if name else {n: price for n in names if n not in found})
    return found


def _machine(node: dict[str, Any], fleet_dir: Path) -> Machine:
    from rbench.bench.report import machine
    from rbench.bench.results import read_results, rows_of

    found = Machine(node["name"], node["status"], node.get("error"))
    if "results.json" not in node.get("files", []):
        return found
    data = read_results(fleet_dir / node["name"] / "results.json")
    found.describe = machine(data)
    for row in rows_of(data):
        key = f"{row.backend} {row.precision}"
        if row.skipped or row.error:
            found.cells.setdefault(key, {"why": f"skipped: {row.skipped}" if row.skipped else f"error: {row.error}"})
            continue
        points = [p for p in row.points if p.stats]
        if not points:
            continue
        top = max(points, key=lambda p: p.stats.throughput)
        cell = {
            "label": row.label,
            "passed": not row.failed,
            "batch": top.batch,
            "images_per_s": top.stats.throughput,
            "p50_ms": points[0].stats.p50 * 1e3,
            "p50_batch": points[0].batch,
        }
        if cell["passed"] and cell["images_per_s"] > found.cells.get(key, {}).get("images_per_s", -1):
            found.cells[key] = cell
        found.cells.setdefault(key, cell)
    passing = [c for c in found.cells.values() if c.get("passed")]
    found.best = max(passing, key=lambda c: c["images_per_s"], default=None)
    return found


def fleet_report(fleet_dir: Path, prices: Sequence[str] = ()) -> dict[str, Any]:
    """``FLEET_DIR/fleet-report.{md,json,png}``: the best passing row per machine, each backend x precision across
    machines, images per dollar where a price per node-hour is given. Returns the report's data."""
    from rbench._io import write_bytes_atomic, write_json_atomic
    from rbench.bench.plot import fleet_plot

    fleet_dir = Path(fleet_dir)
    record = read_fleet(fleet_dir)
    machines = [_machine(n, fleet_dir) for n in record["nodes"]]
    for name, price in parse_prices(list(prices), [m.name for m in machines]).items():
        m = next(m for m in machines if m.name == name)
        m.price = price
        if m.best:
            m.images_per_dollar = m.best["images_per_s"] * 3600 / price
    keys = sorted({k for m in machines for k in m.cells})
    report = {
        "fleet": str(fleet_dir),
        "run_args": record["run_args"],
        "placement": record["placement"],
        "machines": [asdict(m) for m in machines],
        "matrix": {k: {m.name: m.cells.get(k) for m in machines} for k in keys},
    }
    write_json_atomic(fleet_dir / f"{REPORT}.json", report)
    write_bytes_atomic(fleet_dir / f"{REPORT}.md", markdown(report).encode())
    write_bytes_atomic(fleet_dir / f"{REPORT}.png", fleet_plot(report))
    return report


def _cell(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "not run"
    if "why" in cell:
        return cell["why"]
    return f"{cell['images_per_s']:.1f}/s (b{cell['batch']})" + ("" if cell["passed"] else " FAIL parity")


def markdown(report: dict[str, Any]) -> str:
    machines = report["machines"]
    lines = [
        "# rbench fleet",
        "",
        f"`rbench run {' '.join(report['run_args'])}` on {len(machines)} node(s), {report['placement']}.",
        "",
        "## Best passing row per machine",
        "",
        "| node | machine | status | best passing row | images/s | p50 ms | $/node-hour | images per $ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in machines:
        best = m["best"] or {}
        status = m["status"] + (f": {m['error']}" if m["error"] else "")
        speed = ["", ""]
        if best:
            speed = [f"{best['images_per_s']:.1f} (b{best['batch']})", f"{best['p50_ms']:.2f} (b{best['p50_batch']})"]
        price = "" if m["price"] is None else f"{m['price']:g}"
        per_dollar = "" if m["images_per_dollar"] is None else f"{m['images_per_dollar']:,.0f}"
        cells = [m["name"], m["describe"], status, best.get("label", ""), *speed, price, per_dollar]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Each backend x precision across machines (best images/s of the batches measured)", ""]
    lines += ["| row | " + " | ".join(m["name"] for m in machines) + " |", "|---|" + "---|" * len(machines)]
    for key, cells in report["matrix"].items():
        lines.append(f"| {key} | " + " | ".join(_cell(cells[m["name"]]) for m in machines) + " |")
    return "\n".join(lines) + "\n"
