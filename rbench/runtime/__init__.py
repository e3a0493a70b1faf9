"""Backends behind one ``Runner`` interface: eager PyTorch, ONNX Runtime (and TensorRT where a GPU exists)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rbench.errors import BadInputError
from rbench.runtime.base import Runner, TensorSpec, validate_feed
from rbench.runtime.ort_runner import OrtRunner
from rbench.runtime.torch_runner import TorchRunner

if TYPE_CHECKING:
    from rbench.export.artifact import Artifact

__all__ = ["BACKENDS", "OrtRunner", "Runner", "TensorSpec", "TorchRunner", "runner_for", "validate_feed"]

BACKENDS = ("ort", "torch")


def runner_for(
    artifact: Artifact,
    backend: str,
    precision: str = "fp32",
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> Runner:
    """The runner of ``backend`` for one precision of an artifact (not yet active).

    ``ort`` runs that precision's ONNX file; ``torch`` runs the artifact's weights eagerly with BatchNorm folded.
    """
    if backend == "ort":
        return OrtRunner(artifact.onnx_path(precision), providers=providers, precision=precision)
    if backend == "torch":
        return TorchRunner(artifact.reference_model, artifact.input_shape, folded=True, precision=precision)
    raise BadInputError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
