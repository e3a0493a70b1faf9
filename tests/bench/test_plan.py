"""Which rows run and why the others do not; recompile detection; the execution precision each row records."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rbench.bench.plan import plan_rows
from rbench.bench.run import _recompiled_during_timing
from rbench.export.artifact import Artifact
from rbench.runtime import CompiledTorchRunner


def _plans(artifact, backends, precisions, device="cpu"):
    return {p.label: p for p in plan_rows(Artifact.open(artifact.path), backends, precisions, device, 2)}


def test_the_eager_fp32_baseline_always_comes_first(resnet20_all):
    plans = list(_plans(resnet20_all, ["ort"], ["int8"]).values())
    assert plans[0].label == "torch eager fp32" and plans[0].baseline and not any(p.baseline for p in plans[1:])


def test_skip_reasons(resnet20_all, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    for where in ("rbench.runtime.torch_runner.cpu_flags", "rbench.env.cpu_flags"):
        monkeypatch.setattr(where, lambda: {"avx2", "avx512f"})  # no native FP16 or bf16
    plans = _plans(resnet20_all, ["torch", "ort", "openvino", "trt"], ["fp16", "bf16", "int8"])
    assert plans["openvino cpu bf16"].skip == "openvino is not installed: pip install 'rbench[openvino]'"
    assert plans["ort cpu bf16"].skip == (
        "ONNX Runtime's CPU provider has no bf16 execution setting; bf16 runs on torch, torch-compile, openvino"
    )
    assert plans["torch folded channels_last int8"].skip == (
        "no INT8 path in eager PyTorch here (torch-compile has PT2E); int8 runs on torch-compile, ort, openvino, "
        "ort-cuda, ort-trt, trt"
    )
    assert plans["trt fp16"].skip.startswith("no CUDA device here")
    assert plans["torch folded channels_last fp16"].skip == "no native FP16 on this CPU"
    assert plans["torch folded channels_last bf16"].skip == (
        "no native bf16 on this CPU (torch would emulate it, 5-10x slower than FP32)"
    )
    assert plans["ort cpu fp16"].file == "model.fp16.onnx"
    for where in ("rbench.runtime.torch_runner.cpu_flags", "rbench.env.cpu_flags"):
        monkeypatch.setattr(where, lambda: {"avx512f", "avx512_fp16", "avx512_bf16"})
    native = _plans(resnet20_all, ["torch"], ["fp16", "bf16"])
    assert [native[f"torch folded channels_last {p}"].skip for p in ("fp16", "bf16")] == [None, None]


def test_openvino_bf16_runs_only_on_a_cpu_with_native_bf16(resnet20_all, monkeypatch):
    monkeypatch.setattr("rbench.env.cpu_flags", lambda: {"avx2", "fma"})  # AMD Zen 3: the plugin would run f32
    assert _plans(resnet20_all, ["openvino"], ["bf16"])["openvino cpu bf16"].skip == (
        "no native bf16 on this CPU (OpenVINO's bf16 hint would run f32: the fp32 row)"
    )
    monkeypatch.setattr("rbench.env.cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    plan = _plans(resnet20_all, ["openvino"], ["bf16"])["openvino cpu bf16"]
    assert plan.skip is None and plan.file == "model.onnx"


def test_an_unknown_backend_is_refused_never_another_backend(resnet20_all):
    from rbench.errors import BadInputError

    with pytest.raises(BadInputError, match="unknown backend 'ort-openvino'; choose from torch, torch-compile, ort,"):
        _plans(resnet20_all, ["ort", "ort-openvino"], ["fp32"])


def test_recompilation_beyond_the_planned_shapes_is_detected():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    x = {n: {"input": np.ones((n, 3, 8, 8), np.float32)} for n in (1, 2, 3)}
    with CompiledTorchRunner(model, (3, 8, 8)) as runner:
        before = runner.compiles()
        runner.infer(x[1])
        runner.infer(x[2])
        runner.infer(x[1])  # a shape already compiled: no new compilation
        assert runner.compiles() - before == 2
        assert not _recompiled_during_timing(runner.compiles, before, shapes=2)
        runner.infer(x[3])  # a shape the sweep did not plan: a recompilation while timing
        assert _recompiled_during_timing(runner.compiles, before, shapes=2)
        out = runner.infer(x[2])["logits"]
    np.testing.assert_allclose(out, model(torch.ones(2, 3, 8, 8)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_what_executed_is_read_from_the_runner_and_decides_the_peak(resnet20_all):
    """OpenVINO's compiled graph says what its convolutions run in (a silent bf16 shows); torch autocast and an
    FP16 graph on ONNX Runtime's CPU provider say theirs; the executed precision picks the peak."""
    from rbench.bench.peak import Probe
    from rbench.bench.results import Efficiency
    from rbench.runtime import OpenVinoRunner, OrtRunner, TorchRunner
    from rbench.runtime.openvino_runner import saturation_note

    found = []
    for convolutions in ({"f32": 19}, {"bf16": 19}, {"u8": 18, "f32": 1}):
        runner = OpenVinoRunner(resnet20_all.path / "model.onnx", "fp32")
        runner.executed_convolutions = convolutions
        found.append(runner.executed())
    found.append(TorchRunner(torch.nn.Identity(), (3, 4, 4), precision="bf16").executed())
    found.append(OrtRunner(resnet20_all.path / "model.fp16.onnx", precision="fp16").executed())
    assert [(e.precision, e.detail) for e in found] == [
        ("fp32", "conv f32 x19"),
        ("bf16", "conv bf16 x19"),
        ("int8", "conv u8 x18, f32 x1" + saturation_note()),
        ("bf16", "bf16 autocast (conv, matmul), rest fp32"),
        ("fp32", "fp16"),
    ]
    peaks = {"fp32": Probe("numpy", "fp32", 100.0), "bf16": Probe("torch", "bf16", 400.0)}
    shares = [Efficiency.of(10.0, 10**9, e.precision, peaks).share_of_peak for e in found]
    assert shares == [0.2, 0.05, None, 0.05, 0.2]  # 20 GFLOP/s against each executed precision's peak


