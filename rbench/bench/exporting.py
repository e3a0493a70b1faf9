"""The export as users get it (``rbench export``, ``rbench run``, ``rbench.export_artifact``): every precision's
parity checked against PyTorch (``rbench.bench.parity``), and each INT8 graph held to its bounds on every CPU backend
here, with the fewest layers kept in FP32 where one misses them (``rbench.bench.debug.accuracy_control``)."""

from __future__ import annotations

from typing import Any


def export_artifact(*args: Any, **kwargs: Any) -> Any:
    """``rbench.export.pipeline.export_artifact`` with this layer's parity check and accuracy control (``control=None``:
    each graph shipped as its quantizer made it)."""
    from rbench.bench.debug import accuracy_control
    from rbench.bench.parity import export_artifact as checked

    kwargs.setdefault("control", accuracy_control)
    return checked(*args, **kwargs)
