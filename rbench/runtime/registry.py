"""The one registry of backends: name, device, and the pip extra that brings its library."""

from __future__ import annotations

from dataclasses import dataclass

from rbench.errors import unknown_choice


@dataclass(frozen=True)
class Backend:
    name: str
    device: str  # "cpu" or "cuda"
    extra: str  # pip install 'rbench[<extra>]' brings what it needs
    description: str


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("torch", "cpu", "dev", "eager PyTorch on the artifact's weights, BatchNorm folded"),
        Backend(
            "torch-compile", "cpu", "dev", "torch.compile (inductor): weight freezing on CPU, max-autotune on CUDA"
        ),
        Backend("ort", "cpu", "dev", "ONNX Runtime, CPU provider, on the artifact's ONNX of that precision"),
        Backend("openvino", "cpu", "openvino", "OpenVINO CPU plugin on the artifact's ONNX, precision hint explicit"),
        Backend("trt", "cuda", "gpu", "TensorRT, the engine rbench build made for that precision"),
        Backend("ort-cuda", "cuda", "gpu", "ONNX Runtime, CUDA provider with IOBinding (TF32 off)"),
        Backend("ort-trt", "cuda", "gpu", "ONNX Runtime, TensorRT provider with IOBinding and engine caches"),
    )
}


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise unknown_choice("backend", name, BACKENDS) from None
