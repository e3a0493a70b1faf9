"""A backend is one spec, declared beside its runner: what it consumes, the precisions it runs and how, why it
cannot run something here, how its runner is built, and which optional abilities it has.

The runtime knows runners and files, not artifacts: a spec builds its runner from a ``ModelSource`` (what an
artifact offers a backend: its files and its models), which ``rbench.export.artifact.Artifact`` satisfies. The one
planner (``rbench.bench.plan``) turns specs into rows; nothing else tests a backend's name.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from rbench.precisions import PRECISIONS, get_precision

#: The artifact's file of PyTorch weights, and the folder TensorRT engines go to.
WEIGHTS_FILE = "weights.safetensors"
ENGINE_DIR = "engines"


class Consumes(str, Enum):
    """Which of an artifact's files a backend runs."""

    WEIGHTS = "weights"  # the PyTorch weights (the model is built and folded from them)
    ONNX = "onnx"  # the precision's ONNX file
    ENGINE = "engine"  # a TensorRT engine built from the precision's ONNX file


class ModelSource(Protocol):
    """What a backend needs of an artifact; ``rbench.export.artifact.Artifact`` is one."""

    path: Path

    @property
    def input_shape(self) -> tuple[int, int, int]: ...

    @property
    def input_name(self) -> str: ...

    def onnx_path(self, precision: str) -> Path: ...

    def folded_model(self) -> Any: ...

    def engine_file(self, precision: str) -> Path: ...

    def source_sha256(self, precision: str) -> str | None: ...

    def calibration_images(self) -> Any: ...


@dataclass(frozen=True)
class RunContext:
    """Where and how a runner runs: its device, its threads (0: every core), and ``build_engine``, which a
    benchmark row is handed by the planner to build a missing TensorRT engine (or reuse its cache) as part of its
    cold start; without it a missing engine is refused with the command that builds it (parity, eval, predict)."""

    device: str = "cpu"
    threads: int = 0
    build_engine: Callable[[Any, str], Any] | None = None


@dataclass(frozen=True)
class Executed:
    """What a runner actually executed, read back from it: the precision its arithmetic ran in (which decides the
    peak a row is held to) and the same in words for reports."""

    precision: str
    detail: str


#: (source, precision, context) -> a ``rbench.runtime.base.Runner``, not yet active
Builder = Callable[[ModelSource, str, RunContext], Any]
Check = Callable[[str, str], "str | None"]


def _no_check(precision: str, device: str) -> str | None:
    return None


@dataclass(frozen=True)
class BackendSpec:
    """One backend. ``precisions`` maps each precision it runs to how it runs it (a file, a setting)."""

    name: str
    device: str  # "cpu" or "cuda": where it runs
    extra: str  # pip install 'rbench[<extra>]' brings what it needs
    description: str
    consumes: Consumes
    precisions: Mapping[str, str]
    build: Builder
    needs: tuple[str, ...] = ()  # the modules it imports (checked with find_spec, never imported here)
    unavailable: Check = _no_check  # a reason it cannot run (precision, device) here, beyond the above
    variant: str = ""  # what tells its rows apart from another backend's in reports
    streams: bool = False  # requests in flight (--streams): Runner.stream_callables
    device_timing: bool = False  # compute-only CUDA timing: Runner.device_callable
    marker: str = "o"  # its plots' marker
    #: Why it has no path for a precision it does not run, where there is more to say than that
    lacks: Mapping[str, str] = field(default_factory=dict)
    #: The Triton Inference Server backend that serves what this one runs ("": none; rbench deploy triton)
    triton: str = ""

    def file(self, precision: str) -> str:
        """The artifact file a row of this precision runs, relative to the artifact."""
        if self.consumes is Consumes.WEIGHTS:
            return WEIGHTS_FILE
        if self.consumes is Consumes.ENGINE:
            return f"{ENGINE_DIR}/model.{precision}.engine"
        return get_precision(exported(precision)).file

    def no_device(self, device: str) -> str | None:
        """Why it cannot run on ``device`` at all (a GPU backend on a CPU run), or ``None``."""
        if self.device == "cuda" and device != "cuda":
            return "no CUDA device here (run with --device cuda on a GPU machine)"
        return None

    def why_not(self, precision: str, device: str) -> str | None:
        """Why a row of ``precision`` (one of ``precisions``) cannot run here, or ``None``: in that order, the
        device, a missing library (naming its extra), then the backend's own reason."""
        if (absent := self.no_device(device)) is not None:
            return absent
        missing = next((m for m in self.needs if importlib.util.find_spec(m) is None), None)
        if missing is not None:
            return f"{missing} is not installed: pip install 'rbench[{self.extra}]'"
        return self.unavailable(precision, device)


def exported(precision: str) -> str:
    """The precision whose ONNX file a row of ``precision`` reads (bf16 is a setting on the FP32 file)."""
    return precision if PRECISIONS[precision].exported else "fp32"
