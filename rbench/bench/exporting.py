"""The export as users get it (``rbench export``, ``rbench run``, ``rbench.export_artifact``): every precision's
parity checked against PyTorch (``rbench.bench.parity``), and each INT8 graph held to its bounds on every CPU backend
here, with the fewest layers kept in FP32 where one misses them (``rbench.bench.debug.accuracy_control``)."""

from __future__ import annotations

from typing import Any


def export_artifact(*args: Any, **kwargs: Any) -> Any:
    """``rbench.export.pipeline.export_artifact`` with this layer's parity check and accuracy control (``control=None``:
    each graph shipped as its quantizer made it)."""
    from rbench.bench.debug import accuracy_control
    from rbench.bench.parity import artifact_parity, check_backend
    from rbench.bench.parity import export_artifact as checked

    reports: dict[tuple[str, str, str], Any] = {}

    def parity(artifact: Any, backend: str, precision: str) -> Any:
        """One check per backend and file: the control's ONNX Runtime check of an INT8 graph it keeps as made is
        the export's own parity check of it."""
        key = (backend, precision, artifact.manifest["precisions"][precision]["sha256"])
        if key not in reports:
            reports[key] = artifact_parity(artifact, backend, precision)
        return reports[key]

    kwargs.setdefault(
        "control", lambda artifact, precision, progress: accuracy_control(artifact, precision, progress, parity)
    )
    kwargs.setdefault("parity", lambda artifact, precision: parity(artifact, check_backend(precision), precision))
    return checked(*args, **kwargs)
