"""``rbench fleet`` on a local Ray cluster of two nodes (``ray.cluster_utils.Cluster``): one benchmark per node, its
results back through Ray, a node whose worker is killed recorded without losing the other's, and the report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rbench.cli import app

pytest.importorskip("ray")

#: The shortest honest run: one small row (the baseline comes with it), one batch, no GEMM peak probes
SHORT = ["--backends", "ort", "--precision", "fp32", "--batch-sizes", "1", "--warmup-s", "0", "--duration-s", "0.05"]
SHORT += ["--min-iterations", "3", "--threads", "1", "--no-peak"]


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes on this machine, each with one CPU and the per-node resource ``rbench``."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "resources": {"rbench": 1}}
    made = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    made.add_node(**node)
    made.wait_for_nodes()
    yield made
    made.shutdown()


@pytest.fixture(scope="module")
def fleet(cluster, resnet20_artifact, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("fleet") / "fleet"
    args = ["fleet", "run", "--address", cluster.address, "--out", str(out), "--"]
    args += ["--artifact", str(resnet20_artifact.path), *SHORT]
    return out, CliRunner().invoke(app, args)


def test_a_two_node_fleet_brings_back_each_nodes_results(fleet, resnet20_artifact):
    out, result = fleet
    assert result.exit_code == 0, result.output
    record = json.loads((out / "fleet.json").read_text())
    nodes = record["nodes"]
    assert [n["status"] for n in nodes] == ["ok", "ok"] and len({n["node_id"] for n in nodes}) == 2
    assert record["placement"] == "per-node resource 'rbench', all CPUs"
    for node in nodes:
        data = json.loads((out / node["name"] / "results.json").read_text())
        labels = [r["label"] for r in data["rows"]]
        assert labels == ["torch eager fp32", "ort cpu fp32"] and data["passed"]
        assert {"report.md", "results.csv", "latency.png"} <= set(node["files"])
        assert Path(data["artifact"]).name == resnet20_artifact.path.name and data["config"]["threads"] == 1


def test_the_fleet_report_has_each_machine_and_images_per_dollar(fleet):
    out, _ = fleet
    names = [n["name"] for n in json.loads((out / "fleet.json").read_text())["nodes"]]
    result = CliRunner().invoke(
        app, ["fleet", "report", str(out), "--price", "0.5", "--price", f"{names[1]}=2", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    machines = {m["name"]: m for m in report["machines"]}
    assert list(machines) == names
    for name, price in zip(names, (0.5, 2.0), strict=True):
        best = machines[name]["best"]
        assert best["label"] == "ort cpu fp32" and machines[name]["price"] == price  # ORT beats eager on resnet20
        assert machines[name]["images_per_dollar"] == pytest.approx(best["images_per_s"] * 3600 / price)
    assert set(report["matrix"]) == {"torch fp32", "ort fp32"}
    assert all(report["matrix"]["ort fp32"][n]["passed"] for n in names)
    text = (out / "fleet-report.md").read_text()
    assert text.count("| ok | ort cpu fp32 |") == 2 and (out / "fleet-report.png").read_bytes()[:4] == b"\x89PNG"


def test_a_bad_price_or_folder_is_bad_input(fleet, tmp_path):
    out, _ = fleet
    result = CliRunner().invoke(app, ["fleet", "report", str(out), "--price", "nowhere=1"])
    assert result.exit_code == 2 and "no node 'nowhere' in the fleet" in result.output
    result = CliRunner().invoke(app, ["fleet", "report", str(tmp_path)])
    assert result.exit_code == 2 and "has no fleet.json" in result.output
    result = CliRunner().invoke(app, ["fleet", "run", "--address", "auto", "--out", str(out), "--", *SHORT])
    assert result.exit_code == 2 and "already holds a fleet" in result.output


def test_run_options_are_checked_before_any_node_starts():
    result = CliRunner().invoke(app, ["fleet", "run", "--address", "auto", "--", "--batch-sizes"])
    assert result.exit_code == 2 and "rbench run options" in result.output
    result = CliRunner().invoke(app, ["fleet", "run", "--address", "auto", "--", "--out", "x"])
    assert result.exit_code == 2 and "sets --out, --json on every node" in result.output


def _benchmarks() -> list:
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        line = p.info["cmdline"] or []
        if "rbench" in line and "run" in line and any("rbench-fleet-" in a for a in line):
            found.append(p)
    return found


def test_a_node_whose_worker_is_killed_mid_run_is_recorded_and_the_other_kept(cluster, resnet20_artifact, tmp_path):
    """Placed by a STRICT_SPREAD placement group of whole nodes this time (no custom resource asked for)."""
    out = tmp_path / "fleet"
    cmd = [sys.executable, "-m", "rbench", "fleet", "run", "--address", cluster.address, "--out", str(out)]
    cmd += ["--per-node-resource", "none", "--"]
    launched = subprocess.Popen(
        [*cmd, "--artifact", str(resnet20_artifact.path), *SHORT], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while len(running := _benchmarks()) < 2 and time.monotonic() < deadline and launched.poll() is None:
        time.sleep(0.2)
    assert len(running) == 2, "both nodes' benchmarks should be running"
    os.kill(running[0].ppid(), signal.SIGKILL)  # the Ray worker that runs this node's benchmark
    _, stderr = launched.communicate(timeout=300)
    assert launched.returncode == 4, stderr.decode()[-2000:]  # a node could not run
    record = json.loads((out / "fleet.json").read_text())
    nodes = record["nodes"]
    assert record["placement"] == "STRICT_SPREAD placement group" and len({n["node_id"] for n in nodes}) == 2
    assert sorted(n["status"] for n in nodes) == ["failed", "ok"]
    failed = next(n for n in nodes if n["status"] == "failed")
    kept = next(n for n in nodes if n["status"] == "ok")
    assert "WorkerCrashedError" in failed["error"] and not (out / failed["name"]).exists()
    assert json.loads((out / kept["name"] / "results.json").read_text())["passed"]
    report = json.loads((out / "fleet-report.json").read_text())
    assert [m["status"] for m in report["machines"]] == [n["status"] for n in nodes]
    assert next(m for m in report["machines"] if m["status"] == "failed")["best"] is None
