"""Device buffers and a stream for the TensorRT runner.

Torch CUDA tensors where torch is installed; pycuda allocations otherwise, for deployment hosts without torch. Each
named buffer is allocated once and reused while its shape and dtype stay the same, so a steady-state ``infer`` only
copies.
"""

from __future__ import annotations

import abc
import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

from rbench.errors import EnvironmentProblem, missing_dependency, unknown_choice

MEMORY_KINDS = ("auto", "torch", "pycuda")


class DeviceMemory(abc.ABC):
    """Named device buffers and the stream TensorRT enqueues on."""

    kind: str
    stream: int  # the raw cudaStream_t handle for execute_async_v3

    @abc.abstractmethod
    def to_device(self, name: str, array: np.ndarray) -> int:
        """Copy ``array`` into the buffer ``name`` (allocated to fit) and return its device address."""

    @abc.abstractmethod
    def empty(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
        """Make sure buffer ``name`` has this shape and dtype; return its device address."""

    @abc.abstractmethod
    def to_host(self, name: str) -> np.ndarray:
        """Wait for the stream, then copy buffer ``name`` back to a new host array."""

    def synchronize(self) -> None:
        """Wait for everything enqueued on the stream."""
        self._stream.synchronize()  # type: ignore[attr-defined]  (both kinds keep theirs in _stream)

    def joined(self, enqueue: Callable[[], None]) -> None:
        """Run ``enqueue`` on this memory's stream, ordered after and before the caller's current torch stream, so
        CUDA events recorded there time exactly the enqueued work."""
        raise EnvironmentProblem(f"timing on torch's stream needs torch with CUDA; the {self.kind} memory has none")

    def capture(self, enqueue: Callable[[], None]) -> Callable[[], None]:
        """Capture ``enqueue`` into a CUDA graph and return its replay."""
        raise EnvironmentProblem(f"CUDA graphs need torch with CUDA; the {self.kind} device memory has none")

    @abc.abstractmethod
    def close(self) -> None:
        """Release every buffer."""


class TorchMemory(DeviceMemory):
    kind = "torch"

    def __init__(self) -> None:
        import torch

        self._torch = torch
        self._stream = torch.cuda.Stream()
        self.stream = self._stream.cuda_stream
        self._buffers: dict[str, Any] = {}

    def empty(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
        torch_dtype = self._torch.from_numpy(np.empty(0, dtype)).dtype
        buffer = self._buffers.get(name)
        if buffer is None or tuple(buffer.shape) != tuple(shape) or buffer.dtype != torch_dtype:
            with self._torch.cuda.stream(self._stream):
                buffer = self._buffers[name] = self._torch.empty(tuple(shape), dtype=torch_dtype, device="cuda")
        return buffer.data_ptr()

    def to_device(self, name: str, array: np.ndarray) -> int:
        address = self.empty(name, array.shape, array.dtype)
        with self._torch.cuda.stream(self._stream):
            self._buffers[name].copy_(self._torch.from_numpy(np.ascontiguousarray(array)))
        return address

    def to_host(self, name: str) -> np.ndarray:
        with self._torch.cuda.stream(self._stream):
            host = self._buffers[name].cpu()
        self._stream.synchronize()
        return host.numpy()

    def joined(self, enqueue: Callable[[], None]) -> None:
        current = self._torch.cuda.current_stream()
        self._stream.wait_stream(current)
        enqueue()
        current.wait_stream(self._stream)

    def capture(self, enqueue: Callable[[], None]) -> Callable[[], None]:
        graph = self._torch.cuda.CUDAGraph()
        self._stream.synchronize()
        with self._torch.cuda.graph(graph, stream=self._stream):
            enqueue()

        def replay() -> None:
            with self._torch.cuda.stream(self._stream):
                graph.replay()

        return replay

    def close(self) -> None:
        self._buffers.clear()


class PycudaMemory(DeviceMemory):
    kind = "pycuda"

    def __init__(self) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self._cuda = cuda
        self._context = cuda.Device(0).retain_primary_context()  # the context TensorRT's runtime API uses too
        self._context.push()
        self._stream = cuda.Stream()
        self.stream = self._stream.handle
        self._buffers: dict[str, tuple[Any, np.ndarray]] = {}  # name -> (device allocation, pinned host array)

    def empty(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
        entry = self._buffers.get(name)
        if entry is None or entry[1].shape != tuple(shape) or entry[1].dtype != dtype:
            host = self._cuda.pagelocked_empty(tuple(shape), dtype)
            entry = self._buffers[name] = (self._cuda.mem_alloc(max(host.nbytes, 1)), host)
        return int(entry[0])

    def to_device(self, name: str, array: np.ndarray) -> int:
        address = self.empty(name, array.shape, array.dtype)
        device, host = self._buffers[name]
        host[...] = array
        self._cuda.memcpy_htod_async(device, host, self._stream)
        return address

    def to_host(self, name: str) -> np.ndarray:
        device, host = self._buffers[name]
        self._cuda.memcpy_dtoh_async(host, device, self._stream)
        self._stream.synchronize()
        return host.copy()

    def close(self) -> None:
        for device, _ in self._buffers.values():
            device.free()
        self._buffers.clear()
        self._context.pop()


def device_memory(kind: str = "auto") -> DeviceMemory:
    """Device memory of ``kind``; ``auto`` takes torch when it sees a GPU, else pycuda."""
    if kind not in MEMORY_KINDS:
        raise unknown_choice("device memory", kind, MEMORY_KINDS)
    has_torch = importlib.util.find_spec("torch") is not None
    if kind == "torch" or (kind == "auto" and has_torch):
        if not has_torch:
            raise missing_dependency("torch", "dev")
        import torch

        if torch.cuda.is_available():
            return TorchMemory()
        if kind == "torch":
            raise EnvironmentProblem("no CUDA device: torch sees none")
    if importlib.util.find_spec("pycuda") is None:
        raise missing_dependency("pycuda", "gpu")
    return PycudaMemory()
