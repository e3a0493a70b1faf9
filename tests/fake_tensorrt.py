"""A stand-in for the ``tensorrt`` module: enough of its API to drive rbench's builder and runner checks on a CPU.

It records what rbench asked for, so tests can assert the strongly-typed flag, the profile, the workspace and the
timing cache. Every public name it defines is checked against the published TensorRT 11 bindings
(``tests/runtime/test_tensorrt_api.py``), so it cannot drift into an API that does not exist. Names starting with an
underscore are the fake's own bookkeeping.
"""

from __future__ import annotations

import enum
from typing import Any

__version__ = "11.4.0.106"

_state: dict[str, Any] = {"builds": 0, "parse_ok": True, "plan_ok": True, "deserialize_ok": True, "last": None}


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 5  # deliberately not 0 or 1: rbench must shift by the enum's value, never hard-code it


class BuilderFlag(enum.Enum):
    TF32 = 6


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class ILogger:
    class Severity(enum.Enum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass


class Logger(ILogger):
    WARNING = ILogger.Severity.WARNING

    def __init__(self, min_severity: Any = ILogger.Severity.WARNING) -> None:
        self.min_severity = min_severity


class IProfiler:
    def __init__(self) -> None:
        pass


class IProgressMonitor:
    def __init__(self) -> None:
        pass


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self._flags = flags
        self._source: str | None = None


class IOptimizationProfile:
    def __init__(self) -> None:
        self._shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, input: str, min: tuple[int, ...], opt: tuple[int, ...], max: tuple[int, ...]) -> None:
        self._shapes[input] = (tuple(min), tuple(opt), tuple(max))


class ITimingCache:
    def __init__(self, data: bytes) -> None:
        self._data = data or b"timing:"

    def serialize(self) -> bytes:
        return self._data + b"+"


class IBuilderConfig:
    def __init__(self) -> None:
        self.builder_optimization_level = 3
        self.progress_monitor: Any = None
        self._pools: dict[Any, int] = {}
        self._profiles: list[IOptimizationProfile] = []
        self._timing: ITimingCache | None = None
        self._timing_loaded = b""
        self._ignore_mismatch: bool | None = None
        self._flags = {BuilderFlag.TF32}  # TensorRT's default

    def clear_flag(self, flag: BuilderFlag) -> None:
        self._flags.discard(flag)

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self._pools[pool] = pool_size

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache | None:
        data = bytes(serialized_timing_cache)
        if data and not data.startswith(b"timing:"):
            return None  # what TensorRT does with a cache it cannot read, after logging an error
        self._timing_loaded = data
        return ITimingCache(data)

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self._timing, self._ignore_mismatch = cache, ignore_mismatch
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self._timing


class Builder:
    def __init__(self, logger: ILogger) -> None:
        self._logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
        _state["last"] = (network, config)
        if not _state["plan_ok"]:
            self._logger.log(ILogger.Severity.ERROR, "out of memory while building (fake)")
            return None
        _state["builds"] += 1
        monitor = config.progress_monitor
        if monitor is not None:
            monitor.phase_start("Building engine", None, 2)
            for step in range(2):
                monitor.step_complete("Building engine", step)
            monitor.phase_finish("Building engine")
        shapes = config._profiles[0]._shapes
        return f"plan:{network._source}:{shapes}:{config.builder_optimization_level}".encode()


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        self._network = network

    def parse_from_file(self, model: str) -> bool:
        self._network._source = model
        return _state["parse_ok"]

    @property
    def num_errors(self) -> int:
        return 0 if _state["parse_ok"] else 1

    def get_error(self, index: int) -> str:
        return "node Conv_0: unsupported data type (fake)"


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        pass

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> Any:
        return object() if _state["deserialize_ok"] else None
