"""``rbench doctor``: what this machine has, each piece probed on its own so a missing one never crashes the report."""

from __future__ import annotations

import importlib
import platform
from collections.abc import Callable

from rbench.env import cpu_model, cuda_device, logical_cores, package_version

PACKAGES = ("torch", "onnx", "onnxruntime", "tensorrt", "pycuda", "openvino")


def _safe(probe: Callable[[], str]) -> str:
    try:
        return probe()
    except Exception as exc:  # a broken install must not break the report
        from rbench.errors import first_line

        return f"error: {type(exc).__name__}: {first_line(exc)}"


def _ort_providers() -> str:
    import onnxruntime as ort

    return ", ".join(ort.get_available_providers())


def _cuda() -> str:
    from rbench.errors import EnvironmentProblem

    try:
        name, capability, cuda = cuda_device()
    except EnvironmentProblem as exc:
        return f"not available ({exc})"
    return f"{name} (compute capability {capability}, CUDA {cuda})"


def _engine_readiness() -> str:
    from rbench.runtime.trt_common import engine_readiness

    ok, why = engine_readiness()
    return f"can build: {why}" if ok else f"cannot build: {why}"


def _importable(module: str) -> str:
    importlib.import_module(module)
    return "imports"


def report() -> dict[str, str]:
    """Name → finding, for the CLI table and ``--json``."""
    rows: dict[str, str] = {"python": platform.python_version()}
    for dist in PACKAGES:
        version = package_version(dist)
        if version is None:
            rows[dist] = "not installed"
            continue
        status = _safe(lambda module=dist: _importable(module))
        rows[dist] = version if status == "imports" else f"{version} ({status})"
    if rows["onnxruntime"] != "not installed":
        rows["onnxruntime providers"] = _safe(_ort_providers)
    rows["cuda"] = _safe(_cuda)
    rows["tensorrt engines"] = _safe(_engine_readiness)
    rows["cpu"] = f"{cpu_model()}, {logical_cores()} logical cores"
    rows["platform"] = platform.platform()
    return rows
