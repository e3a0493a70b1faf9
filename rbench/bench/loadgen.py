"""MLPerf LoadGen scenarios on any runner (``mlcommons-loadgen``, module ``mlperf_loadgen``).

A QSL over the preprocessed pool (every sample preloaded: nothing to load or unload), a SUT whose ``issue_query``
runs the runner and answers with ``QuerySamplesComplete``, each response's bytes kept alive until that call returns.
Settings are set field by field for short runs; the official ``mlperf.conf`` (10-minute SingleStream minimum) only
with ``official=True``. LoadGen runs in a private temporary folder, because an ``audit.config`` in the working
directory silently overrides its settings, and its logs are copied into the results folder. Figures come from
``mlperf_log_detail.txt``'s ``:::MLLOG`` lines.
"""

from __future__ import annotations

import array
import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rbench.errors import BadInputError, missing_dependency, unknown_choice
from rbench.runtime.base import Runner

SCENARIOS = {
    "single-stream": "SingleStream",
    "multi-stream": "MultiStream",
    "offline": "Offline",
    "server": "Server",
}
#: What each scenario reports, as named in the detail log.
RESULT_KEYS = {
    "single-stream": ("result_90.00_percentile_latency_ns", "p90 latency"),
    "multi-stream": ("result_99.00_percentile_per_query_latency_ns", "p99 latency per 8-sample query"),
    "offline": ("result_samples_per_second", "samples/s"),
    "server": ("result_completed_samples_per_sec", "completed samples/s"),
}


#: Fewest queries for LoadGen's early-stopping estimate to make a run VALID (from its own summaries: single-stream's
#: p90 estimate works from 64, multi-stream's p99 needs 662 queries, server's p99 about 460).
MIN_QUERIES = {"single-stream": 64, "multi-stream": 662, "offline": 1, "server": 500}


@dataclass(frozen=True)
class ScenarioConfig:
    """Short settings by default (a laptop, not a submission); ``official`` loads MLPerf's own, which take 10
    minutes and more per scenario."""

    scenario: str = "single-stream"
    min_duration_ms: int = 3000
    min_query_count: int = 1  # raised to the scenario's MIN_QUERIES
    target_qps: float = 10.0  # server
    latency_bound_ms: float = 15.0  # server: MLPerf's ResNet-50 bound
    batch: int = 8  # offline: samples per inference
    official: bool = False

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise unknown_choice("scenario", self.scenario, SCENARIOS)
        if self.min_duration_ms < 1 or self.min_query_count < 1 or self.batch < 1:
            raise BadInputError("LoadGen needs a positive duration, query count and batch")
        if self.target_qps <= 0 or self.latency_bound_ms <= 0:
            raise BadInputError(
                f"--target-qps and --latency-bound-ms must be above 0, got {self.target_qps}, {self.latency_bound_ms}"
            )


def settings(lg: Any, config: ScenarioConfig, expected_latency_s: float) -> Any:
    s = lg.TestSettings()
    s.scenario = getattr(lg.TestScenario, SCENARIOS[config.scenario])
    s.mode = lg.TestMode.PerformanceOnly
    if config.official:  # MLPerf's own ResNet-50 settings, embedded in LoadGen: 600 s minimum, 15 ms server bound
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as empty_user_conf:
            s.FromConfig(empty_user_conf.name, "resnet50", SCENARIOS[config.scenario], 0)
        s.server_target_qps = config.target_qps
        s.single_stream_expected_latency_ns = int(expected_latency_s * 1e9)
        s.offline_expected_qps = max(1.0, config.batch / expected_latency_s)
        return s
    s.min_duration_ms = config.min_duration_ms
    s.min_query_count = max(config.min_query_count, MIN_QUERIES[config.scenario])
    # under-estimate latencies (over-estimate rates) by half: LoadGen pre-generates queries from them, and a run that
    # runs out of queries before ``min_duration_ms`` is INVALID
    s.single_stream_expected_latency_ns = int(expected_latency_s * 0.5e9)
    s.multi_stream_expected_latency_ns = int(expected_latency_s * 8 * 0.5e9)
    s.multi_stream_samples_per_query = 8
    s.offline_expected_qps = max(1.0, 1.5 * config.batch / expected_latency_s)  # over-estimate: the run must last
    s.server_target_qps = config.target_qps
    s.server_target_latency_ns = int(config.latency_bound_ms * 1e6)
    return s


@contextlib.contextmanager
def _private_folder() -> Iterator[Path]:
    """A fresh working directory for LoadGen: no stray audit.config can reach it."""
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="rbench-loadgen-") as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(previous)


def run_scenario(
    runner: Runner,
    samples: np.ndarray,
    input_name: str,
    config: ScenarioConfig,
    expected_latency_s: float,
    log_dir: Path,
) -> dict[str, Any]:
    """Drive an active runner through one LoadGen scenario over ``samples`` (``[N, C, H, W]``, one per sample)."""
    if importlib.util.find_spec("mlperf_loadgen") is None:
        raise missing_dependency("mlcommons-loadgen", "loadgen")
    import mlperf_loadgen as lg

    singles = [np.ascontiguousarray(samples[i : i + 1]) for i in range(len(samples))]  # no copy while timed
    step = config.batch if config.scenario == "offline" else 8 if config.scenario == "multi-stream" else 1

    def issue(queries: list[Any]) -> None:
        for start in range(0, len(queries), step):
            chunk = queries[start : start + step]
            batch = (
                singles[chunk[0].index] if len(chunk) == 1 else np.ascontiguousarray(samples[[q.index for q in chunk]])
            )
            logits = next(iter(runner.infer({input_name: batch}, check_inputs=False).values()))
            keep = [array.array("B", np.ascontiguousarray(row).tobytes()) for row in logits]
            responses = [
                lg.QuerySampleResponse(q.id, b.buffer_info()[0], len(b)) for q, b in zip(chunk, keep, strict=True)
            ]
            lg.QuerySamplesComplete(responses)  # ``keep`` holds the bytes until this returns

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(len(samples), len(samples), lambda indices: None, lambda indices: None)
    try:
        with _private_folder() as folder:
            output = lg.LogOutputSettings()
            output.outdir = str(folder)
            output.copy_summary_to_stdout = False
            log = lg.LogSettings()
            log.log_output = output
            lg.StartTestWithLogSettings(sut, qsl, settings(lg, config, expected_latency_s), log)
            log_dir.mkdir(parents=True, exist_ok=True)
            for name in folder.glob("mlperf_log_*"):
                shutil.copy2(name, log_dir / name.name)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    return parse_detail(log_dir / "mlperf_log_detail.txt", config.scenario)


def parse_detail(path: Path, scenario: str) -> dict[str, Any]:
    """The figures of a LoadGen detail log: every ``:::MLLOG`` ``result_*`` entry, validity, and the headline."""
    results: dict[str, Any] = {}
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith(":::MLLOG"):
            continue
        entry = json.loads(line.split(":::MLLOG", 1)[1])
        if entry.get("key", "").startswith("result_"):
            results[entry["key"]] = entry["value"]
    key, label = RESULT_KEYS[scenario]
    return {
        "scenario": scenario,
        "valid": results.get("result_validity") == "VALID",
        "validity": results.get("result_validity"),
        "headline": label,
        "value": results.get(key),
        "results": results,
        "log": str(path.parent),
    }
