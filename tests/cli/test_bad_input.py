"""Every bad input: exit 2, one line on stderr, no traceback, nothing on stdout, nothing written, before heavy work."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_exit_2 as _assert_one_line_exit_2
from conftest import cli_run as run

EXPORT_CASES = {
    "num-classes -1": (["--num-classes", "-1"], "--num-classes must be 1 or more, got -1"),
    "num-classes 0": (["--num-classes", "0"], "--num-classes must be 1 or more, got 0"),
    "seed -1": (["--seed", "-1"], "--seed must be 0 or more, got -1"),
    "shortcut C": (["--shortcut", "C"], "--shortcut 'C' is not valid; choose from A, B"),
    "shortcut on ImageNet": (["--model", "resnet18", "--shortcut", "B"], "--shortcut does not apply to resnet18"),
    "opset 99": (["--opset", "99"], "--opset 99 is not supported; choose 13 to 20"),
    "opset 5": (["--opset", "5"], "--opset 5 is not supported; choose 13 to 20"),
    "opset 0": (["--opset", "0"], "--opset 0 is not supported"),
    "io without fp16": (["--io", "fp16"], "--io applies to the FP16 model only; add fp16 to --precision"),
    "calibration without int8": (["--calib-method", "minmax"], "--calib-method applies to INT8 only"),
    "calib samples 0": (["--precision", "int8", "--calib-samples", "0"], "--calib-samples must be between 1"),
    "calib samples -5": (["--precision", "int8", "--calib-samples", "-5"], "--calib-samples must be between 1"),
    "calibration file": (["--precision", "int8", "--calibration", "{file}"], "needs a folder of images"),
    "calibration missing": (["--precision", "int8", "--calibration", "{tmp}/nope"], "folder not found"),
    "calibration empty": (["--precision", "int8", "--calibration", "{empty}"], "no images"),
    "unknown precision": (["--precision", "fp8"], "unknown precision 'fp8'"),
    "bf16 is not a file": (["--precision", "bf16"], "unknown precision 'bf16'; choose from fp32, fp16, int8"),
    "empty precision": (["--precision", ","], "unknown precision"),
    "bad enum": (["--calib-method", "median"], "'median' is not one of"),
    "not a number": (["--seed", "abc"], "Invalid value for '--seed'"),
    "unknown option": (["--bogus"], "No such option: --bogus"),
    "out is a file": (["--out", "{file}"], "is a file; it must be a folder"),
    "out under a file": (["--out", "{file}/sub"], "is a file, so no folder can be made there"),
    "out unwritable": (["--out", "/proc/rbench-out"], "--out /proc/rbench-out: cannot write in /proc"),
    "random bytes .pt": (["--weights", "{random_pt}"], "corrupt checkpoint"),
    "random bytes .safetensors": (["--weights", "{random_st}"], "corrupt safetensors file"),
    "weights missing": (["--weights", "{tmp}/missing.pt"], "weights file not found"),
    "weights of another model": (["--weights", "{resnet18}"], "do not fit this model"),
    "class names count": (["--class-names", "{names}"], "class names must be 10 distinct non-empty names"),
    "class names missing": (["--class-names", "{tmp}/none.txt"], "--class-names file not found"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    import torch

    from rbench.models import create_model

    tmp = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    (tmp / "file.txt").write_text("not a folder")
    (tmp / "empty").mkdir()
    (tmp / "random.pt").write_bytes(rng.integers(0, 256, 65536, dtype=np.uint8).tobytes())
    (tmp / "random.safetensors").write_bytes(rng.integers(0, 256, 65536, dtype=np.uint8).tobytes())
    (tmp / "names.txt").write_text("cat\ndog\n")
    torch.save(create_model("resnet18").state_dict(), tmp / "resnet18.pt")
    return {
        "tmp": tmp,
        "file": tmp / "file.txt",
        "empty": tmp / "empty",
        "random_pt": tmp / "random.pt",
        "random_st": tmp / "random.safetensors",
        "names": tmp / "names.txt",
        "resnet18": tmp / "resnet18.pt",
    }


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_export_bad_input(case, inputs, tmp_path):
    args, message = EXPORT_CASES[case]
    args = [a.format(**inputs) for a in args]
    out = tmp_path / "artifacts"
    if "--out" not in args:
        args += ["--out", str(out)]
    if "--model" not in args:
        args = ["--model", "resnet20", *args]
    start = time.perf_counter()
    result = run("export", *args)
    _assert_one_line_exit_2(result, message)
    assert not out.exists()  # nothing written, not even the folder
    if "weights" not in case:
        assert time.perf_counter() - start < 5  # refused before a model is built or exported


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resnet18", "--num-classes", "-3"], "--num-classes must be 1 or more, got -3"),
        (["resnet18", "--num-classes", "0"], "--num-classes must be 1 or more, got 0"),
        (["resnet18", "--list"], "--list lists every model; give it alone"),
        (["resnet51"], "unknown model 'resnet51'"),
    ],
)
def test_inspect_bad_input(args, message):
    _assert_one_line_exit_2(run("inspect", *args), message)


def test_export_keeps_stdout_clean_for_json(tmp_path):
    """No library prints its graph or progress on stdout: --json output parses as it is."""
    import json

    result = run("export", "--model", "resnet20", "--precision", "all", "--json", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["passed"] is True


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            ["run", "--backends", "ort,ort-openvino"],
            "unknown backend 'ort-openvino'; choose from torch, torch-compile,",
        ),
        (
            ["parity", "{artifact}", "--backend", "ort-openvino"],
            "'ort-openvino' is not one of 'torch', 'torch-compile'",
        ),
        (["eval", "{artifact}", "--data", "digits", "--backend", "ort-openvino"], "unknown backend 'ort-openvino'"),
        (
            ["predict", "--artifact", "{artifact}", "x.png", "--backend", "ort-openvino"],
            "unknown backend 'ort-openvino'",
        ),
    ],
)
def test_an_unknown_backend_is_exit_2_listing_the_valid_ones(resnet20_artifact, command, message):
    from rbench.runtime import BACKENDS

    result = run(*[c.format(artifact=resnet20_artifact.path) for c in command])
    _assert_one_line_exit_2(result, message)
    assert all(name in result.stderr for name in BACKENDS)
