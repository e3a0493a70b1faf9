"""rbench profile: each backend's own profiler, read back to PyTorch modules and stages, with its own overhead."""

import json

import numpy as np
import pytest
from conftest import cli_run

from rbench.bench.profile import UNATTRIBUTED, markdown, node_macs, profile_rows
from rbench.export.artifact import Artifact
from rbench.models import create_model

STAGES = ["stem", "layer1", "layer2", "layer3", "head"]


@pytest.fixture(scope="module")
def rows(resnet20_all):
    artifact = Artifact.open(resnet20_all.path)
    return {
        (r.backend, r.precision): r
        for r in profile_rows(artifact, ["torch", "torch-compile", "ort", "openvino"], ["fp32", "int8"], calls=10)
    }


def test_every_row_is_rolled_up_to_stages_with_module_names(rows):
    modules = set(dict(create_model("resnet20").named_modules()))
    assert rows[("torch", "int8")].skipped  # eager PyTorch has no INT8: said, not faked
    compiled = [("torch-compile", "fp32"), ("torch-compile", "int8")]
    others = [("torch", "fp32"), ("ort", "fp32"), ("ort", "int8"), ("openvino", "fp32"), ("openvino", "int8")]
    for key in [*others, *compiled]:
        row = rows[key]
        assert [s for s in row.stages() if s != UNATTRIBUTED] == STAGES, key
        assert sum(row.stages().values()) == pytest.approx(row.layer_sum_ms)
        # inductor's own fused kernels (pointwise, pooling) name no module: measured 26-32% not attributed
        assert row.attributed_ms > (0.5 if key in compiled else 0.6) * row.layer_sum_ms, key
        convs = [x for x in row.layers if x.macs]
        assert len({m for x in convs for m in x.modules if m.endswith(("conv1", "conv2"))}) >= 18, key
        assert all(set(x.modules) <= modules for x in row.layers), key
        assert np.isfinite(row.overhead) and row.latency_ms > 0 and row.profiled_ms > 0


def test_fused_openvino_layers_list_every_module_they_cover(rows):
    fused = [x for x in rows[("openvino", "fp32")].layers if len(x.modules) > 1]
    assert any({"layer1.0.conv2", "layer1.0"} <= set(x.modules) for x in fused)  # conv2 + residual Add (+ ReLU)


def test_macs_match_the_convolutions_arithmetic(resnet20_all):
    import onnx

    macs = node_macs(onnx.load(str(resnet20_all.path / "model.onnx")), batch=2)
    assert macs["/conv1/Conv"] == 2 * 16 * 32 * 32 * 3 * 3 * 3
    assert macs["/fc/Gemm"] == 2 * 10 * 64
    assert sum(macs.values()) == pytest.approx(2 * 40.55e6, rel=0.02)  # resnet20: 40.55 MMACs per image


def test_markdown_names_the_profiler_overhead_and_top_layers(rows):
    text = markdown(list(rows.values()))
    assert "| stage |" in text and "overhead" in text and "GFLOP/s" in text
    assert "skipped: torch int8" in text
    table = text[: text.index("\n\n")].splitlines()[2:]  # the stages x rows table
    assert [line.split(" | ")[0].strip("| ") for line in table] == [*STAGES, UNATTRIBUTED]  # once, and last


def test_profile_cli_writes_json_markdown_and_png(resnet20_all, tmp_path):
    out = tmp_path / "profile"
    args = ["profile", "--artifact", str(resnet20_all.path), "--backends", "ort", "--precision", "int8"]
    result = cli_run(*args, "--iterations", "5", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["precision"] for r in data["rows"]] == ["int8", "int8-u8s8"]
    assert {"profiler_overhead", "layer_sum_ms", "unattributed_ms", "stages", "blocks"} <= set(data["rows"][0])
    assert {p.name for p in out.iterdir()} == {"profile.json", "profile.md", "profile-stages.png"}
    bad = cli_run(*args, "--batch", "0")
    assert bad.exit_code == 2 and "--batch" in bad.stderr
