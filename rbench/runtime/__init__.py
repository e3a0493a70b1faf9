"""Backends behind one ``Runner`` interface: eager PyTorch, ONNX Runtime (CPU, CUDA, TensorRT provider), TensorRT.

Each runner module declares its backends' specs (``rbench.runtime.spec``); ``rbench.runtime.registry`` lists them.
The runtime knows models and files, not artifacts: ``rbench.bench.plan`` maps an artifact onto runners. Only
the torch and ONNX Runtime CPU runners import their library here; the GPU ones do on activation.
"""

from __future__ import annotations

from rbench.runtime.base import Runner, TensorSpec, validate_feed
from rbench.runtime.openvino_runner import OpenVinoRunner
from rbench.runtime.ort_runner import OrtRunner, gpu_providers
from rbench.runtime.registry import BACKENDS, get_backend
from rbench.runtime.spec import BackendSpec, Consumes, Executed, ModelSource, RunContext
from rbench.runtime.torch_runner import CompiledTorchRunner, TorchRunner
from rbench.runtime.trt_runner import TrtRunner

__all__ = [
    "BACKENDS",
    "BackendSpec",
    "CompiledTorchRunner",
    "Consumes",
    "Executed",
    "ModelSource",
    "OpenVinoRunner",
    "OrtRunner",
    "RunContext",
    "Runner",
    "TensorSpec",
    "TorchRunner",
    "TrtRunner",
    "get_backend",
    "gpu_providers",
    "validate_feed",
]
