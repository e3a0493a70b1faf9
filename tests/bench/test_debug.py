"""rbench debug precision on models with one planted faulty layer: it is named first, and --fix keeps exactly it."""

import json

import numpy as np
import onnx
import pytest
from conftest import cli_run
from safetensors.torch import save_file

from rbench.bench.debug import bound_ratio, debug_precision, layer_figures, parse_bound
from rbench.bench.parity import compare, export_artifact
from rbench.errors import BadInputError
from rbench.export.artifact import Artifact
from rbench.models import ModelConfig, create_model
from rbench.precisions import get_precision

BLOCKS = [f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3)]


def planted_weights(tmp_path, seed: int, scale: float) -> tuple[str, str]:
    """resnet20 whose block conv1 (chosen by the seed) outputs one channel ``scale`` times too large, which conv2
    ignores (zero weights), so FP32 is unchanged by the scale and only the reduced graph sees the outlier: one
    activation range stretched over every channel (INT8), or values FP16 cannot hold. Returns the weights file and
    the culprit module."""
    rng = np.random.default_rng(seed)
    block = BLOCKS[rng.integers(len(BLOCKS))]
    model = create_model("resnet20", weights="random", seed=seed).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    channel = int(rng.integers(state[f"{block}.bn1.weight"].numel()))
    state[f"{block}.bn1.weight"][channel] *= scale
    state[f"{block}.bn1.bias"][channel] *= scale
    state[f"{block}.conv2.weight"][:, channel] = 0
    weights = tmp_path / f"planted-{seed}.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    return str(weights), f"{block}.conv1"


def planted(tmp_path, seed: int, scale: float, export=export_artifact, **kwargs) -> tuple[Artifact, str]:
    """The planted resnet20 (``planted_weights``) exported, by default as quantized (no accuracy control)."""
    weights, culprit = planted_weights(tmp_path, seed, scale)
    precisions = kwargs.pop("precisions", ("fp32", "fp16", "int8"))
    result = export(ModelConfig("resnet20", weights=weights), out=tmp_path / "a", precisions=precisions, **kwargs)
    return Artifact.open(result.path), culprit


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_int8_outlier_layer_is_named_first_and_fix_keeps_exactly_it(tmp_path, seed):
    artifact, culprit = planted(tmp_path, seed, scale=100.0)
    report = debug_precision(artifact, "int8", bound="imagenet", fix=True)
    assert not report.passed  # the planted outlier breaks the INT8 graph's bound
    assert report.first == culprit and report.ranked[0] in (culprit, culprit.replace("conv1", "conv2"))
    assert report.fix["kept"] == [culprit] and report.fix["met"]
    entry = Artifact.open(artifact.path).manifest["precisions"]["int8-mixed"]
    assert entry["settings"]["kept"] == [culprit] and entry["parity"]["ort"]["passed"]
    mixed = onnx.load(str(artifact.path / entry["file"]))
    conv = next(
        n for n in mixed.graph.node if n.name == f"/{culprit.split('.')[0]}/{culprit.rsplit('.', 1)[0]}/conv1/Conv"
    )
    producers = {o: n.op_type for n in mixed.graph.node for o in n.output}
    assert producers.get(conv.input[0]) != "DequantizeLinear"  # reads exact input, FP32 weights
    assert conv.input[1].startswith("fp32/")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fp16_overflowing_layer_is_named_first_and_fix_keeps_exactly_it(tmp_path, seed):
    artifact, culprit = planted(tmp_path, seed, scale=1e6)  # its activations pass 65504
    report = debug_precision(artifact, "fp16", fix=True)
    assert not report.passed
    assert report.first == culprit
    culprit_row = next(x for x in report.layers if x.module == culprit)
    assert np.isnan(culprit_row.own_cosine)  # FP16 cannot hold its output
    assert report.fix["kept"] == [culprit] and report.fix["met"]
    assert Artifact.open(artifact.path).manifest["precisions"]["fp16-mixed"]["parity"]["ort"]["passed"]


def test_debug_cli_json_names_kept_layers_and_exit_codes(tmp_path):
    artifact, culprit = planted(tmp_path, 3, scale=100.0)
    args = ("debug", "precision", str(artifact.path), "--precision", "int8", "--bound", "imagenet", "--fix", "--json")
    result = cli_run(*args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kept"] == [culprit] and data["first"] == culprit
    assert data["fix"]["file"] == "model.int8-mixed.onnx" and data["fix"]["speed"]["fixed_ms"] > 0
    assert {"module", "cosine", "sqnr_db", "own_sqnr_db", "inherited_db"} <= set(data["layers"][0])
    bad = cli_run("debug", "precision", str(artifact.path), "--precision", "int8", "--bound", "cosine=2")
    assert bad.exit_code == 2 and "(0, 1]" in bad.stderr
    missing = cli_run("debug", "precision", str(artifact.path), "--precision", "int8-u8s8")
    assert missing.exit_code == 2 and "no int8-u8s8 model" in missing.stderr


def test_bound_parsing_and_ratio():
    base = get_precision("int8").bounds("cifar")
    assert parse_bound("imagenet", base, get_precision("int8").tolerance).min_cosine == 0.99
    assert parse_bound("cosine=0.995,top1=1", base).min_cosine == 0.995
    with pytest.raises(BadInputError, match="unknown bound"):
        parse_bound("snr=3", base)
    ref = np.eye(4, dtype=np.float32) * 10
    stats = compare(ref, ref + 0.1)
    assert bound_ratio(stats, base) < 1 < bound_ratio(stats, parse_bound("cosine=0.99999", base))
    cos, sqnr, max_rel = layer_figures(ref, ref * 1.01)
    assert (
        cos == pytest.approx(1.0, abs=1e-6)
        and sqnr == pytest.approx(40.0, abs=0.01)
        and max_rel == pytest.approx(0.01, rel=1e-4)
    )
    assert np.isnan(layer_figures(ref, ref * np.inf)[0])


@pytest.mark.parametrize("precision", ["int8", "int8-u8s8"])
def test_keep_fp32_on_every_layer_recovers_fp32(resnet20_all, precision):
    from rbench.export.mixed import keep_fp32, layers

    fp32 = onnx.load(str(resnet20_all.path / "model.onnx"))
    int8 = onnx.load(str(resnet20_all.path / get_precision(precision).file))
    if precision == "int8-u8s8":  # its quantizer absorbed ReLUs into uint8 QuantizeLinear: put back when kept
        assert sum(n.op_type == "Relu" for n in int8.graph.node) < sum(n.op_type == "Relu" for n in fp32.graph.node)
    import onnxruntime as ort

    x = {"input": np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)}
    ref = ort.InferenceSession(fp32.SerializeToString()).run(None, x)[0]
    full = keep_fp32(int8, fp32, layers(fp32))
    out = ort.InferenceSession(full.SerializeToString()).run(None, x)[0]
    onnx.checker.check_model(full)
    quantized = sum(n.op_type == "QuantizeLinear" for n in full.graph.node)
    assert (
        quantized < sum(n.op_type == "QuantizeLinear" for n in int8.graph.node) / 4
    )  # what is left: the shortcut path
    assert layer_figures(ref, out)[1] > 40  # dB


