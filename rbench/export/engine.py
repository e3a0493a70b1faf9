"""``rbench build``: a TensorRT engine from one precision of an artifact, with a sidecar and a keyed timing cache.

The network is strongly typed: what runs in FP16 or INT8 is what the ONNX graph says (its types and Q/DQ nodes).
No precision builder flag and no calibrator is used, so the same code builds on TensorRT 10 and 11.

The engine is cached in the artifact (``engines/model.<precision>.engine``). It is rebuilt only when its key changes:
the source ONNX's SHA-256, the build settings, the TensorRT version or the compute capability. The timing cache is a
file per TensorRT version and compute capability, so caches of different GPUs are never merged; a corrupt one is
reported and replaced.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from rbench._io import sha256_bytes, write_bytes_atomic, write_json_atomic
from rbench.errors import ArtifactError, BadInputError, EnvironmentProblem
from rbench.export.artifact import Artifact
from rbench.runtime.trt_common import (
    DEFAULT_TIMING_CACHE_DIR,
    Platform,
    check_compatible,
    import_tensorrt,
    make_sidecar,
    probe_platform,
    read_sidecar,
    sidecar_path,
    verify_engine_file,
)


@dataclass(frozen=True)
class BuildConfig:
    """Build settings; everything here except ``timing_cache_dir`` and ``force`` is part of the engine's key.

    The batch profile's defaults (1/8/32) cover single-image latency and batched throughput. ``tf32`` lets FP32
    convolutions round their inputs to 10-bit mantissas (TensorRT's default); rbench turns it off so that an FP32
    engine is FP32, and FP32 parity bounds mean the same on every backend.
    """

    precision: str = "fp16"
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    workspace_mib: int = 4096
    optimization_level: int = 3
    tf32: bool = False
    timing_cache_dir: Path = DEFAULT_TIMING_CACHE_DIR
    force: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise BadInputError(
                f"the batch profile needs 1 <= min <= opt <= max, got min {self.min_batch}, "
                f"opt {self.opt_batch}, max {self.max_batch}"
            )
        if not 0 <= self.optimization_level <= 5:
            raise BadInputError(f"builder optimization level must be 0..5, got {self.optimization_level}")
        if self.workspace_mib < 1:
            raise BadInputError(f"workspace must be at least 1 MiB, got {self.workspace_mib}")

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("timing_cache_dir", "force")}


@dataclass
class BuildResult:
    engine: Path
    sidecar: dict[str, Any]
    cached: bool
    seconds: float
    timing_cache: Path
    notes: list[str] = field(default_factory=list)


class BuildProgress(Protocol):
    """What the builder reports while TensorRT works (the CLI draws rich progress bars from it)."""

    def phase_start(self, name: str, parent: str | None, steps: int) -> None: ...
    def step(self, name: str, step: int) -> None: ...
    def phase_finish(self, name: str) -> None: ...


def timing_cache_path(directory: Path, platform: Platform) -> Path:
    return Path(directory) / f"timing-trt{platform.tensorrt}-sm{platform.compute_capability.replace('.', '')}.cache"


def build_engine(
    artifact: Artifact,
    options: BuildConfig = BuildConfig(),
    progress: BuildProgress | None = None,
    warn: Callable[[str], None] = lambda message: print(f"warning: {message}", file=sys.stderr),
) -> BuildResult:
    """Build (or reuse) the engine of ``options.precision`` for this machine's TensorRT and GPU."""
    onnx_file = artifact.onnx_path(options.precision)  # verified against the manifest
    platform = probe_platform()
    static_batch, input_dtype = _onnx_input(onnx_file)
    if static_batch is not None:  # exported with --static-batch N: only the profile N/N/N fits
        options = replace(options, min_batch=static_batch, opt_batch=static_batch, max_batch=static_batch)
    source = {
        "artifact": artifact.path.name,
        "file": onnx_file.name,
        "sha256": artifact.manifest["precisions"][options.precision]["sha256"],
    }
    target = artifact.engine_path(options.precision)
    timing_file = timing_cache_path(options.timing_cache_dir, platform)
    start = time.perf_counter()
    if not options.force and _cache_hit(target, platform, source, options.settings()):
        return BuildResult(target, read_sidecar(target), True, time.perf_counter() - start, timing_file)

    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        warn(message)

    plan, timing = _build_plan(onnx_file, artifact, options, timing_file, progress, note)
    engine_bytes = bytes(plan)
    inputs = [
        {
            "name": artifact.input_name,
            "dtype": input_dtype,
            "shape": [options.opt_batch, *artifact.input_shape],
            "min_batch": options.min_batch,
            "max_batch": options.max_batch,
        }
    ]
    sidecar = make_sidecar(platform, source, options.settings(), inputs, sha256_bytes(engine_bytes))
    write_bytes_atomic(timing_file, bytes(timing.serialize()))
    write_bytes_atomic(target, engine_bytes)
    write_json_atomic(sidecar_path(target), sidecar)  # last: an engine without its sidecar is never loaded
    return BuildResult(target, sidecar, False, time.perf_counter() - start, timing_file, notes)


def _cache_hit(target: Path, platform: Platform, source: dict[str, Any], settings: dict[str, Any]) -> bool:
    """Whether the engine at ``target`` is intact and has exactly this key."""
    try:
        sidecar = read_sidecar(target)
        verify_engine_file(target, sidecar)
        check_compatible(sidecar, platform)
    except (BadInputError, ArtifactError):
        return False  # missing, damaged or foreign: build
    return sidecar["source"] == source and sidecar["settings"] == settings


def _onnx_input(onnx_file: Path) -> tuple[int | None, str]:
    """The static batch size of the model's input (``None`` when dynamic) and its dtype."""
    import onnx

    tensor_type = onnx.load(str(onnx_file), load_external_data=False).graph.input[0].type.tensor_type
    batch = tensor_type.shape.dim[0]
    dtype = "float16" if tensor_type.elem_type == onnx.TensorProto.FLOAT16 else "float32"
    return (batch.dim_value if batch.HasField("dim_value") else None), dtype


def _build_plan(
    onnx_file: Path,
    artifact: Artifact,
    options: BuildConfig,
    timing_file: Path,
    progress: BuildProgress | None,
    warn: Callable[[str], None],
) -> tuple[Any, Any]:
    """Parse, configure and build; returns the serialized engine and the updated timing cache."""
    trt = import_tensorrt()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"TensorRT {trt.__version__} cannot parse {onnx_file.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    config.builder_optimization_level = options.optimization_level
    if not options.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)  # a math mode, not a precision flag: valid in TensorRT 10 and 11
    profile = builder.create_optimization_profile()
    chw = tuple(artifact.input_shape)
    batches = (options.min_batch, options.opt_batch, options.max_batch)
    profile.set_shape(artifact.input_name, *((n, *chw) for n in batches))
    config.add_optimization_profile(profile)
    timing = _load_timing_cache(config, timing_file, warn)
    config.set_timing_cache(timing, False)  # ignore_mismatch=False: never use another device's timings
    monitor = _monitor(trt, progress) if progress is not None else None  # a local: TensorRT keeps no reference
    if monitor is not None:
        config.progress_monitor = monitor
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EnvironmentProblem(f"TensorRT failed to build {onnx_file.name}: {logger.last_error or 'see its log'}")
    return plan, config.get_timing_cache()


def _load_timing_cache(config: Any, path: Path, warn: Callable[[str], None]) -> Any:
    data = path.read_bytes() if path.is_file() else b""
    try:
        timing = config.create_timing_cache(data)
    except Exception:  # TensorRT raises its own untyped errors on a corrupt cache
        timing = None
    if timing is None:
        warn(f"timing cache {path} is corrupt or unreadable; starting a new one")
        timing = config.create_timing_cache(b"")
    return timing


def _logger(trt: Any) -> Any:
    """A TensorRT logger that prints warnings and keeps the last error for the exception message."""
    errors = (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR)

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.last_error = ""

        def log(self, severity: Any, msg: str) -> None:
            if severity in errors:
                self.last_error = msg
            if severity in (*errors, trt.ILogger.Severity.WARNING):
                print(f"TensorRT: {msg}", file=sys.stderr)

    return Logger()


def _monitor(trt: Any, progress: BuildProgress) -> Any:
    """Forward TensorRT's ``IProgressMonitor`` callbacks to ``progress``."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            progress.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            progress.step(phase_name, step)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            progress.phase_finish(phase_name)

    return Monitor()
