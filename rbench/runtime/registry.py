"""The one registry of backends: every runner module's specs, in the order runs list them.

Adding a backend is its runner module, declaring its ``SPECS`` (``rbench.runtime.spec.BackendSpec``), and one name
in ``MODULES`` below; the planner, the CLI's choices, the docs and the tests all derive from this dict.
"""

from __future__ import annotations

from rbench.errors import unknown_choice
from rbench.runtime import openvino_runner, ort_runner, torch_runner, trt_runner
from rbench.runtime.spec import BackendSpec

MODULES = (torch_runner, ort_runner, openvino_runner, trt_runner)

#: CPU backends first, then the GPU ones, each in its module's order
BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec for spec in sorted((s for module in MODULES for s in module.SPECS), key=lambda s: s.device != "cpu")
}

#: What parity, eval and predict run when no backend is named, and what the export's own parity check runs on: the
#: artifact's ONNX on ONNX Runtime's CPU provider, which every machine has.
DEFAULT_BACKEND = "ort"


def get_backend(name: str) -> BackendSpec:
    """The spec of ``name``; an unknown name is bad input (exit 2) that lists the valid ones."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise unknown_choice("backend", name, BACKENDS) from None
