"""``rbench doctor``: what this machine has, each piece probed on its own so a missing one never crashes the report."""

from __future__ import annotations

import importlib
import os
import platform
from collections.abc import Callable
from importlib import metadata

PACKAGES = ("torch", "onnx", "onnxruntime", "tensorrt", "pycuda", "openvino")


def package_version(dist: str) -> str | None:
    suffixes = ("", "-gpu", "-cu13", "-cu12", "-cu13-bindings", "-cu12-bindings")  # TensorRT ships under several
    for name in (f"{dist}{suffix}" for suffix in suffixes):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _safe(probe: Callable[[], str]) -> str:
    try:
        return probe()
    except Exception as exc:  # a broken install must not break the report
        return f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def _ort_providers() -> str:
    import onnxruntime as ort

    return ", ".join(ort.get_available_providers())


def _cuda() -> str:
    import torch

    if not torch.cuda.is_available():
        return "not available (torch sees no CUDA device)"
    names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
    major, minor = torch.cuda.get_device_capability(0)
    return f"{torch.cuda.device_count()} device(s): {', '.join(sorted(names))} (compute capability {major}.{minor})"


def _engine_readiness() -> str:
    from rbench.runtime.trt_common import engine_readiness

    ok, why = engine_readiness()
    return f"can build: {why}" if ok else f"cannot build: {why}"


def _importable(module: str) -> str:
    importlib.import_module(module)
    return "imports"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report() -> dict[str, str]:
    """Name → finding, for the CLI table and ``--json``."""
    rows: dict[str, str] = {"python": platform.python_version()}
    for dist in PACKAGES:
        version = package_version(dist)
        if version is None:
            rows[dist] = "not installed"
            continue
        module = {"onnxruntime": "onnxruntime"}.get(dist, dist)
        status = _safe(lambda module=module: _importable(module))
        rows[dist] = version if status == "imports" else f"{version} ({status})"
    if rows["onnxruntime"] != "not installed":
        rows["onnxruntime providers"] = _safe(_ort_providers)
    rows["cuda"] = _safe(_cuda) if rows["torch"] != "not installed" else "unknown (torch not installed)"
    rows["tensorrt engines"] = _safe(_engine_readiness)
    rows["cpu"] = f"{cpu_model()}, {os.cpu_count()} logical cores"
    rows["platform"] = platform.platform()
    return rows
