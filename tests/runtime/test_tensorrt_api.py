"""Every TensorRT name rbench uses exists in the published TensorRT 11 bindings, and none that 11 removed is used.

The names come from the ``tensorrt-cu13-bindings`` 11.4 wheel (``tests/fixtures/make_tensorrt_names.py``). The
names rbench uses are read from the source: every attribute read on a variable that, by the convention in
``rbench/runtime/trt_common.py``, holds a TensorRT object, and every method a subclass of a TensorRT class overrides.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRT_MODULES = ("rbench/export/engine.py", "rbench/runtime/trt_runner.py", "rbench/runtime/trt_common.py")
TRT_OBJECTS = {
    "trt",
    "builder",
    "network",
    "parser",
    "config",
    "profile",
    "timing",
    "plan",
    "runtime",
    "engine",
    "context",
}
REMOVED_IN_11 = {  # and BuilderFlag's FP16, INT8, BF16, FP8, OBEY/PREFER_PRECISION_CONSTRAINTS (checked below)
    "int8_calibrator",
    "IInt8Calibrator",
    "IInt8EntropyCalibrator2",
    "IInt8MinMaxCalibrator",
    "platform_has_fast_fp16",
    "platform_has_fast_int8",
    "EXPLICIT_BATCH",
    "IAlgorithmSelector",
}


def _published() -> set[str]:
    lines = (ROOT / "tests/fixtures/tensorrt_names.txt").read_text().splitlines()
    return {line for line in lines if line and not line.startswith("#")}


def _root(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def used_names(source: str) -> set[str]:
    """Attributes read on TensorRT objects, and methods overridden in subclasses of ``trt.*`` classes."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _root(node.value) in TRT_OBJECTS:
            names.add(node.attr)
        elif isinstance(node, ast.ClassDef) and any(_root(b) == "trt" for b in node.bases):
            names |= {f.name for f in node.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("__")}
    return names


@pytest.fixture(scope="module")
def used() -> set[str]:
    return set().union(*(used_names((ROOT / m).read_text()) for m in TRT_MODULES))


def exists(name: str, published: set[str]) -> bool:
    """A whole published identifier: "log" passes only if the bindings name "log", not because "catalog" exists."""
    return name in published


def test_the_fixture_is_tensorrt_11():
    published = _published()
    assert len(published) > 1500
    for name in ("STRONGLY_TYPED", "execute_async_v3", "set_memory_pool_limit", "builder_optimization_level"):
        assert name in published
    for name in REMOVED_IN_11:
        assert not exists(name, published), name
    assert not exists("FP16", published)
    for fragment in ("og", "tep", "untime", "uilder"):  # tails of real names, but not names: whole identifiers only
        assert not exists(fragment, published), fragment


def test_the_collector_sees_the_calls_that_matter(used):
    assert {
        "STRONGLY_TYPED",
        "NetworkDefinitionCreationFlag",
        "OnnxParser",
        "parse_from_file",
        "set_memory_pool_limit",
        "WORKSPACE",
        "builder_optimization_level",
        "add_optimization_profile",
        "create_timing_cache",
        "set_timing_cache",
        "build_serialized_network",
        "phase_start",
        "step_complete",
        "deserialize_cuda_engine",
        "set_input_shape",
        "set_tensor_address",
        "execute_async_v3",
        "nptype",
        "__version__",
        "clear_flag",
        "TF32",
    } <= used


def test_every_tensorrt_name_used_exists_in_the_published_bindings(used):
    published = _published()
    missing = sorted(n for n in used if not exists(n, published))
    assert missing == [], f"not in the TensorRT 11 bindings: {missing}"


def test_no_name_removed_in_tensorrt_11_is_used(used):
    assert used & REMOVED_IN_11 == set()
    every_attribute = {
        node.attr
        for m in TRT_MODULES
        for node in ast.walk(ast.parse((ROOT / m).read_text()))
        if isinstance(node, ast.Attribute)
    }
    precision_flags = {"FP16", "INT8", "BF16", "FP8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"}
    assert every_attribute & precision_flags == set()


def test_a_misspelled_name_would_be_caught():
    published = _published()
    found = used_names("def f(trt, context):\n    context.execute_async_v4(0)\n    trt.BuilderFlag.FP16\n")
    assert found == {"execute_async_v4", "BuilderFlag", "FP16"}
    assert [n for n in sorted(found) if not exists(n, published)] == ["FP16", "execute_async_v4"]


def test_the_fake_tensorrt_of_the_cpu_tests_only_uses_published_names(fake_trt):
    import enum
    import inspect

    names: set[str] = set()
    for name, value in vars(fake_trt).items():
        if (name.startswith("_") and name != "__version__") or inspect.ismodule(value) or value is Any:
            continue
        names.add(name)
        if inspect.isclass(value):
            for member, inner in vars(value).items():
                if not member.startswith("_"):
                    names.add(member)
                if inspect.isclass(inner) and issubclass(inner, enum.Enum):
                    names |= set(inner.__members__)
            if issubclass(value, enum.Enum):
                names |= set(value.__members__)
    names -= {"annotations"}  # from __future__
    assert {"Builder", "OnnxParser", "STRONGLY_TYPED", "set_timing_cache", "INTERNAL_ERROR"} <= names
    published = _published()
    assert sorted(n for n in names if not exists(n, published)) == []


def test_the_regeneration_script_reads_a_wheel(tmp_path):
    import importlib.util
    import zipfile

    spec = importlib.util.spec_from_file_location("make_names", ROOT / "tests/fixtures/make_tensorrt_names.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    wheel = tmp_path / "tensorrt_cu13_bindings-11.4.0.106-cp311-none-manylinux_2_28_x86_64.whl"
    library = b"\0".join(
        [b"", b"execute_async_v3", b"_ZN8nvinfer17IRuntimeD2Ev", b"FN8nvinfer18DataTypeE", b"a b", b"WORKSPACE"]
    )
    library += b"\0IPluginV3OneRuntime\0catalog\0"  # "Runtime" and "log" exist only as merged tails here
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("tensorrt_bindings/tensorrt.so", library)
        zf.writestr("tensorrt_bindings/__init__.py", "__version__ = '11.4.0.106'\ndef nptype(t):\n    pass\n")
    sources = tmp_path / "pyCore.cpp"
    sources.write_text('py::class_<IRuntime>(m, "Runtime", RuntimeDoc::descr);\n')  # names Runtime whole, not log
    out = tmp_path / "names.txt"
    script.main([str(wheel), "--out", str(out), "--sources", str(sources)])
    lines = out.read_text().splitlines()
    assert lines[0].startswith(f"# Python names of {wheel.name}") and "1 merged tails confirmed" in lines[0]
    assert lines[1:] == [
        "IPluginV3OneRuntime",
        "Runtime",
        "WORKSPACE",
        "__version__",
        "catalog",
        "execute_async_v3",
        "nptype",
    ]
