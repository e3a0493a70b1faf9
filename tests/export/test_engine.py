"""The TensorRT builder on a CPU, driven through the fake ``tensorrt`` module: what it asks TensorRT for, what it
writes, when it rebuilds, and how it fails. The real build runs in ``tests/runtime/test_gpu_backends.py``."""

from __future__ import annotations

import json

import pytest

from rbench._io import sha256_file
from rbench.bench.parity import export_artifact
from rbench.errors import ArtifactError, BadInputError, EnvironmentProblem
from rbench.export.artifact import Artifact
from rbench.export.engine import BuildConfig, build_engine
from rbench.export.onnx_export import ExportConfig
from rbench.export.pipeline import ModelConfig


@pytest.fixture
def artifact(resnet20_artifact, copy_artifact):
    return Artifact.open(copy_artifact(resnet20_artifact))


def _config(tmp_path, **kw) -> BuildConfig:
    return BuildConfig(precision="fp32", timing_cache_dir=tmp_path / "timing", **kw)


def test_build_asks_for_a_strongly_typed_network_with_the_profile_and_settings(fake_gpu, artifact, tmp_path):
    result = build_engine(artifact, _config(tmp_path, workspace_mib=512, optimization_level=5), warn=pytest.fail)
    network, config = fake_gpu._state["last"]
    assert network._flags == 1 << 5  # 1 << STRONGLY_TYPED, whatever the enum's value is
    assert network._source == str(artifact.path / "model.onnx")
    assert config._pools == {fake_gpu.MemoryPoolType.WORKSPACE: 512 << 20}
    assert config.builder_optimization_level == 5
    assert config._profiles[0]._shapes == {"input": ((1, 3, 32, 32), (8, 3, 32, 32), (32, 3, 32, 32))}
    assert config._ignore_mismatch is False
    assert config._flags == set()  # TF32 off: an FP32 engine computes in FP32
    assert not result.cached and result.engine == artifact.path / "engines" / "model.fp32.engine"


def test_sidecar_records_platform_source_settings_and_engine_digest(fake_gpu, artifact, tmp_path):
    result = build_engine(artifact, _config(tmp_path, max_batch=16))
    sidecar = json.loads((artifact.path / "engines" / "model.fp32.engine.json").read_text())
    assert sidecar == result.sidecar
    assert sidecar["platform"] == {
        "tensorrt": "11.4.0.106",
        "gpu": "NVIDIA H100 80GB HBM3",
        "compute_capability": "9.0",
        "cuda": "13.0",
        "driver": "unknown",
    }
    assert sidecar["source"]["sha256"] == sha256_file(artifact.path / "model.onnx")
    assert sidecar["settings"] == {
        "precision": "fp32",
        "min_batch": 1,
        "opt_batch": 8,
        "max_batch": 16,
        "workspace_mib": 4096,
        "optimization_level": 3,
        "tf32": False,
    }
    assert sidecar["inputs"] == [
        {"name": "input", "dtype": "float32", "shape": [8, 3, 32, 32], "min_batch": 1, "max_batch": 16}
    ]
    assert sidecar["engine_sha256"] == sha256_file(result.engine)
    assert sorted(p.name for p in result.engine.parent.iterdir()) == ["model.fp32.engine", "model.fp32.engine.json"]


def test_second_build_hits_the_cache_and_a_changed_key_rebuilds(fake_gpu, artifact, tmp_path):
    first = build_engine(artifact, _config(tmp_path))
    assert build_engine(artifact, _config(tmp_path)).cached
    assert fake_gpu._state["builds"] == 1
    assert not build_engine(artifact, _config(tmp_path, max_batch=64)).cached  # settings are part of the key
    assert not build_engine(artifact, _config(tmp_path, max_batch=64, force=True)).cached
    first.engine.write_bytes(first.engine.read_bytes() + b"x")  # a damaged cached engine is rebuilt, not reused
    assert not build_engine(artifact, _config(tmp_path, max_batch=64)).cached
    assert fake_gpu._state["builds"] == 4


