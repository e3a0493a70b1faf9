"""Numerical parity between a runner and a reference, per output, with tolerances per precision.

An output passes when it has no NaN or Inf, its max absolute error is within ``max_abs_rel`` × max |reference|, its
worst per-sample cosine similarity is at least ``min_cosine``, and its top-1 agreement is at least ``min_top1``.
Every figure is reported, including the smallest relative tolerance that would have passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rbench.data import ImageSet, Preprocess, builtin_photos, preprocess_batch, random_inputs
from rbench.errors import BadInputError
from rbench.precisions import Tolerance, get_precision
from rbench.runtime.base import Runner
from rbench.runtime.registry import DEFAULT_BACKEND

if TYPE_CHECKING:
    from rbench.export.artifact import Artifact

__all__ = ["OutputStats", "ParityReport", "Tolerance", "artifact_parity", "check_parity", "compare", "tolerance_for"]


def tolerance_for(precision: str, family: str | None = None) -> Tolerance:
    """The bounds of ``precision`` (for a model family where it has its own, measured ones)."""
    return get_precision(precision).bounds(family)


@dataclass(frozen=True)
class OutputStats:
    """How far one output is from its reference."""

    max_abs: float
    mean_abs: float
    p99_abs: float
    max_rel: float
    ref_max_abs: float
    min_cosine: float
    top1: float
    top5: float
    nan: int
    inf: int

    @property
    def min_passing_rel(self) -> float:
        """The smallest ``max_abs_rel`` that would have passed."""
        return self.max_abs / self.ref_max_abs if self.ref_max_abs else float(self.max_abs > 0) * np.inf

    def failing(self, tol: Tolerance, bounds: bool = True) -> dict[str, str]:
        """Figure name → "figure vs bound" for each figure that fails ``tol``; with ``bounds=False`` only NaN/Inf."""
        out = {}
        if self.nan or self.inf:
            out["nan"] = f"{self.nan} NaN and {self.inf} Inf"
        if not bounds:
            return out
        if not self.max_abs <= tol.max_abs_rel * self.ref_max_abs:
            out["max_abs"] = f"max abs error {self.min_passing_rel:.3g} x max|ref| > {tol.max_abs_rel:g} x max|ref|"
        if not self.min_cosine >= tol.min_cosine:
            out["cosine"] = f"cosine {_fig(self.min_cosine)} < {tol.min_cosine:g}"
        if not self.top1 >= tol.min_top1:
            out["top1"] = f"top-1 agreement {self.top1:.1%} < {tol.min_top1:.0%}"
        return out


def _fig(value: float) -> str:
    """A cosine with enough nines to see how far from 1 it is (0.99987, 0.9999964), never 17 digits."""
    if not np.isfinite(value) or value >= 1 or value <= 0.9:
        return f"{value:.4f}"
    nines = int(np.floor(-np.log10(1 - value)))
    return f"{value:.{max(5, nines + 2)}f}"


def sig(value: float, digits: int = 6) -> float:
    """``value`` rounded to ``digits`` significant digits, for JSON that people read."""
    return float(f"{value:.{digits}g}") if np.isfinite(value) else value


def compare(reference: np.ndarray, output: np.ndarray) -> OutputStats:
    """Error statistics of ``output`` against ``reference`` (both ``[batch, ...]``)."""
    if reference.shape != output.shape:
        raise BadInputError(f"output shape {list(output.shape)} differs from reference {list(reference.shape)}")
    ref = reference.astype(np.float64).reshape(len(reference), -1)
    out = output.astype(np.float64).reshape(len(output), -1)
    finite = np.isfinite(out)
    err = np.where(finite, np.abs(out - ref), np.inf)
    denom = np.maximum(np.abs(ref), np.finfo(np.float32).tiny)
    safe_out = np.where(finite, out, 0.0)
    cos = (ref * safe_out).sum(1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(safe_out, axis=1), 1e-30)
    k = min(5, ref.shape[1])
    top_ref = np.argsort(-ref, axis=1)[:, :k]
    top_out = np.argsort(-safe_out, axis=1)[:, :k]
    return OutputStats(
        max_abs=float(err.max()),
        mean_abs=float(err.mean()),
        p99_abs=float(np.percentile(err, 99)),
        max_rel=float((err / denom).max()),
        ref_max_abs=float(np.abs(ref).max()),
        min_cosine=float(cos.min()) if finite.all() else float("nan"),
        top1=float((top_ref[:, 0] == top_out[:, 0]).mean()),
        top5=float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top_ref, top_out, strict=True)])),
        nan=int(np.isnan(output).sum()),
        inf=int(np.isinf(output).sum()),
    )


@dataclass
class ParityReport:
    """Per input set and output: statistics, failing figures and a verdict; ``passed`` only if every one passed."""

    runner: str
    reference: str
    precision: str
    tolerance: Tolerance
    stats: dict[str, dict[str, OutputStats]] = field(default_factory=dict)
    failing: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # set -> output -> figure -> why
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)  # input set -> {"reference", "runner"}
    missing: list[str] = field(default_factory=list)  # outputs the runner did not return

    @property
    def failures(self) -> list[str]:
        """One line per failing figure: precision, input set, output, the figure and its bound."""
        lines = [f"{self.precision} {m}: missing from {self.runner}" for m in self.missing]
        for set_name, outputs in self.failing.items():
            for out_name, figures in outputs.items():
                lines += [f"{self.precision} {set_name}/{out_name}: {why}" for why in figures.values()]
        return lines

    @property
    def passed(self) -> bool:
        return not self.failures

    def verdict(self, set_name: str) -> str:
        """``pass``, ``FAIL`` or ``not judged`` (a set outside the tolerance's ``checked`` that has no NaN/Inf)."""
        if any(self.failing.get(set_name, {}).values()):
            return "FAIL"
        return "pass" if set_name in self.tolerance.checked else "not judged"

    def to_dict(self) -> dict:
        return {
            "runner": self.runner,
            "reference": self.reference,
            "precision": self.precision,
            "passed": self.passed,
            "tolerance": {**asdict(self.tolerance), "checked": list(self.tolerance.checked)},
            "failures": self.failures,
            "accuracy": {k: {n: sig(v) for n, v in acc.items()} for k, acc in self.accuracy.items()},
            "inputs": {
                name: {
                    "verdict": self.verdict(name),
                    "outputs": {
                        out: {
                            **{k: sig(v) if isinstance(v, float) else v for k, v in asdict(s).items()},
                            "min_passing_rel": sig(s.min_passing_rel),
                            "failing": sorted(self.failing.get(name, {}).get(out, {})),
                        }
                        for out, s in outs.items()
                    },
                }
                for name, outs in self.stats.items()
            },
        }


def check_parity(
    runner: Runner,
    reference: Runner,
    inputs: Mapping[str, Mapping[str, np.ndarray]],
    tolerance: Tolerance,
    labels: Mapping[str, np.ndarray] | None = None,
) -> ParityReport:
    """Run both active runners on every named input set and compare every output.

    Args:
        runner: the runner under test.
        reference: the FP32 reference (eager, unfolded PyTorch).
        inputs: input-set name (``"random"``, ``"photos"``) to feed.
        tolerance: the bounds every output must meet.
        labels: class labels of an input set, where it has them: each runner's top-1 accuracy is reported.
    """
    report = ParityReport(runner.name, reference.name, runner.precision, tolerance)
    for set_name, feed in inputs.items():
        expected = infer_in_batches(reference, feed)
        actual = infer_in_batches(runner, feed)
        report.stats[set_name], report.failing[set_name] = {}, {}
        for out_name, ref in expected.items():
            if out_name not in actual:
                report.missing.append(f"{set_name}/{out_name}")
                continue
            stats = compare(ref, actual[out_name])
            report.stats[set_name][out_name] = stats
            report.failing[set_name][out_name] = stats.failing(tolerance, bounds=set_name in tolerance.checked)
        if labels is not None and set_name in labels:
            first = next(iter(expected))
            report.accuracy[set_name] = {
                "reference": top1_accuracy(expected[first], labels[set_name]),
                "runner": top1_accuracy(actual[first], labels[set_name]),
            }
    return report


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    if len(logits) != len(labels):
        raise BadInputError(f"{len(labels)} labels for {len(logits)} images")
    return float((logits.argmax(axis=1) == labels).mean())


def infer_in_batches(runner: Runner, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``runner.infer`` on FP32 data, cast to the runner's input dtypes (an FP16-I/O model) and split into its fixed
    batch size where it has one (a static-batch model) or into the largest batch its profile allows (a TensorRT
    engine); outputs come back as FP32."""
    dtypes = {s.name: s.dtype for s in runner.input_specs()}
    feed = {k: v.astype(dtypes.get(k, v.dtype), copy=False) for k, v in feed.items()}
    outputs = _infer_in_batches(runner, feed)
    return {k: v.astype(np.float32, copy=False) for k, v in outputs.items()}


def _infer_in_batches(runner: Runner, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    specs = runner.input_specs()
    fixed = {s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], int)}
    limit = min((s.batch_range[1] for s in specs if s.batch_range), default=None)
    total = len(next(iter(feed.values())))
    if fixed and fixed != {total}:
        size = fixed.pop()
        if total % size:
            raise BadInputError(f"{runner.name} takes batches of {size}; {total} samples do not split evenly")
    elif limit is not None and total > limit:
        size = limit  # a TensorRT profile's largest batch
    else:
        return runner.infer(feed)
    parts = [runner.infer({k: v[i : i + size] for k, v in feed.items()}) for i in range(0, total, size)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def parity_inputs(
    preprocess: Preprocess,
    input_name: str = "input",
    seed: int = 0,
    random_count: int = 4,
    images: Mapping[str, np.ndarray] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """The two input sets of a parity check: seeded random tensors, and real photos preprocessed the ImageNet way.

    ``images`` replaces the built-in photos (``rbench.data.load_images`` reads a user's folder).
    """
    photos = images if images is not None else builtin_photos()
    shape = (3, preprocess.size, preprocess.size)
    return {
        "random": {input_name: random_inputs(random_count, shape, seed)},
        "photos": {input_name: preprocess_batch(dict(photos), preprocess)},
    }


def artifact_parity(
    artifact: Artifact,
    backend: str = DEFAULT_BACKEND,
    precision: str = "fp32",
    images: ImageSet | None = None,
    tolerance: Tolerance | None = None,
) -> ParityReport:
    """Parity of one backend and precision of an artifact against its unfolded FP32 PyTorch model.

    ``images`` replace the built-in photos; where they have labels, top-1 accuracy figures are added.
    """
    from rbench.bench.plan import runner_for
    from rbench.runtime import TorchRunner

    tolerance = tolerance or tolerance_for(precision, artifact.bounds_family)
    runner = runner_for(artifact, backend, precision)
    reference = TorchRunner(artifact.reference_model, artifact.input_shape)
    inputs = parity_inputs(artifact.preprocess, artifact.input_name, images=images.images if images else None)
    labels = {"photos": images.labels} if images is not None and images.labels is not None else None
    with runner, reference:
        return check_parity(runner, reference, inputs, tolerance, labels)


def check_backend(precision: str) -> str:
    """Where the export checks a precision's file: ONNX Runtime's CPU provider, or, for a file it does not run (an
    OpenVINO IR), the first CPU backend that does."""
    from rbench.runtime.registry import BACKENDS

    if precision in BACKENDS[DEFAULT_BACKEND].precisions:
        return DEFAULT_BACKEND
    return next(name for name, spec in BACKENDS.items() if spec.device == "cpu" and precision in spec.precisions)


def export_artifact(*args: Any, **kwargs: Any) -> Any:
    """``rbench.export.pipeline.export_artifact`` with every precision checked on ONNX Runtime against PyTorch
    (the exporter is handed this layer's parity check; it does not import it). Each graph ships as its quantizer
    made it: ``rbench.bench.exporting.export_artifact`` adds the accuracy control users get."""
    from rbench.export.pipeline import export_artifact as export

    kwargs.setdefault(
        "parity", lambda artifact, precision: artifact_parity(artifact, check_backend(precision), precision)
    )
    return export(*args, **kwargs)
