"""``rbench compare``: bootstrap intervals that detect real changes and not noise, row matching, environment checks
and exit codes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rbench.bench.compare import bootstrap_ratio, compare_results, verdict
from rbench.cli import app
from rbench.errors import ArtifactError


def _samples(rng, median: float, n: int = 300) -> np.ndarray:
    """Skewed, autocorrelated latencies: lognormal noise plus slow stretches of consecutive calls."""
    x = rng.lognormal(np.log(median), 0.08, n)
    for start in rng.integers(0, n - 20, 3):
        x[start : start + 20] *= 1.3  # a noisy neighbour for 20 calls
    return x


def test_a_ten_percent_slowdown_is_detected_and_noise_is_not():
    rng = np.random.default_rng(0)
    detected, quiet = 0, 0
    for trial in range(100):
        old, same, slower = _samples(rng, 0.010), _samples(rng, 0.010), _samples(rng, 0.011)
        detected += verdict(*bootstrap_ratio(old, slower, 500, seed=trial), threshold=0.05) == "slower"
        quiet += verdict(*bootstrap_ratio(old, same, 500, seed=trial), threshold=0.05) == "no significant change"
    assert detected >= 95 and quiet >= 95


def test_interval_brackets_the_ratio_and_a_faster_run_is_faster():
    rng = np.random.default_rng(1)
    old, new = _samples(rng, 0.020), _samples(rng, 0.016)
    ratio, low, high = bootstrap_ratio(old, new, 1000)
    assert low < ratio < high and ratio == pytest.approx(0.8, abs=0.03)
    assert verdict(ratio, low, high, 0.05) == "faster"
    assert verdict(1.03, 1.01, 1.05, 0.05) == "no significant change"  # significant, but under the threshold


def _results(rows: dict[tuple[str, str, int], float], seed: int = 0) -> dict:
    """A minimal results.json with one row per (backend, precision) and its samples per batch."""
    rng = np.random.default_rng(seed)
    out = []
    for (backend, precision, batch), median in rows.items():
        samples = _samples(rng, median, 200)
        stats = {"p50": float(np.median(samples)), "throughput": batch / float(np.median(samples))}
        point = {"batch": batch, "stats": stats, "samples": samples.tolist()}
        existing = next((r for r in out if (r["backend"], r["precision"]) == (backend, precision)), None)
        if existing:
            existing["points"].append(point)
            continue
        out.append({"backend": backend, "variant": "", "precision": precision, "device": "cpu", "points": [point]})
    return {
        "schema": 1,
        "environment": {"cpu": {"model": "AMD EPYC", "logical_cores": 2}, "gpu": {"name": None}, "libraries": {}},
        "config": {"threads": 0, "warmup_s": 1.0, "duration_s": 3.0, "batch_sizes": [1], "seed": 0},
        "model": {"macs": 1},
        "rows": out,
    }


BASE = {("ort", "fp32", 1): 0.010, ("ort", "fp32", 8): 0.060, ("openvino", "int8", 1): 0.004}


def test_rows_are_matched_and_unmatched_ones_listed():
    old = _results(BASE)
    new = _results({**{k: v for k, v in BASE.items() if k[0] == "ort"}, ("torch", "bf16", 1): 0.02}, seed=1)
    result = compare_results(old, new, resamples=300)
    assert [c.key for c in result.changes] == [("ort", "", "fp32", "cpu", "1"), ("ort", "", "fp32", "cpu", "8")]
    assert result.only_old == [("openvino", "", "int8", "cpu", "1")]
    assert result.only_new == [("torch", "", "bf16", "cpu", "1")]


def test_another_machine_or_library_is_refused_unless_allowed():
    old, new = _results(BASE), _results(BASE, seed=1)
    new["environment"]["libraries"] = {"onnxruntime": "1.33.0"}
    new["config"]["threads"] = 4
    with pytest.raises(ArtifactError, match="libraries: .* -> .*1.33.0.*; settings: .*'threads': 0.*'threads': 4"):
        compare_results(old, new)
    assert compare_results(old, new, allow_env_change=True, resamples=300).differences


@pytest.fixture
def files(tmp_path):
    def write(name: str, data: dict):
        path = tmp_path / name / "results.json"
        path.parent.mkdir()
        path.write_text(json.dumps(data))
        return str(path)

    return write


def test_cli_same_build_is_no_change_and_a_slower_build_exits_1(files):
    cli = CliRunner()
    main, again = files("main", _results(BASE)), files("again", _results(BASE, seed=7))
    same = cli.invoke(app, ["compare", main, again, "--resamples", "500"])
    assert same.exit_code == 0, same.output
    assert same.stdout.count("no significant change") == 3
    slow = copy.deepcopy(BASE)
    slow[("openvino", "int8", 1)] *= 1.2
    slower = files("slower", _results(slow, seed=7))
    result = cli.invoke(app, ["compare", main, slower, "--resamples", "500"])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("regression: openvino int8 b1 (1.") and result.stderr.count("b1") == 1
    summary = cli.invoke(app, ["compare", main, slower, "--resamples", "500", "--markdown"]).stdout
    assert "1 significant regression(s) beyond 5%" in summary and "| openvino int8 | 1 |" in summary
    data = json.loads(cli.invoke(app, ["compare", main, slower, "--resamples", "500", "--json"]).stdout)
    assert data["regressions"] == 1 and data["resamples"] == 500 and data["confidence"] == 0.95


def test_cli_environment_change_exits_3_and_missing_file_2(files, tmp_path):
    cli = CliRunner()
    other = _results(BASE, seed=1)
    other["environment"]["cpu"]["model"] = "Intel Xeon"
    a, b = files("a", _results(BASE)), files("b", other)
    result = cli.invoke(app, ["compare", a, b])
    assert result.exit_code == 3 and "cpu model: 'AMD EPYC' -> 'Intel Xeon'" in result.stderr
    assert cli.invoke(app, ["compare", a, b, "--allow-env-change", "--resamples", "300"]).exit_code == 0
    missing = cli.invoke(app, ["compare", a, str(tmp_path / "none.json")])
    assert missing.exit_code == 2 and "results file not found" in missing.stderr


FIXTURE = Path(__file__).parents[1] / "fixtures" / "results-before-specs.json"


def test_a_results_file_written_before_the_redesign_still_compares():
    """A results.json of schema 1 written by rbench df22fbc (before backend specs and the machine record)."""
    result = CliRunner().invoke(app, ["compare", str(FIXTURE), str(FIXTURE), "--resamples", "300", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["rows"]) == 3 and all(r["verdict"] == "no significant change" for r in data["rows"])


def _corrupt(tmp_path, edit) -> tuple[str, object]:
    data = json.loads(FIXTURE.read_text())
    edit(data)
    path = tmp_path / "corrupt.json"
    path.write_text(json.dumps(data))
    return str(path), CliRunner().invoke(app, ["compare", str(FIXTURE), str(path)])


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["rows"][0]["points"][0]["samples"].__setitem__(3, "fast"), "rows[0].points[0].samples[3]"),
        (lambda d: d["rows"][1]["points"][0]["samples"].__setitem__(0, -1.0), "rows[1].points[0].samples[0]"),
        (lambda d: d["rows"][1]["points"][0].__setitem__("samples", {"a": 1}), "rows[1].points[0].samples"),
        (lambda d: d["rows"][2]["points"][0]["stats"].__setitem__("p50", None), "rows[2].points[0].stats.p50"),
        (lambda d: d["rows"][0]["points"][0].__setitem__("batch", "1"), "rows[0].points[0].batch"),
        (lambda d: d["rows"][0].pop("backend"), "rows[0] has no 'backend'"),
        (lambda d: d.__setitem__("rows", {}), "rows is {}"),
    ],
)
def test_a_corrupt_results_file_is_bad_input_naming_the_file_and_field(tmp_path, edit, field):
    """Exit 2 in one line (a CI gate reads exit 1 as a regression), never a traceback."""
    path, result = _corrupt(tmp_path, edit)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: corrupt results {path}: ") and field in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