def test_another_gpu_architecture_rebuilds_and_gets_its_own_timing_cache(fake_gpu, artifact, tmp_path, monkeypatch):
    hopper = build_engine(artifact, _config(tmp_path))
    monkeypatch.setattr("rbench.runtime.trt_common.cuda_device", lambda: ("NVIDIA A100", "8.0", "13.0"))
    ampere = build_engine(artifact, _config(tmp_path))
    assert not ampere.cached and ampere.sidecar["platform"]["compute_capability"] == "8.0"
    assert hopper.timing_cache.name == "timing-trt11.4.0.106-sm90.cache"
    assert ampere.timing_cache.name == "timing-trt11.4.0.106-sm80.cache"
    assert hopper.timing_cache.read_bytes() == ampere.timing_cache.read_bytes() == b"timing:+"  # never merged


def test_timing_cache_is_reused_and_a_corrupt_one_is_replaced_with_a_warning(fake_gpu, artifact, tmp_path):
    first = build_engine(artifact, _config(tmp_path))
    build_engine(artifact, _config(tmp_path, force=True))
    assert fake_gpu._state["last"][1]._timing_loaded == b"timing:+"
    first.timing_cache.write_bytes(b"\x00garbage")
    warnings: list[str] = []
    result = build_engine(artifact, _config(tmp_path, force=True), warn=warnings.append)
    assert warnings == [f"timing cache {first.timing_cache} is corrupt or unreadable; starting a new one"]
    assert result.notes == warnings
    assert first.timing_cache.read_bytes() == b"timing:+"


def test_parser_errors_are_an_incompatible_artifact(fake_gpu, artifact, tmp_path):
    fake_gpu._state["parse_ok"] = False
    with pytest.raises(ArtifactError, match=r"TensorRT 11.4.0.106 cannot parse model.onnx: node Conv_0: unsupported"):
        build_engine(artifact, _config(tmp_path))
    assert not (artifact.path / "engines").exists()


def test_a_failed_build_reports_the_last_error_and_writes_nothing(fake_gpu, artifact, tmp_path):
    fake_gpu._state["plan_ok"] = False
    with pytest.raises(EnvironmentProblem, match=r"TensorRT failed to build model.onnx: out of memory while building"):
        build_engine(artifact, _config(tmp_path))
    assert not (artifact.path / "engines").exists() and not (tmp_path / "timing").exists()


def test_progress_reaches_the_callback(fake_gpu, artifact, tmp_path):
    seen: list[tuple] = []

    class Progress:
        def phase_start(self, name, parent, steps):
            seen.append(("start", name, parent, steps))

        def step(self, name, step):
            seen.append(("step", name, step))

        def phase_finish(self, name):
            seen.append(("finish", name))

    build_engine(artifact, _config(tmp_path), progress=Progress())
    assert seen == [
        ("start", "Building engine", None, 2),
        ("step", "Building engine", 0),
        ("step", "Building engine", 1),
        ("finish", "Building engine"),
    ]


def test_a_static_batch_artifact_gets_a_fixed_profile(fake_gpu, tmp_path):
    result = export_artifact(ModelConfig("resnet20"), ExportConfig(dynamic_batch=False), out=tmp_path / "a")
    built = build_engine(Artifact.open(result.path), _config(tmp_path))
    assert (built.sidecar["settings"]["min_batch"], built.sidecar["settings"]["max_batch"]) == (1, 1)
    assert fake_gpu._state["last"][1]._profiles[0]._shapes["input"] == ((1, 3, 32, 32),) * 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_batch": 8, "opt_batch": 4}, r"1 <= min <= opt <= max, got min 8, opt 4, max 32"),
        ({"min_batch": 0}, r"got min 0"),
        ({"optimization_level": 6}, r"optimization level must be 0..5, got 6"),
        ({"workspace_mib": 0}, r"workspace must be at least 1 MiB"),
    ],
)
def test_bad_settings_are_bad_input(kwargs, message):
    with pytest.raises(BadInputError, match=message):
        BuildConfig(**kwargs)


def test_the_builder_is_part_of_the_top_level_api():
    import rbench

    assert rbench.build_engine is build_engine and rbench.BuildConfig is BuildConfig


def test_unknown_precision_is_bad_input_before_tensorrt_is_needed(artifact, tmp_path):
    with pytest.raises(BadInputError, match=r"has no fp16 model \(it has fp32\)"):
        build_engine(artifact, BuildConfig(precision="fp16", timing_cache_dir=tmp_path))
