"""This machine's achievable peak per precision, measured in the same run: the best large GEMM among the installed
libraries (numpy, torch, ONNX Runtime, OpenVINO).

No single library's GEMM is the machine's limit (measured here with 2048³ products: FP32 OpenVINO 377, ONNX Runtime
316, torch 191 GFLOP/s), so each precision's peak is the best of every probe that offers it. It is still a lower
bound: a model whose rows beat it says so rather than report more than 100%.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rbench.env import has_native_bf16, has_vnni
from rbench.errors import first_line

SIZE = 2048
#: The square GEMMs probed: the large one the README has always cited, and one that fits the L2 and L3 caches of a
#: 2-core share better (a network's convolutions are many smaller products).
SIZES = (1024, SIZE)
#: A probe below this share of the fastest at one size is not run at the larger ones (an emulated precision: torch's
#: bf16 GEMM on a CPU without native bf16 takes half a minute per 2048³ product)
SLOW = 0.05


@dataclass(frozen=True)
class Probe:
    library: str
    precision: str  # the precision the GEMM runs in: fp32, bf16, int8
    gflops: float | None
    error: str | None = None
    size: int = SIZE
    round: str = "before"  # measured before the rows, or after them (the machine drifts in between)


def _best_seconds(fn: Callable[[], object], budget_s: float = 0.4, at_least: int = 3) -> float:
    """The best of at least ``at_least`` calls within ``budget_s``; a GEMM whose warm-up alone is over the budget
    (bf16 emulated on a CPU without native bf16, say: seconds per 2048³ product) is timed once more, not thrice."""
    t = time.perf_counter()
    fn()  # warm-up: first-call allocation and kernel selection
    if time.perf_counter() - t > budget_s:
        at_least = 1
    best, start, n = float("inf"), time.perf_counter(), 0
    while n < at_least or time.perf_counter() - start < budget_s:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        n += 1
    return best


def _numpy_fp32(n: int) -> Callable[[], object]:
    a, b = (np.random.default_rng(i).standard_normal((n, n), dtype=np.float32) for i in (0, 1))
    return lambda: a @ b


def _torch(n: int, dtype: str) -> Callable[[], object]:
    import torch

    kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(n, n).to(kind), torch.randn(n, n).to(kind)
    return lambda: torch.mm(a, b)


def _onnx_matmul(n: int, precision: str) -> bytes:
    """A one-node ONNX model: ``MatMul`` (fp32) or ``MatMulInteger`` (uint8 x int8, as ONNX Runtime's VNNI path)."""
    from onnx import TensorProto, helper, numpy_helper

    if precision == "fp32":
        weight = numpy_helper.from_array(np.random.default_rng(1).standard_normal((n, n)).astype(np.float32), "b")
        node = helper.make_node("MatMul", ["a", "b"], ["c"])
        inputs, out = [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])], TensorProto.FLOAT
    else:
        weight = numpy_helper.from_array(np.random.default_rng(1).integers(-127, 128, (n, n), dtype=np.int8), "b")
        node = helper.make_node("MatMulInteger", ["a", "b"], ["c"])
        inputs, out = [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])], TensorProto.INT32
    graph = helper.make_graph([node], "gemm", inputs, [helper.make_tensor_value_info("c", out, [n, n])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _ort(n: int, precision: str, threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(_onnx_matmul(n, precision), options, providers=["CPUExecutionProvider"])
    a = (
        np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
        if precision == "fp32"
        else np.random.default_rng(0).integers(0, 256, (n, n), dtype=np.uint8)
    )
    return lambda: session.run(None, {"a": a})


def _openvino(n: int, precision: str, threads: int) -> Callable[[], object]:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(_onnx_matmul(n, "fp32"), b"")  # bytes in: model and (empty) weights
    hint = {"fp32": "f32", "bf16": "bf16"}[precision]
    config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    request = core.compile_model(model, "CPU", config).create_infer_request()
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    return lambda: request.infer({0: a})


def probes(threads: int = 0, n: int = SIZE) -> list[tuple[str, str, Callable[[], Callable[[], object]]]]:
    """(library, precision, maker) for every ``n``³ GEMM this machine's libraries offer."""
    found: list[tuple[str, str, Callable[[], Callable[[], object]]]] = [("numpy", "fp32", lambda: _numpy_fp32(n))]
    if importlib.util.find_spec("torch"):
        found += [("torch", p, lambda p=p: _torch(n, p)) for p in ("fp32", "bf16")]
    if importlib.util.find_spec("onnxruntime"):
        found += [("onnxruntime", p, lambda p=p: _ort(n, p, threads)) for p in ("fp32", "int8")]
    if importlib.util.find_spec("openvino"):
        found += [("openvino", p, lambda p=p: _openvino(n, p, threads)) for p in ("fp32", "bf16")]
    return found


def measure_peaks(threads: int = 0, sizes: tuple[int, ...] = SIZES, round: str = "before") -> list[Probe]:
    """Every probe's GFLOP/s (2·n³ operations per product) at every size; a probe that fails is recorded, not
    fatal. ``rbench run`` measures a round before its rows and one after, and holds each row to the best of both."""
    results: list[Probe] = []
    slow: dict[tuple[str, str], str] = {}
    if not has_native_bf16():  # emulated at about 1 GFLOP/s: seconds per product for a figure no row is held to
        slow[("torch", "bf16")] = "not probed: no native bf16 on this CPU (torch would emulate it)"
        # and OpenVINO's CPU plugin takes the bf16 hint and runs f32: an fp32 figure under bf16's name
        slow[("openvino", "bf16")] = "not probed: no native bf16 on this CPU (OpenVINO would run f32)"
    for n in sorted(sizes):
        for library, precision, make in probes(threads, n):
            if (library, precision) in slow:  # bf16 without native bf16, or emulated at a smaller size
                results.append(Probe(library, precision, None, slow[(library, precision)], size=n, round=round))
                continue
            try:
                seconds = _best_seconds(make())
                results.append(Probe(library, precision, 2 * n**3 / seconds / 1e9, size=n, round=round))
            except Exception as exc:
                error = f"{type(exc).__name__}: {first_line(exc)}"
                results.append(Probe(library, precision, None, error, size=n, round=round))
        fastest = max((p.gflops for p in results if p.size == n and p.gflops), default=0.0)
        for p in results:
            if p.size == n and p.gflops is not None and p.gflops < SLOW * fastest:
                slow[(p.library, p.precision)] = f"not probed above {n}: {p.gflops:.2g} GFLOP/s at {n}³, emulated"
    return results


def best_per_precision(found: list[Probe]) -> dict[str, Probe]:
    best: dict[str, Probe] = {}
    for probe in found:
        if probe.gflops is not None and (probe.precision not in best or probe.gflops > best[probe.precision].gflops):
            best[probe.precision] = probe
    return best


@dataclass(frozen=True)
class Theoretical:
    """The CPU's arithmetic peak on paper: cores x FLOP per cycle x clock, from its flags and the measured clock."""

    precision: str
    gflops: float
    flop_per_cycle: int  # per core
    assumptions: str


def theoretical_peaks(cpu: dict) -> dict[str, Theoretical]:
    """FP32, bf16 and int8 peaks on paper for the CPU record of ``rbench.bench.machine``, or ``{}`` without a
    clock. Assumed: two FMA pipes per core; 512-bit vectors where AVX-512 runs at full width, 256-bit where it is
    split in halves (AMD family 25, Zen 4) or absent (AVX2); bf16 dot products (``avx512_bf16``) do 2x FP32's
    work per lane and cycle, VNNI's int8 dot products (``avx512_vnni``/``avx_vnni``) 4x; without VNNI, AVX2's
    int8 path (``VPMADDUBSW`` u8 x s8 pairs to s16, then ``VPMADDWD`` to s32: two multiplies on the FMA pipes for
    each 4-byte dot product) 2x; AMX is not modelled."""
    clock = cpu.get("measured_clock_mhz") or cpu.get("clock_mhz")
    source = "measured under load" if cpu.get("measured_clock_mhz") else "the kernel's clock, not measured"
    cores, flags = cpu.get("logical_cores") or 1, set(cpu.get("flags") or ())
    if not clock:
        return {}
    halves = cpu.get("vendor") == "AuthenticAMD" and str(cpu.get("family")) == "25"  # Zen 3 and Zen 4
    bits = 512 if "avx512f" in flags and not halves else 256
    fp32 = 2 * 2 * bits // 32  # two FMA pipes, two FLOP per FMA, lanes of 32 bits
    if "avx512f" not in flags:
        isa = "AVX2, no AVX-512"
    else:
        isa = "AVX-512 on 256-bit halves, AMD family 25" if halves else "AVX-512"
    width = f"{bits}-bit vectors ({isa})"
    base = f"{cores} cores x {clock:.0f} MHz ({source}), 2 FMA pipes, {width}"
    per_cycle = {"fp32": (fp32, base)}
    if "avx512_bf16" in flags:
        per_cycle["bf16"] = (2 * fp32, base + ", bf16 dot products 2x FP32")
    if has_vnni(flags):
        per_cycle["int8"] = (4 * fp32, base + ", VNNI int8 dot products 4x FP32")
    elif "avx2" in flags:
        per_cycle["int8"] = (2 * fp32, base + ", no VNNI: int8 as VPMADDUBSW + VPMADDWD, 2x FP32")
    return {
        p: Theoretical(p, cores * n * clock / 1e3, n, why + "; AMX not modelled") for p, (n, why) in per_cycle.items()
    }
