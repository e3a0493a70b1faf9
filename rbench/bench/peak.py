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

from rbench.errors import first_line

SIZE = 2048


@dataclass(frozen=True)
class Probe:
    library: str
    precision: str  # the precision the GEMM runs in: fp32, bf16, int8
    gflops: float | None
    error: str | None = None


def _best_seconds(fn: Callable[[], object], budget_s: float = 0.4, at_least: int = 3) -> float:
    fn()  # warm-up: first-call allocation and kernel selection
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


def probes(threads: int = 0) -> list[tuple[str, str, Callable[[], Callable[[], object]]]]:
    """(library, precision, maker) for every GEMM this machine's libraries offer."""
    found: list[tuple[str, str, Callable[[], Callable[[], object]]]] = [("numpy", "fp32", lambda: _numpy_fp32(SIZE))]
    if importlib.util.find_spec("torch"):
        found += [("torch", p, lambda p=p: _torch(SIZE, p)) for p in ("fp32", "bf16")]
    if importlib.util.find_spec("onnxruntime"):
        found += [("onnxruntime", p, lambda p=p: _ort(SIZE, p, threads)) for p in ("fp32", "int8")]
    if importlib.util.find_spec("openvino"):
        found += [("openvino", p, lambda p=p: _openvino(SIZE, p, threads)) for p in ("fp32", "bf16")]
    return found


def measure_peaks(threads: int = 0) -> list[Probe]:
    """Every probe's GFLOP/s (2·n³ operations per product); a probe that fails is recorded, not fatal."""
    results = []
    for library, precision, make in probes(threads):
        try:
            seconds = _best_seconds(make())
            results.append(Probe(library, precision, 2 * SIZE**3 / seconds / 1e9))
        except Exception as exc:
            results.append(Probe(library, precision, None, f"{type(exc).__name__}: {first_line(exc)}"))
    return results


def best_per_precision(found: list[Probe]) -> dict[str, Probe]:
    best: dict[str, Probe] = {}
    for probe in found:
        if probe.gflops is not None and (probe.precision not in best or probe.gflops > best[probe.precision].gflops):
            best[probe.precision] = probe
    return best
