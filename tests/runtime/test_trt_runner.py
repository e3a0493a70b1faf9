"""The TensorRT runner refuses every engine it cannot trust before TensorRT deserializes it, with the documented exit
codes and one line; the engines here are built through the fake ``tensorrt`` module."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rbench.cli import app
from rbench.errors import ArtifactError, BadInputError
from rbench.export.artifact import Artifact
from rbench.export.engine import BuildConfig, build_engine
from rbench.runtime import TrtRunner
from rbench.runtime.trt_common import installed_tensorrt

cli = CliRunner()
HOPPER = "TensorRT 11.4.0.106 on NVIDIA H100 80GB HBM3 (compute capability 9.0)"


def run(*args) -> object:
    return cli.invoke(app, [str(a) for a in args])


@pytest.fixture
def built(fake_gpu, resnet20_artifact, copy_artifact, tmp_path) -> Path:
    """An artifact directory with an fp32 engine and its sidecar, as rbench build writes them."""
    path = copy_artifact(resnet20_artifact)
    build_engine(Artifact.open(path), BuildConfig(precision="fp32", max_batch=16, timing_cache_dir=tmp_path / "t"))
    return path


def _engine(path: Path) -> Path:
    return path / "engines" / "model.fp32.engine"


def _edit_sidecar(path: Path, **platform: str) -> None:
    sidecar_file = Path(f"{_engine(path)}.json")
    sidecar = json.loads(sidecar_file.read_text())
    sidecar["platform"].update(platform)
    sidecar_file.write_text(json.dumps(sidecar))


def _refused(path: Path, code: int, message: str) -> None:
    result = run("parity", path, "--backend", "trt", "--precision", "fp32")
    assert result.exit_code == code, result.output
    assert message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_a_tampered_engine_is_refused_with_exit_3(built):
    _engine(built).write_bytes(_engine(built).read_bytes()[:-1] + b"!")
    _refused(built, 3, "rebuild required: model.fp32.engine in ")


def test_an_engine_from_another_tensorrt_version_is_refused_with_exit_3(built):
    _edit_sidecar(built, tensorrt="10.13.0.35")
    _refused(
        built,
        3,
        "rebuild required: built for TensorRT 10.13.0.35 on NVIDIA H100 80GB HBM3 (compute capability 9.0), "
        f"running on {HOPPER}",
    )


def test_a_foreign_version_is_refused_even_where_tensorrt_cannot_load(built, monkeypatch):
    _edit_sidecar(built, tensorrt="10.13.0.35")
    monkeypatch.undo()  # no importable tensorrt, no GPU: only the installed package's metadata says 11.4
    monkeypatch.setattr("rbench.runtime.trt_runner.installed_tensorrt", lambda: "11.4.0.106")
    _refused(
        built,
        3,
        "rebuild required: built for TensorRT 10.13.0.35 on NVIDIA H100 80GB HBM3 (compute capability 9.0), "
        "running on TensorRT 11.4.0.106",
    )


def test_an_engine_for_another_gpu_architecture_is_refused_with_exit_3(built):
    _edit_sidecar(built, gpu="NVIDIA A100-SXM4-80GB", compute_capability="8.0")
    _refused(
        built,
        3,
        f"built for TensorRT 11.4.0.106 on NVIDIA A100-SXM4-80GB (compute capability 8.0), running on {HOPPER}",
    )


def test_an_engine_built_from_another_onnx_is_refused_with_exit_3(built):
    sidecar_file = Path(f"{_engine(built)}.json")
    sidecar = json.loads(sidecar_file.read_text())
    sidecar["source"]["sha256"] = "ab" * 32
    sidecar_file.write_text(json.dumps(sidecar))
    _refused(built, 3, "rebuild required: model.fp32.engine was built from an ONNX with sha256 abababababab…")


def test_an_engine_without_its_sidecar_is_refused_with_exit_3(built):
    Path(f"{_engine(built)}.json").unlink()
    _refused(built, 3, "has no sidecar model.fp32.engine.json; what it was built for is unknown")


def test_a_corrupt_sidecar_is_bad_input(built):
    Path(f"{_engine(built)}.json").write_text("{not json")
    _refused(built, 2, "corrupt engine sidecar")


def test_a_missing_engine_says_how_to_build_it(resnet20_artifact, tmp_path):
    path = resnet20_artifact.path
    _refused(path, 2, f"{path} has no fp32 TensorRT engine; build it with: rbench build {path} --precision fp32")
    with pytest.raises(BadInputError, match=r"engine not found: .*nowhere.engine \(build it with: rbench build"):
        TrtRunner(tmp_path / "nowhere.engine").activate()


def test_a_null_engine_is_refused_not_used(built, fake_gpu):
    fake_gpu._state["deserialize_ok"] = False
    with pytest.raises(ArtifactError, match=r"rebuild required: TensorRT could not deserialize .*model.fp32.engine"):
        TrtRunner(_engine(built), precision="fp32").activate()


def test_a_batch_outside_the_profile_is_refused_before_tensorrt_sees_it(built):
    """Through ``TrtRunner.infer``: the refusal comes from the sidecar's profile, before any TensorRT call."""
    calls: list[tuple] = []

    class Recorder:  # stands in for the execution context and device memory of an activated runner
        def set_input_shape(self, name, shape):
            calls.append(("set_input_shape", name, shape))
            raise RuntimeError("stop here: TensorRT was reached")

    class Recording(TrtRunner):
        def _activate(self) -> None:
            self.sidecar = self.check()  # the real checks that run before deserializing
            self._context, self._memory = Recorder(), Recorder()

        def _deactivate(self) -> None:
            self._context = self._memory = None

    runner = Recording(_engine(built), precision="fp32")
    with runner:
        specs = runner.input_specs()  # from the sidecar
        assert specs[0].batch_range == (1, 16) and specs[0].shape == ("batch", 3, 32, 32)
        with pytest.raises(
            BadInputError,
            match=r"input 'input' has batch size 17, outside the engine's optimization profile \[1, 16\]; split",
        ):
            runner.infer({"input": np.zeros((17, 3, 32, 32), np.float32)})
        assert calls == []
        with pytest.raises(RuntimeError, match="TensorRT was reached"):
            runner.infer({"input": np.zeros((16, 3, 32, 32), np.float32)})
        assert calls == [("set_input_shape", "input", (16, 3, 32, 32))]


