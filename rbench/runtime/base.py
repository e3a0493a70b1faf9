"""The one lifecycle every backend follows, after Polygraphy's ``BaseRunner``.

A runner is a context manager: ``__enter__`` activates it (loads the model, creates the session), ``__exit__``
releases it. ``infer(feed)`` takes and returns numpy arrays keyed by tensor name, and checks the feed against the
runner's declared inputs *before* the backend sees it, so every backend rejects a bad input with the same message.
Timing is not a runner's business: see ``rbench.bench``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from rbench.errors import BadInputError, RbenchError
from rbench.runtime.spec import Executed

Dim = int | str | None  # a fixed size, or a symbolic/dynamic one


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one input; a ``str`` or ``None`` dimension is dynamic.

    ``batch_range`` bounds a dynamic batch where the backend has limits (a TensorRT optimization profile).
    """

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...]
    batch_range: tuple[int, int] | None = None

    def describe(self) -> str:
        dims = ", ".join(str(d) if d is not None else "?" for d in self.shape)
        return f"{self.name}: {np.dtype(self.dtype).name}[{dims}]"


def validate_feed(feed: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]) -> None:
    """Raise ``BadInputError`` unless ``feed`` has exactly the inputs of ``specs``, well-typed and finite."""
    expected = {s.name for s in specs}
    if set(feed) != expected:
        raise BadInputError(
            f"expected inputs {sorted(expected)}, got {sorted(feed)}; "
            f"inputs are {'; '.join(s.describe() for s in specs)}"
        )
    for spec in specs:
        arr = feed[spec.name]
        if not isinstance(arr, np.ndarray):
            raise BadInputError(f"input {spec.name!r} must be a numpy array, got {type(arr).__name__}")
        if arr.dtype != spec.dtype:
            raise BadInputError(
                f"input {spec.name!r} has dtype {arr.dtype}, expected {np.dtype(spec.dtype).name} ({spec.describe()})"
            )
        if arr.ndim != len(spec.shape) or any(
            isinstance(d, int) and d != n for d, n in zip(spec.shape, arr.shape, strict=True)
        ):
            raise BadInputError(f"input {spec.name!r} has shape {list(arr.shape)}, expected {spec.describe()}")
        if arr.ndim and arr.shape[0] < 1:
            raise BadInputError(f"input {spec.name!r} has batch size 0; need at least 1")
        if spec.batch_range and not spec.batch_range[0] <= arr.shape[0] <= spec.batch_range[1]:
            low, high = spec.batch_range
            raise BadInputError(
                f"input {spec.name!r} has batch size {arr.shape[0]}, outside the engine's optimization profile "
                f"[{low}, {high}]; split the batch or rebuild with --min-batch/--max-batch covering it"
            )
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise BadInputError(f"input {spec.name!r} has {bad} NaN/Inf value(s); inputs must be finite")


class NotSupported(RbenchError):
    """An optional ability this runner does not have (its spec says so too)."""

    exit_code = 2


@dataclass
class Streams:
    """Requests in flight: ``calls[k](i)`` runs (or issues) request ``i`` of host thread ``k``; ``finish[k]()``
    waits for that thread's work, after which every call made is a finished request."""

    calls: list[Callable[[int], Any]]
    finish: list[Callable[[], Any]]
    mode: str
    requests: int
    streams: int
    threads_per_stream: int
    close: Callable[[], None] = lambda: None  # release what the setting holds (a queue, a session)


@dataclass(frozen=True)
class LayerEvent:
    """One layer as a backend's own profiler reports it: its name, what kind of kernel ran, its total time over the
    profiled calls, and the names of the graph's nodes it covers (a fused layer lists each one; empty: the profiler
    does not say)."""

    name: str
    kind: str
    total_ms: float
    covers: tuple[str, ...] = ()


@dataclass
class Profile:
    """A backend profiler's account of ``calls`` inferences: its layers (in execution order) and each profiled
    call's wall time (ms)."""

    profiler: str
    calls: int
    layers: list[LayerEvent]
    call_ms: list[float]


