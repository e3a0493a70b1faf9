"""rbench deploy triton: the repository for the chosen row, its config parsed by Triton's own schema."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import cli_run
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from rbench.bench.deploy import choose_row, deploy_triton


@pytest.fixture(scope="module")
def results(quick_run):
    out, result = quick_run
    assert result.exit_code == 0, result.output
    return out / "results.json"


def parse(path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_the_fastest_passing_row_is_deployed_with_measured_fields(results, tmp_path):
    data = json.loads(results.read_text())
    written = deploy_triton(results, bound_ms=1000, name="r20", out=tmp_path / "repo")
    config = parse(tmp_path / "repo" / "r20" / "config.pbtxt")
    choice = choose_row(data, 1000)
    assert config.backend == {"ort": "onnxruntime", "openvino": "openvino"}[choice.row.backend]
    assert config.max_batch_size == 2 and list(config.dynamic_batching.preferred_batch_size) == [choice.batch]
    assert list(config.input[0].dims) == [3, 32, 32] and list(config.output[0].dims) == [10]
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    best = max(
        (p["stats"]["throughput"], r["label"])
        for r in data["rows"]
        if r["backend"] in ("ort", "openvino") and not r.get("skipped") and not r["failed"]
        for p in r["points"]
    )
    assert written["row"] == best[1]
    model = tmp_path / "repo" / "r20" / "1"
    assert sorted(p.name for p in model.iterdir()) in (["model.onnx"], ["model.bin", "model.xml"])
    assert "perf_analyzer -m r20 -b" in written["perf_analyzer"]
    assert json.loads((tmp_path / "repo" / "r20" / "rbench-expected.json").read_text())["batch"] == choice.batch


@pytest.mark.parametrize("row", ["ort:int8-u8s8", "openvino:int8-nncf", "ort:fp32", "openvino:fp32"])
def test_every_backend_config_parses_and_its_model_file_is_the_rows(results, tmp_path, row):
    written = deploy_triton(results, bound_ms=1000, row=row, name="m", out=tmp_path)
    config = parse(tmp_path / "m" / "config.pbtxt")
    params = {k: v.string_value for k, v in config.parameters.items()}
    source = Path(json.loads(results.read_text())["artifact"]) / written["file"]
    if row.startswith("ort"):
        assert (tmp_path / "m" / "1" / "model.onnx").read_bytes() == source.read_bytes()  # the row's own file
        assert params == {"intra_op_thread_count": "2"}
    else:
        assert params["INFERENCE_PRECISION_HINT"] == "f32" and params["INFERENCE_NUM_THREADS"] == "2"
        ir = tmp_path / "m" / "1" / "model.xml"
        if source.suffix == ".xml":
            assert ir.read_bytes() == source.read_bytes()
        else:
            import openvino as ov

            assert len(ov.Core().read_model(str(ir)).get_ordered_ops()) > 50  # the row's ONNX, as IR
    assert written["file"].startswith("model.")


def test_bad_input_and_gates(results, tmp_path):
    r = cli_run("deploy", "triton", str(results), "--latency-bound-ms", "0.0001", "--out", str(tmp_path))
    assert r.exit_code == 1 and "best p99 found is" in r.stderr
    ok = cli_run("deploy", "triton", str(results), "--latency-bound-ms", "1000", "--out", str(tmp_path))
    assert ok.exit_code == 0, ok.output
    again = cli_run("deploy", "triton", str(results), "--latency-bound-ms", "1000", "--out", str(tmp_path))
    assert again.exit_code == 2 and "--force" in again.stderr
    forced = cli_run("deploy", "triton", str(results), "--latency-bound-ms", "1000", "--out", str(tmp_path), "--force")
    assert forced.exit_code == 0
    none = cli_run("deploy", "triton", str(results), "--row", "torch:fp32", "--out", str(tmp_path / "x"))
    assert none.exit_code == 1 and "Triton has no backend" in none.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli_run("deploy", "triton", str(bad), "--out", str(tmp_path / "y")).exit_code == 2
    shutil.rmtree(tmp_path / "y", ignore_errors=True)