def test_a_trusted_engine_without_a_gpu_is_an_environment_problem(built, monkeypatch):
    monkeypatch.undo()  # the real machine again: no TensorRT, no GPU
    if importlib.util.find_spec("tensorrt") is not None or installed_tensorrt() is not None:
        pytest.skip("tensorrt is installed here")
    _refused(built, 4, "tensorrt is not installed: pip install 'rbench[gpu]'")


def test_no_cuda_device_is_a_clear_environment_problem(fake_trt, resnet20_artifact):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run("build", resnet20_artifact.path, "--precision", "fp32")
    assert result.exit_code == 4, result.output
    assert result.stderr == "error: no CUDA device: torch sees none (an NVIDIA GPU and its driver are needed)\n"


def test_build_without_tensorrt_names_the_extra(resnet20_artifact):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    result = run("build", resnet20_artifact.path, "--precision", "fp32")
    assert result.exit_code == 4, result.output
    assert result.stderr == "error: tensorrt is not installed: pip install 'rbench[gpu]'\n"


def test_build_cli_builds_then_reuses(fake_gpu, resnet20_artifact, copy_artifact, tmp_path):
    path = copy_artifact(resnet20_artifact)
    args = ("build", path, "--precision", "fp32", "--max-batch", "16", "--timing-cache-dir", tmp_path / "t")
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines()[-1] == str(_engine(path))
    assert "built in" in first.stdout and "1 / 8 / 16" in first.stdout and "sm 9.0" in first.stdout
    second = run(*args)
    assert second.exit_code == 0 and "reused: its key is unchanged" in second.stdout
    assert fake_gpu._state["builds"] == 1
    as_json = json.loads(run(*args, "--json").stdout)
    assert (
        as_json["cached"] is True
        and as_json["engine_sha256"] == json.loads(Path(f"{_engine(path)}.json").read_text())["engine_sha256"]
    )


def test_build_cli_bad_profile_exits_2(resnet20_artifact):
    result = run("build", resnet20_artifact.path, "--min-batch", "8", "--max-batch", "4")
    assert result.exit_code == 2
    assert result.stderr == "error: the batch profile needs 1 <= min <= opt <= max, got min 8, opt 8, max 4\n"


def test_an_unknown_device_memory_kind_is_bad_input():
    from rbench.runtime.cuda_memory import device_memory

    with pytest.raises(BadInputError, match="unknown device memory 'cupy'; choose from auto, torch, pycuda"):
        device_memory("cupy")


def test_tensorrt_layer_times_are_summed_and_read_as_the_onnx_nodes_they_cover(fake_trt, resnet20_artifact):
    """The IProfiler through the stand-in: TensorRT reports each layer after every call; a fused layer lists every
    node (and so module) it covers, and a reformatting layer none."""
    import onnx

    from rbench.bench.profile import Names
    from rbench.runtime.trt_runner import layer_times, trt_layer_events

    times = layer_times(fake_trt)
    assert isinstance(times, fake_trt.IProfiler)
    fused = "/layer1/layer1.0/conv1/Conv + /layer1/layer1.0/relu/Relu"
    reformat = "Reformatting CopyNode for Input Tensor 0 to /conv1/Conv"
    for _ in range(2):
        times.report_layer_time(fused, 0.25)
        times.report_layer_time(reformat, 0.5)
    events = trt_layer_events(times.totals)
    assert [(e.kind, e.total_ms, e.covers) for e in events] == [
        ("layer", 0.5, ("/layer1/layer1.0/conv1/Conv", "/layer1/layer1.0/relu/Relu")),
        ("Reformat", 1.0, ()),
    ]
    region = trt_layer_events({"{ForeignNode[/layer2/layer2.0/conv1/Conv.../layer3/layer3.2/Add]}": 2.0})[0]
    assert region.kind == "Myelin region" and region.covers == ("/layer2/layer2.0/conv1/Conv", "/layer3/layer3.2/Add")
    fp32 = onnx.load(str(resnet20_artifact.path / "model.onnx"))
    from rbench.export.artifact import Artifact

    modules = set(dict(Artifact.open(resnet20_artifact.path).reference_model().named_modules()))
    covered, macs = Names(fp32, modules, 1).covered(events[0].name, events[0].kind, events[0].covers)
    assert covered == ("layer1.0.conv1", "layer1.0.relu") and macs == 16 * 16 * 3 * 3 * 32 * 32