class Runner(abc.ABC):
    """Base class of every backend: activate, ``infer`` any number of times, release.

    Subclasses implement ``_activate``, ``_deactivate``, ``input_specs`` and ``_infer``.
    """

    backend: str = "base"

    def __init__(self, name: str, device: str, precision: str) -> None:
        self.name = name
        self.device = device
        self.precision = precision
        self.is_active = False

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.deactivate()

    def activate(self) -> None:
        """Load the model; a failure halfway releases whatever was already acquired before it propagates."""
        if self.is_active:
            raise RuntimeError(f"runner {self.name} is already active")
        try:
            self._activate()
        except BaseException:
            self._deactivate()
            raise
        self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def infer(self, feed: Mapping[str, np.ndarray], check_inputs: bool = True) -> dict[str, np.ndarray]:
        """Validate ``feed``, run the backend, and return its outputs by name as numpy arrays.

        ``check_inputs=False`` skips the validation (names, dtypes, shapes, the NaN/Inf scan) for a feed the caller
        has already validated once, as Polygraphy's ``check_inputs`` does: a benchmark must not time the scan.
        """
        if not self.is_active:
            raise RuntimeError(f"runner {self.name} is not active: use it as a context manager")
        if check_inputs:
            validate_feed(feed, self.input_specs())
        return self._infer(feed)

    def settings(self) -> dict[str, Any]:
        """What this runner runs with (threads, providers, hints), for reports; valid while active."""
        return {}

    # Optional abilities: each answers "not supported" here, and a backend that has one overrides it.

    def executed(self) -> Executed:
        """What actually executed, read back from the backend while active; by default the precision asked for."""
        return Executed(self.precision, self.precision)

    def threads_in_use(self) -> int | None:
        """The intra-op threads the backend reports it runs with (``None``: it does not say)."""
        return None

    def compiles(self) -> int | None:
        """Compilations so far (a process-wide counter), for recompile detection; ``None``: it never compiles."""
        return None

    def profile(self, feed: Mapping[str, np.ndarray], calls: int) -> Profile:
        """``calls`` inferences on ``feed`` under the backend's own per-layer profiler (after a warm-up the profile
        leaves out)."""
        raise NotSupported(f"{self.name} has no per-layer profiler in rbench")

    def device_callable(self, feed: Mapping[str, np.ndarray]) -> Callable[[], Any] | None:
        """A call on ``feed`` already on the device, for compute-only timing with CUDA events; ``None``: not
        supported (every CPU runner)."""
        return None

    def stream_callables(self, feeds: Sequence[Mapping[str, np.ndarray]], requests: int) -> list[Streams]:
        """Ways to run ``requests`` requests in flight on ``feeds``, one ``Streams`` per setting to measure
        (``requests`` 0: the backend's optimum, where it has one). By default, where the runner has a device path:
        one CUDA stream and host thread per request, inputs already on the device (``torch.cuda.stream``)."""
        count = max(1, requests)
        if not self.device.startswith("cuda") or self.device_callable(feeds[0]) is None:
            raise NotSupported(f"{self.name} runs one request at a time")
        import torch

        devices = [self.device_callable(feeds[k % len(feeds)]) for k in range(count)]
        streams = [torch.cuda.Stream() for _ in range(count)]

        def on_stream(k: int) -> Callable[[int], Any]:
            def call(i: int) -> Any:
                with torch.cuda.stream(streams[k]):
                    return devices[k]()  # type: ignore[misc]

            return call

        calls = [on_stream(k) for k in range(count)]
        mode = "CUDA streams, one host thread each"
        return [Streams(calls, [s.synchronize for s in streams], mode, count, count, 1)]

    @abc.abstractmethod
    def input_specs(self) -> list[TensorSpec]:
        """The inputs this runner accepts (valid only while active)."""

    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _deactivate(self) -> None:
        """Release what ``_activate`` acquired; also called after a failed ``_activate``, so tolerate partial state."""

    @abc.abstractmethod
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={self.device!r}, precision={self.precision!r})"
