"""``rbench run`` end to end on a small model with short timings: every file written, rows that say what ran, parity
and efficiency figures, skip reasons, exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rbench.cli import app

cli = CliRunner()
#: A short run without the GEMM peak probes (half a minute each on this CPU), for the tests that read no peak
QUICK = ["--batch-sizes", "1,2", "--warmup-s", "0", "--duration-s", "0.05", "--min-iterations", "3", "--threads", "2"]
QUICK += ["--no-peak"]


@pytest.fixture(scope="module")
def run_dir(quick_run) -> tuple[Path, object]:
    return quick_run


def test_run_writes_every_report_and_exits_0(run_dir):
    out, result = run_dir
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out)
    for name in ("results.json", "results.csv", "report.md", "latency.png", "throughput.png", "speedup.png"):
        assert (out / name).stat().st_size > 200, name
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines[:-1]) <= 80 and "…" not in result.stdout


def test_rows_say_what_ran_with_parity_and_efficiency(run_dir):
    out, _ = run_dir
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == 1 and data["passed"] is True and data["seed"] == 0
    rows = {r["label"]: r for r in data["rows"]}
    baseline = rows["torch eager fp32"]
    assert baseline["baseline"] and baseline["executed"] == "fp32" and baseline["threads"] == 2
    ran = [r for r in data["rows"] if not r["skipped"]]
    assert {r["backend"] for r in ran} == {"torch", "ort", "openvino"}
    for r in ran:
        assert r["parity"]["passed"] and r["parity"]["cosine"] > 0.9 and r["session_s"] >= 0, r["label"]
        assert r["device"] == "cpu" and r["file"] and r["threads"] == 2, r["label"]
        for p in r["points"]:
            assert p["stats"]["iterations"] >= 3 and p["stats"]["p50"] > 0 and p["first_inference_s"] > 0
            assert p["efficiency"]["gflops"] > 0 and p["efficiency"]["share_of_peak"] > 0, r["label"]
    assert rows["openvino cpu fp32"]["executed"] == "conv f32 x19"  # the f32 hint held: no silent bf16
    from rbench.env import has_native_bf16

    native_bf16 = has_native_bf16()
    # OpenVINO runs bf16 where the CPU has it natively; elsewhere its plugin would run f32, and the row says so
    if native_bf16:
        assert rows["openvino cpu bf16"]["executed"] == "conv bf16 x19"
        assert rows["openvino cpu bf16"]["parity"]["bounds"]["cosine"] == 0.999
    else:
        assert rows["openvino cpu bf16"]["skipped"].startswith("no native bf16 on this CPU (OpenVINO's bf16 hint")
        assert not rows["openvino cpu bf16"]["points"]
    from rbench.runtime.openvino_runner import saturation_note

    assert rows["openvino cpu int8"]["executed"] == "conv u8 x18, f32 x1" + saturation_note()  # said without VNNI
    assert rows["openvino cpu int8"]["points"][0]["efficiency"]["peak_precision"] == "int8"


def test_rows_that_cannot_run_say_why_and_show_no_number(run_dir):
    out, result = run_dir
    data = json.loads((out / "results.json").read_text())
    skipped = {r["label"]: r["skipped"] for r in data["rows"] if r["skipped"]}
    assert skipped["ort cpu bf16"].startswith("ONNX Runtime's CPU provider has no bf16 execution setting; bf16 runs on")
    assert skipped["torch folded channels_last int8"].startswith("no INT8 path in eager PyTorch")
    from rbench.runtime.torch_runner import bf16_unsupported

    # torch bf16 runs where the CPU has it natively, and is skipped, saying why, where torch would emulate it
    assert skipped.get("torch folded channels_last bf16") == bf16_unsupported("cpu")
    for backend in ("trt", "ort-cuda"):
        for precision in ("fp32", "int8", "bf16"):
            assert skipped[f"{backend} {precision}"].startswith("no CUDA device here"), backend
    assert all(not r["points"] for r in data["rows"] if r["skipped"])
    assert "skipped: trt fp32, int8, bf16: no CUDA device here" in result.stdout
    table = list(csv.DictReader((out / "results.csv").open()))
    assert {"backend", "precision", "executed", "batch", "p50_ms", "throughput", "speedup", "cosine"} <= set(table[0])
    assert next(t for t in table if t["backend"] == "trt")["status"].startswith("skipped: no CUDA device")
    assert all(t["p50_ms"] == "" for t in table if t["status"] != "ok")
    assert float(next(t for t in table if t["variant"] == "eager" and t["batch"] == "1")["speedup"]) == 1.0


def test_results_json_round_trips_and_refuses_another_schema(run_dir, tmp_path):
    from rbench.bench.results import read_results
    from rbench.errors import ArtifactError

    out, _ = run_dir
    data = read_results(out / "results.json")
    assert data == json.loads((out / "results.json").read_text())
    env = data["environment"]
    assert env["cpu"]["logical_cores"] >= 1 and env["libraries"]["onnxruntime"] and "gpu" in env
    assert data["command"][:2] == ["rbench", "run"] and data["config"]["batch_sizes"] == [1, 2]
    assert {p["precision"] for p in data["peaks"]["probes"]} >= {"fp32", "bf16", "int8"}
    from rbench.env import has_native_bf16

    for library in ("torch", "openvino"):
        bf16 = [p for p in data["peaks"]["probes"] if (p["library"], p["precision"]) == (library, "bf16")]
        # a bf16 GEMM is timed only where the CPU has bf16 natively (torch would emulate it, taking seconds a
        # product; OpenVINO would run f32 under bf16's name)
        assert len(bf16) == 4 and all((p["gflops"] is not None) is has_native_bf16() for p in bf16), library
    from rbench.export.artifact import Artifact

    assert Artifact.open(data["artifact"]).precisions == [
        "fp32",
        "int8",
        "int8-u8s8",
        "int8-nncf",
    ]  # completed in place
    other = tmp_path / "results.json"
    other.write_text(json.dumps({**data, "schema": 99}))
    with pytest.raises(ArtifactError, match="results schema 99"):
        read_results(other)


def test_report_answers_the_three_questions(run_dir):
    out, _ = run_dir
    report = (out / "report.md").read_text()
    for heading in ("How fast, and how close to this machine's peak", "How close to PyTorch FP32", "Cold start"):
        assert f"## {heading}" in report
    assert "| torch eager fp32 | fp32 | 1 |" in report and "1.00x" in report
    assert "Verdict: PASS" in report


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--batch-sizes", "0"], 2, "--batch-sizes must be 1 to 4096"),
        (["--batch-sizes", "1,x"], 2, "--batch-sizes takes a comma list of whole numbers"),
        (["--backends", "tensorflow"], 2, "unknown backend 'tensorflow'"),
        (["--precision", "fp8"], 2, "unknown precision 'fp8'"),
        (["--duration-s", "0"], 2, "--duration-s above 0"),
        (["--device", "tpu"], 2, "unknown device 'tpu'"),
        (["--model", "resnet51"], 2, "unknown model 'resnet51'"),
        (["--weights", "/nonexistent.pt"], 2, "weights file not found"),
        (["--artifact", "/nonexistent"], 2, "artifact directory not found"),
        (["--threads", "-1"], 2, "--threads must be 0"),
    ],
)
def test_run_bad_input(args, code, message, tmp_path):
    result = cli.invoke(app, ["run", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == code, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_device_cuda_without_a_gpu_is_an_environment_problem(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = cli.invoke(app, ["run", "--device", "cuda", "--out", str(tmp_path)])
    assert result.exit_code == 4 and "torch sees no CUDA device" in result.stderr


def test_a_users_checkpoint_runs_through_weights(tmp_path):
    """A torchvision-style state_dict (here resnet20's own, saved by the user) is exported and measured."""
    from rbench.export.artifact import Artifact
    from rbench.models import create_model

    weights = tmp_path / "mine.pt"
    import torch

    torch.save(create_model("resnet20", weights="random", seed=3).state_dict(), weights)
    args = ["run", "--model", "resnet20", "--weights", str(weights), "--precision", "fp32", "--backends", "ort"]
    args += ["--artifacts-dir", str(tmp_path / "artifacts"), "--out", str(tmp_path / "results"), *QUICK]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results" / "results.json").read_text())
    assert Artifact.open(data["artifact"]).manifest["weights"]["source"] == str(weights)
    assert [r["label"] for r in data["rows"] if not r["skipped"]] == ["torch eager fp32", "ort cpu fp32"]
    assert all(r["parity"]["passed"] for r in data["rows"] if r["parity"])
    # --no-peak: no probe and no measured share of peak; the CPU's peak on paper is still there
    assert data["peaks"]["probes"] == [] and data["peaks"]["theoretical"]["fp32"]["gflops"] > 0
    points = [p for r in data["rows"] for p in r["points"]]
    assert points and all(p["efficiency"]["share_of_peak"] is None and p["efficiency"]["gflops"] > 0 for p in points)


def test_a_row_that_fails_parity_is_marked_and_exits_1(resnet20_artifact, copy_artifact, tmp_path):
    """A wrong FP32 graph whose manifest was made to agree: only the row's parity can catch it."""
    import numpy as np

    from rbench._io import sha256_file
    from rbench.export.onnx_export import load_onnx

    path = copy_artifact(resnet20_artifact)
    model = load_onnx(path / "model.onnx")
    init = model.graph.initializer[0]
    init.raw_data = np.zeros(len(init.raw_data) // 4, np.float32).tobytes()
    (path / "model.onnx").write_bytes(model.SerializeToString())
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["precisions"]["fp32"]["sha256"] = sha256_file(path / "model.onnx")
    (path / "manifest.json").write_text(json.dumps(manifest))
    args = ["run", "--artifact", str(path), "--backends", "ort", "--precision", "fp32", "--out", str(tmp_path / "r")]
    result = cli.invoke(app, [*args, *QUICK], env={"COLUMNS": "80"})
    assert result.exit_code == 1, result.output
    assert "✗" in result.stdout and "FAIL: parity and finite outputs" in result.stdout
    assert result.stderr.splitlines()[-1].startswith("parity FAILED: fp32 photos/logits: max abs error ")
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    ort_row = next(r for r in data["rows"] if r["backend"] == "ort")
    assert data["passed"] is False and ort_row["failed"] and ort_row["points"]  # measured all the same
    assert "**FAIL**" in (tmp_path / "r" / "report.md").read_text()


def test_streams_measure_requests_in_flight(resnet20_artifact, tmp_path):
    out = tmp_path / "results"
    args = ["run", "--artifact", str(resnet20_artifact.path), "--backends", "torch,ort,openvino", "--precision", "fp32"]
    args += ["--batch-sizes", "2", "--warmup-s", "0", "--duration-s", "0.3", "--streams", "2", "--out", str(out)]
    args += ["--no-peak"]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {r["label"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    ort_found = rows["ort cpu fp32"]["concurrency"]["2"]
    assert ort_found[0]["streams"] == 2 and ort_found[0]["threads_per_stream"] >= 1 and ort_found[0]["throughput"] > 0
    ov_modes = [m["mode"] for m in rows["openvino cpu fp32"]["concurrency"]["2"]]
    assert ov_modes == ["AsyncInferQueue, PERFORMANCE_HINT=LATENCY", "AsyncInferQueue, PERFORMANCE_HINT=THROUGHPUT"]
    assert rows["torch folded channels_last fp32"]["concurrency"] == {}  # CPU torch: one request, said in the README
    assert (out / "streams.png").read_bytes()[:4] == b"\x89PNG" and "## Requests in flight" in (
        out / "report.md"
    ).read_text()


def test_the_failure_line_names_every_cause():
    """What fails a run is decided on each row alone (``Row.failures``) and written with it."""
    from rbench.bench.results import Point, Row, run_failures

    a = Row("ort", "int8", "cpu", "a", "cpu", None, parity={"passed": False, "failing": ["int8 photos/logits: cos"]})
    bad = Point(1, nonfinite=3, audits={"outputs": {"passed": False, "finding": "timed outputs differ"}})
    b = Row("ort", "fp32", "cpu", "b", "cpu", None, parity={"passed": True, "failing": []}, points=[bad])
    good = Row("ort", "fp16", "cpu", "c", "cpu", None, parity={"passed": True, "failing": []}, points=[Point(1)])
    assert a.failures() == ["int8 photos/logits: cos"] and a.failed
    assert b.failures() == ["b b1: timed outputs differ", "b b1: 3 NaN/Inf values in timed outputs"]
    assert good.failures() == [] and not good.failed
    data = {"rows": [r.to_dict() for r in (a, b, good)]}
    assert run_failures(data) == [*a.failures(), *b.failures()]


def test_a_tampered_artifact_is_refused_before_any_work(resnet20_artifact, copy_artifact, tmp_path, monkeypatch):
    """Exit 3 in one line, before the reference, the peak probe or any export; nothing is made beside it."""
    path = copy_artifact(resnet20_artifact)
    onnx = path / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    monkeypatch.setattr("rbench.bench.run.measure_peaks", lambda threads: pytest.fail("measured a peak"))
    before = sorted(p.name for p in path.parent.iterdir())
    result = cli.invoke(
        app, ["run", "--artifact", str(path), "--out", str(tmp_path / "r"), *QUICK, "--precision", "int8"]
    )
    assert result.exit_code == 3, result.output
    assert "rebuild required: model.onnx in" in result.stderr and result.stderr.count("\n") == 1
    assert sorted(p.name for p in path.parent.iterdir()) == before  # no other artifact made and timed instead


def test_a_renamed_artifact_is_completed_in_the_folder_named(resnet20_artifact, tmp_path):
    import shutil

    named = tmp_path / "my-model"
    shutil.copytree(resnet20_artifact.path, named)
    args = ["run", "--artifact", str(named), "--out", str(tmp_path / "r"), *QUICK, "--backends", "ort"]
    result = cli.invoke(app, [*args, "--precision", "int8", "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-model", "r"]  # no resnet20-<digest>/ beside it
    assert (named / "model.int8.onnx").is_file()
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert data["artifact"] == str(named)
