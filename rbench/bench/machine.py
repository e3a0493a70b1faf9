"""The environment a run records: what identifies this machine's speed, and the software it ran.

A CPU's name is not enough ("AMD EPYC" is a Zen 4 and a Zen 5 alike, whose vector units differ 2x), so the record
holds the vendor, family, model, stepping and microcode, the hypervisor, the cache sizes, the ISA flags that decide
a kernel's speed, and the clock: the kernel's, and one measured under load. ``rbench compare`` refuses (exit 3) to
judge across any of them but the measured clock unless told to (``--allow-env-change``).
"""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

LIBRARIES = ("rbench", "torch", "onnx", "onnxruntime", "openvino", "tensorrt", "numpy", "mlcommons-loadgen")
#: The ISA flags that decide which kernels run and how fast: vector width and its subsets, dot-product (VNNI)
#: and reduced-precision (bf16, fp16) instructions, and AMX tiles.
CPU_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512dq",
    "avx512cd",
    "avx512bw",
    "avx512vl",
    "avx512ifma",
    "avx512vbmi",
    "avx512_vbmi2",
    "avx512_bitalg",
    "avx512_vpopcntdq",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)
_CPUINFO_KEYS = {"vendor_id": "vendor", "cpu family": "family", "model": "model_number", "stepping": "stepping"}


def cpuinfo(path: str = "/proc/cpuinfo") -> list[dict[str, str]]:
    """``/proc/cpuinfo`` as one dict per logical CPU (empty where there is none)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    cpus = []
    for block in text.strip().split("\n\n"):
        fields = (line.split(":", 1) for line in block.splitlines() if ":" in line)
        cpus.append({k.strip(): v.strip() for k, v in fields})
    return cpus


def clock_mhz(path: str = "/proc/cpuinfo") -> float | None:
    """The mean of the kernel's current clock of every logical CPU, MHz (sampled now)."""
    found = [float(c["cpu MHz"]) for c in cpuinfo(path) if c.get("cpu MHz")]
    return round(sum(found) / len(found), 1) if found else None


_CHAIN = r"""
#include <stdint.h>
uint64_t chain(uint64_t n) {
    uint64_t x = 0;
    for (uint64_t i = 0; i < n; i++) {
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                         "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t" : "+r"(x));
    }
    return x;
}
"""


@functools.lru_cache(maxsize=1)
def measured_clock_mhz(rounds: int = 5, adds: int = 4_000_000) -> float | None:
    """The core clock while busy, measured: a chain of dependent integer adds (one cycle of latency each on current
    x86 cores), timed; the fastest of ``rounds`` (a neighbour only slows it). ``None`` where there is no C
    compiler or the CPU is not x86-64. Measured once a process: the peak on paper and the environment record of a
    run read the same figure."""
    import ctypes
    import shutil
    import tempfile
    import time

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or platform.machine() not in ("x86_64", "AMD64"):
        return None
    with tempfile.TemporaryDirectory(prefix="rbench-clock-") as tmp:
        source, lib = Path(tmp) / "chain.c", Path(tmp) / "chain.so"
        source.write_text(_CHAIN)
        built = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(lib), str(source)], capture_output=True)
        if built.returncode != 0:
            return None
        chain = ctypes.CDLL(str(lib)).chain
        chain.restype, chain.argtypes = ctypes.c_uint64, [ctypes.c_uint64]
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            chain(adds // 8)
            best = min(best, time.perf_counter() - start)
    return round(adds / best / 1e6, 1)


def caches(root: str = "/sys/devices/system/cpu/cpu0/cache") -> dict[str, str]:
    """Cache sizes seen by CPU 0, ``{"L1d": "32K", "L2": "1024K", …}``."""
    found = {}
    for index in sorted(Path(root).glob("index*")):
        try:
            level, kind, size = ((index / n).read_text().strip() for n in ("level", "type", "size"))
        except OSError:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        found[f"L{level}{suffix}"] = size
    return found


def hypervisor(flags: set[str]) -> str | None:
    """The hypervisor this runs under (``lscpu``'s reading of CPUID), ``None`` on bare metal."""
    if "hypervisor" not in flags:
        return None
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    vendor = next((line.split(":", 1)[1].strip() for line in text.splitlines() if "Hypervisor vendor" in line), None)
    return vendor or "unknown"


def cpu_record() -> dict[str, Any]:
    """What identifies this CPU's speed (see the module)."""
    from rbench.env import cpu_model, logical_cores

    first = (cpuinfo() or [{}])[0]
    flags = set(first.get("flags", "").split())
    record: dict[str, Any] = {"model": cpu_model()}
    record |= {name: first.get(key) for key, name in _CPUINFO_KEYS.items()}
    record |= {
        "microcode": first.get("microcode"),
        "hypervisor": hypervisor(flags),
        "caches": caches(),
        "logical_cores": logical_cores(),
        "flags": [f for f in CPU_FLAGS if f in flags],
        "clock_mhz": clock_mhz(),
        "measured_clock_mhz": measured_clock_mhz(),
    }
    return record


def environment() -> dict[str, Any]:
    from rbench.env import cuda_device, driver_version, package_version
    from rbench.errors import EnvironmentProblem

    try:
        gpu, capability, cuda = cuda_device()
        gpu_info: dict[str, Any] = {"name": gpu, "compute_capability": capability, "cuda": cuda}
    except EnvironmentProblem as exc:
        gpu_info = {"name": None, "why": str(exc)}
    gpu_info["driver"] = driver_version()
    return {
        "cpu": cpu_record(),
        "gpu": gpu_info,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": {name: package_version(name) for name in LIBRARIES},
        "rbench_git_sha": git_sha(),
    }


def describe_cpu(cpu: dict[str, Any]) -> str:
    """The CPU by what was read: ``AMD EPYC (AuthenticAMD family 25 model 17 stepping 1, KVM)``."""
    if cpu.get("family") is None:
        return str(cpu.get("model"))
    where = f", {cpu['hypervisor']}" if cpu.get("hypervisor") else ""
    return (
        f"{cpu['model']} ({cpu.get('vendor')} family {cpu['family']} model {cpu.get('model_number')} "
        f"stepping {cpu.get('stepping')}{where})"
    )


#: Fields of the CPU record that must match for two runs to be compared (the clock within CLOCK_TOLERANCE).
IDENTITY = ("model", "vendor", "family", "model_number", "stepping", "microcode", "hypervisor", "caches", "flags")
CLOCK_TOLERANCE = 0.05


def cpu_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two runs' CPU records (a record written before a field existed matches nothing)."""
    found = [
        f"cpu {k}: {old.get(k)!r} -> {new.get(k)!r}" for k in (*IDENTITY, "logical_cores") if old.get(k) != new.get(k)
    ]
    a, b = old.get("clock_mhz"), new.get("clock_mhz")
    if a and b and abs(b - a) / a > CLOCK_TOLERANCE:
        found.append(f"cpu clock: {a} -> {b} MHz (more than {CLOCK_TOLERANCE:.0%} apart)")
    return found


def git_sha() -> str | None:
    """The commit of the rbench checkout this runs from, where it is one."""
    root = Path(__file__).resolve().parents[2]
    try:
        found = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None
