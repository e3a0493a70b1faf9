"""Probes of this machine that any layer may use: package versions, the CPU, the CUDA device and driver.

Each probe answers from metadata or the operating system where it can, so a missing or broken library is reported
rather than imported.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
from importlib import metadata
from pathlib import Path

from rbench.errors import EnvironmentProblem, first_line

#: TensorRT and ONNX Runtime ship under several distribution names.
_DIST_SUFFIXES = ("", "-gpu", "-cu13", "-cu12", "-cu13-bindings", "-cu12-bindings")


def package_version(dist: str) -> str | None:
    """The installed version of a distribution (or of its GPU/CUDA-suffixed twin), or ``None``."""
    for name in (f"{dist}{suffix}" for suffix in _DIST_SUFFIXES):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: The CPU flags of int8 dot-product instructions (4x FP32's int8 work per cycle; without them 8-bit dot products
#: add pairs in int16 and can saturate)
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
#: The CPU flags of native bf16 arithmetic (dot products, or AMX tiles)
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_vnni(flags: set[str] | None = None) -> bool:
    """Whether the CPU (or these ``flags``) has int8 dot-product instructions (``VNNI_FLAGS``)."""
    return bool(set(VNNI_FLAGS) & (cpu_flags() if flags is None else flags))


def has_native_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU (or these ``flags``) does bf16 arithmetic natively (``NATIVE_BF16_FLAGS``)."""
    return bool(set(NATIVE_BF16_FLAGS) & (cpu_flags() if flags is None else flags))


def logical_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cuda_device() -> tuple[str, str, str]:
    """Name, compute capability and CUDA version of device 0: through torch if it sees a GPU, else pycuda.

    Raises ``EnvironmentProblem`` saying what is missing: the GPU, or any library to reach it.
    """
    has_torch = importlib.util.find_spec("torch") is not None
    if has_torch:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return torch.cuda.get_device_name(0), f"{major}.{minor}", str(torch.version.cuda)
    if importlib.util.find_spec("pycuda") is None:
        if has_torch:
            raise EnvironmentProblem("no CUDA device: torch sees none (an NVIDIA GPU and its driver are needed)")
        raise EnvironmentProblem("neither torch nor pycuda is installed to reach the GPU: pip install 'rbench[gpu]'")
    import pycuda.driver as cuda

    try:
        cuda.init()
        device = cuda.Device(0)
    except cuda.Error as exc:
        raise EnvironmentProblem(f"no CUDA device: pycuda sees none ({first_line(exc)})") from None
    major, minor = device.compute_capability()
    return device.name(), f"{major}.{minor}", ".".join(map(str, cuda.get_version()[:2]))


def driver_version(path: str = "/proc/driver/nvidia/version") -> str:
    try:
        text = Path(path).read_text()
    except OSError:
        return "unknown"
    found = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+(?:\.\d+)+)", text)
    return found.group(1) if found else "unknown"
