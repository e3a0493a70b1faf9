"""The one planner: (artifact, backends, precisions, device) -> rows, each with its runner factory or the reason it
cannot run here, all from the backends' specs (``rbench.runtime.registry``).

Every row records what it asked for (backend, precision) and, once active, what actually executed; nothing is
substituted silently: a backend that cannot run a precision is a row that says "skipped: <reason>", and an unknown
backend is bad input, never another backend. ``runner_for`` gives parity, eval and predict their runners from the
same specs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rbench.errors import BadInputError, EnvironmentProblem
from rbench.export.artifact import Artifact
from rbench.precisions import get_precision
from rbench.runtime import BACKENDS, BackendSpec, RunContext, Runner, TorchRunner, get_backend
from rbench.runtime.spec import WEIGHTS_FILE


@dataclass
class RowPlan:
    backend: str
    precision: str  # as requested
    variant: str  # what distinguishes rows of one backend and precision
    factory: Callable[[], Runner] | None
    skip: str | None = None
    file: str | None = None  # the artifact file it runs
    baseline: bool = False
    spec: BackendSpec | None = None  # None: the eager FP32 baseline, which is the planner's own

    @property
    def label(self) -> str:
        return " ".join(p for p in (self.backend, self.variant, self.precision) if p)


def plan_rows(
    artifact: Artifact, backends: list[str], precisions: list[str], device: str, threads: int
) -> list[RowPlan]:
    """The rows of a run, the FP32 eager baseline first (every speedup is relative to it)."""
    context = RunContext(device, threads, build_engine=_build_engine)
    rows = [_torch_eager_baseline(artifact, context)]
    for backend in backends:
        spec = get_backend(backend)
        for name in precisions:
            precision = get_precision(name)
            if precision.variant_of is not None and name not in spec.precisions:
                continue  # a variant tuned for another backend: no row here, and no skip to report
            if precision.made_by == "debug" and name not in artifact.precisions:
                continue  # written by rbench debug precision --fix, only where a user asked for it
            rows.append(_row(artifact, spec, name, context))
    return rows


def why_not(spec: BackendSpec, precision: str, device: str) -> tuple[type[Exception], str] | None:
    """Why ``spec`` cannot run ``precision`` here, with the error it is when a command needs that very row: a
    precision the backend has no path for is bad input, what this machine lacks an environment problem. A GPU
    backend on a CPU run says so first, for every precision."""
    if (absent := spec.no_device(device)) is not None:
        return EnvironmentProblem, absent
    if precision not in spec.precisions:
        runs = [name for name, other in BACKENDS.items() if precision in other.precisions]
        lack = spec.lacks.get(precision, f"{spec.name} has no {precision} path")
        return BadInputError, f"{lack}; {precision} runs on {', '.join(runs) or 'no backend'}"
    reason = spec.why_not(precision, device)
    return (EnvironmentProblem, reason) if reason else None


def runner_for(
    artifact: Artifact, backend: str, precision: str = "fp32", device: str | None = None, threads: int = 0
) -> Runner:
    """The runner of ``backend`` for one precision of an artifact (not yet active), for parity, eval and predict,
    on ``device`` (default: the backend's own). A precision the backend has no path for is bad input here; what
    this machine lacks (a library, a device) its activation says, and a TensorRT engine must exist already."""
    spec = get_backend(backend)
    precision = get_precision(precision).name
    refused = why_not(spec, precision, device or spec.device)
    if refused is not None and refused[0] is BadInputError:
        raise BadInputError(refused[1])
    return spec.build(artifact, precision, RunContext(device or spec.device, threads))


def _row(artifact: Artifact, spec: BackendSpec, precision: str, context: RunContext) -> RowPlan:
    refused = why_not(spec, precision, context.device)
    if refused is not None:
        return RowPlan(spec.name, precision, spec.variant, None, refused[1], spec=spec)
    return RowPlan(
        spec.name,
        precision,
        spec.variant,
        lambda: spec.build(artifact, precision, context),
        file=spec.file(precision),
        spec=spec,
    )


def _torch_eager_baseline(artifact: Artifact, context: RunContext) -> RowPlan:
    return RowPlan(
        "torch",
        "fp32",
        "eager",
        lambda: TorchRunner(
            artifact.reference_model, artifact.input_shape, device=context.device, threads=context.threads
        ),
        file=WEIGHTS_FILE,
        baseline=True,
    )


def _build_engine(artifact: Artifact, precision: str) -> None:
    """A benchmark row's TensorRT engine, reused while its key (ONNX, settings, TensorRT, GPU) holds."""
    from rbench.export.engine import BuildConfig, build_engine

    build_engine(artifact, BuildConfig(precision))