def test_export_accuracy_control_keeps_the_planted_layer_on_every_backend_and_runs_say_so(tmp_path):
    """rbench export (as rbench run and rbench.export_artifact too) holds each INT8 graph to its family's bounds on
    every CPU backend here: a planted outlier that breaks both is kept in FP32, alone, in the portable graph and in
    U8S8; the JSON summary, the manifest and a run's rows say so."""
    from conftest import QUICK_RUN

    from rbench.bench.debug import accuracy_control, cpu_backends
    from rbench.export.precision import check_qdq_symmetric

    weights, culprit = planted_weights(tmp_path, 3, 1000.0)
    args = ("export", "--model", "resnet20", "--weights", weights, "--precision", "int8,int8-u8s8", "--json")
    result = cli_run(*args, "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    artifact = Artifact.open(summary["artifact"])
    for precision in ("int8", "int8-u8s8"):
        assert summary["precisions"][precision]["kept_fp32"] == [culprit]
        entry = artifact.manifest["precisions"][precision]
        record = entry["accuracy"]
        assert sorted(record["backends"]) == sorted(cpu_backends(precision)) and "ort" in record["backends"]
        assert record["missed"] == list(record["backends"]) and record["kept"] == [culprit] and record["met"]
        assert all(f["cosine"] < 0.5 for f in record["backends"].values())  # the graph as quantized
        bound = get_precision(precision).bounds("cifar").min_cosine
        assert all(f["cosine"] >= bound for f in record["after"].values())
        assert entry["parity"]["passed"] and entry["settings"]["keep_first_conv"]
    check_qdq_symmetric(onnx.load(str(artifact.path / "model.int8.onnx")))  # still TensorRT's: zero-points 0
    assert accuracy_control(artifact, "int8") is None  # checked on this kind of CPU already: not again
    out = tmp_path / "results"
    run = ("run", "--artifact", artifact.path, "--out", out, *QUICK_RUN, "--no-peak", "--backends", "ort")
    result = cli_run(*run, "--precision", "int8", "--batch-sizes", "1")
    assert result.exit_code == 0, result.output
    rows = {r["label"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["ort cpu int8"]["executed"].endswith(f"; {culprit} fp32 (accuracy control at export)")
    assert "accuracy control" not in rows["torch eager fp32"]["executed"]


def test_export_without_accuracy_control_ships_the_graph_as_quantized(tmp_path):
    weights, _ = planted_weights(tmp_path, 3, 1000.0)
    args = ("export", "--model", "resnet20", "--weights", weights, "--precision", "int8", "--out", tmp_path / "a")
    result = cli_run(*args, "--no-accuracy-control")
    assert result.exit_code == 1 and "parity FAILED: int8 photos/logits" in result.stderr
    assert "int8 photos/logits: cosine -0.0" in result.stderr
    entry = Artifact.open(result.stdout.strip().splitlines()[-1]).manifest["precisions"]["int8"]
    assert "accuracy" not in entry and not entry["parity"]["passed"]
    refused = cli_run("export", "--model", "resnet20", "--no-accuracy-control", "--out", tmp_path / "b")
    assert refused.exit_code == 2 and "--accuracy-control applies to INT8 only" in refused.stderr


def test_export_accuracy_control_that_cannot_meet_the_bounds_ships_the_graph_as_quantized(tmp_path, monkeypatch):
    import rbench.bench.debug as debug
    from rbench.bench.exporting import export_artifact as controlled

    monkeypatch.setattr(debug, "CONTROL_MAX_KEPT", 0)  # no layer may be kept: the planted fault stays
    artifact, _ = planted(tmp_path, 3, 1000.0, controlled, precisions=("fp32", "int8"))
    entry = artifact.manifest["precisions"]["int8"]
    assert entry["accuracy"]["met"] is False and entry["accuracy"]["kept"] == [] and not entry["parity"]["passed"]
    model = onnx.load(str(artifact.path / entry["file"]))
    assert not any(i.name.startswith("fp32/") for i in model.graph.initializer)  # as its quantizer made it