def test_run_completes_an_artifact_without_touching_what_it_has(tmp_path):
    """--artifact with a missing precision: only that one is made; the others keep their files and settings."""
    from rbench._io import sha256_file
    from rbench.bench.parity import export_artifact
    from rbench.bench.run import prepare_artifact
    from rbench.export.precision import Fp16Config
    from rbench.models import ModelConfig

    names = tuple(f"class{i}" for i in range(10))
    first = export_artifact(
        ModelConfig("resnet20", class_names=names),
        out=tmp_path,
        precisions=("fp16",),
        settings={"fp16": Fp16Config(False)},
    )
    fp16 = sha256_file(first.path / "model.fp16.onnx")
    done = prepare_artifact(None, first.path, ["int8", "bf16"], tmp_path)
    assert done.path == first.path and done.precisions == ["fp32", "fp16", "int8"]
    assert sha256_file(done.path / "model.fp16.onnx") == fp16
    assert done.manifest["precisions"]["fp16"]["settings"]["keep_io_types"] is False
    assert done.class_names == list(names)
    assert prepare_artifact(None, done.path, ["fp16"], tmp_path).manifest == done.manifest


def test_an_int8_openvino_row_says_when_the_cpu_lacks_vnni(monkeypatch):
    from rbench.runtime.openvino_runner import saturation_note

    monkeypatch.setattr("rbench.env.cpu_flags", lambda: {"avx2", "fma"})
    assert saturation_note() == " (CPU without VNNI: 8-bit dot products can saturate)"
    monkeypatch.setattr("rbench.env.cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    assert saturation_note() == ""
