"""What the TensorRT builder and runner share: the lazy import, the platform probe and the engine sidecar.

An engine is native code for one TensorRT version on one GPU architecture; deserializing a foreign one returns
``None`` after a log line, or worse. So every engine travels with a sidecar JSON that says what it was built from and
for, and nothing is deserialized before that sidecar has been checked against the file and this machine.

Convention for the API-surface test (``tests/runtime/test_tensorrt_api.py``): in the TensorRT modules the names
``trt``, ``builder``, ``network``, ``parser``, ``config``, ``profile``, ``timing``, ``plan``, ``runtime``,
``engine`` and ``context`` only ever hold TensorRT objects, so every attribute read on them is a TensorRT name.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rbench._io import USER_CACHE_DIR, read_json_record, verify_sha256
from rbench.env import cuda_device, driver_version, package_version
from rbench.errors import ArtifactError, BadInputError, EnvironmentProblem, first_line, missing_dependency

DEFAULT_TIMING_CACHE_DIR = USER_CACHE_DIR / "tensorrt"
SIDECAR_SCHEMA = 1


def import_tensorrt() -> Any:
    """``import tensorrt``, or an ``EnvironmentProblem`` that says how to get it."""
    if importlib.util.find_spec("tensorrt") is None:
        raise missing_dependency("tensorrt", "gpu")
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # the bindings import, but the TensorRT libraries or the driver do not load
        raise EnvironmentProblem(
            f"tensorrt is installed but does not load ({first_line(exc)}); it needs the TensorRT libraries and an "
            "NVIDIA driver: pip install 'rbench[gpu]' on a machine with a GPU"
        ) from None
    return trt


def installed_tensorrt() -> str | None:
    """TensorRT's version from package metadata, known even where its libraries cannot load."""
    return package_version("tensorrt")


@dataclass(frozen=True)
class Platform:
    """The TensorRT version and GPU an engine is built for or run on."""

    tensorrt: str
    gpu: str
    compute_capability: str
    cuda: str
    driver: str

    def describe(self) -> str:
        return f"TensorRT {self.tensorrt} on {self.gpu} (compute capability {self.compute_capability})"


def probe_platform() -> Platform:
    """TensorRT's version and the first CUDA device, or an ``EnvironmentProblem`` saying which one is missing."""
    trt = import_tensorrt()
    gpu, capability, cuda = cuda_device()
    return Platform(trt.__version__, gpu, capability, cuda, driver_version())


def engine_readiness() -> tuple[bool, str]:
    """Whether this machine can build and run engines, and why not (for ``rbench doctor``)."""
    try:
        platform = probe_platform()
    except EnvironmentProblem as exc:
        return False, str(exc)
    return True, platform.describe()


# --- engine files and their sidecar ------------------------------------------------------------------------------


def sidecar_path(engine_file: str | os.PathLike[str]) -> Path:
    return Path(f"{engine_file}.json")


def make_sidecar(
    platform: Platform, source: dict[str, Any], settings: dict[str, Any], inputs: list[dict[str, Any]], engine_sha: str
) -> dict[str, Any]:
    return {
        "schema": SIDECAR_SCHEMA,
        "platform": asdict(platform),
        "source": source,
        "settings": settings,
        "inputs": inputs,
        "engine_sha256": engine_sha,
    }


def read_sidecar(engine_file: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar of an engine file; a missing engine or an unreadable sidecar is bad input (exit 2)."""
    engine_file = Path(engine_file)
    if not engine_file.is_file():
        raise BadInputError(f"engine not found: {engine_file} (build it with: rbench build ARTIFACT_DIR --precision …)")
    path = sidecar_path(engine_file)
    if not path.is_file():
        raise ArtifactError(
            f"rebuild required: {engine_file} has no sidecar {path.name}; what it was built for is unknown"
        )

    def require(sidecar: dict[str, Any]) -> None:
        _ = sidecar["platform"]["tensorrt"], sidecar["platform"]["compute_capability"], sidecar["engine_sha256"]
        _ = sidecar["source"]["sha256"][:12]
        _ = [(i["name"], i["dtype"], i["shape"], i["min_batch"], i["max_batch"]) for i in sidecar["inputs"]]

    return read_json_record(path, SIDECAR_SCHEMA, require, "engine sidecar")


def verify_engine_file(engine_file: str | os.PathLike[str], sidecar: dict[str, Any]) -> None:
    """Refuse an engine whose bytes are not the ones its sidecar recorded (exit 3)."""
    verify_sha256(engine_file, sidecar["engine_sha256"], "sidecar", "it was built")


def check_compatible(sidecar: dict[str, Any], here: Platform | str | None) -> None:
    """Refuse an engine built for another TensorRT version or GPU architecture (exit 3).

    ``here`` is this machine's platform, or just its TensorRT version (from package metadata, before any GPU is
    probed), or ``None`` when that is unknown too.
    """
    built = Platform(**sidecar["platform"])
    if isinstance(here, Platform):
        if (built.tensorrt, built.compute_capability) != (here.tensorrt, here.compute_capability):
            raise ArtifactError(f"rebuild required: built for {built.describe()}, running on {here.describe()}")
    elif here is not None and here != built.tensorrt:
        raise ArtifactError(f"rebuild required: built for {built.describe()}, running on TensorRT {here}")
