"""Numerical parity between a runner and a reference, per output, with tolerances per precision.

An output passes when it has no NaN or Inf, its max absolute error is within ``max_abs_rel`` × max |reference|, its
worst per-sample cosine similarity is at least ``min_cosine``, and its top-1 agreement is at least ``min_top1``.
Every figure is reported, including the smallest relative tolerance that would have passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rbench.data import Preprocess, builtin_photos, preprocess_batch, random_inputs
from rbench.errors import BadInputError
from rbench.runtime.base import Runner

if TYPE_CHECKING:
    from rbench.export.artifact import Artifact


@dataclass(frozen=True)
class Tolerance:
    """Bounds an output must meet against the FP32 PyTorch reference."""

    max_abs_rel: float  # max |out - ref| <= max_abs_rel * max |ref|
    min_cosine: float  # worst per-sample cosine similarity
    min_top1: float  # fraction of samples with the same argmax
    #: Input sets the bounds apply to; NaN/Inf fail on every set. Reduced precisions are judged on real photos:
    #: random tensors are far from any image, and INT8 ranges calibrated on photos clip them.
    checked: tuple[str, ...] = ("random", "photos")


#: Default tolerances per precision; the README's table explains each.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs_rel=1e-4, min_cosine=0.99999, min_top1=1.0),
    "fp16": Tolerance(max_abs_rel=1e-2, min_cosine=0.9999, min_top1=1.0),
    "int8": Tolerance(max_abs_rel=0.15, min_cosine=0.99, min_top1=0.9, checked=("photos",)),
}


def tolerance_for(precision: str) -> Tolerance:
    try:
        return TOLERANCES[precision]
    except KeyError:
        raise BadInputError(f"unsupported precision {precision!r}; choose from {', '.join(TOLERANCES)}") from None


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

    def failures(self, tol: Tolerance, bounds: bool = True) -> list[str]:
        """What fails ``tol``; with ``bounds=False`` only NaN/Inf count."""
        out = []
        if self.nan or self.inf:
            out.append(f"{self.nan} NaN and {self.inf} Inf")
        if not bounds:
            return out
        if not self.max_abs <= tol.max_abs_rel * self.ref_max_abs:
            out.append(f"max abs error {self.max_abs:.3g} > {tol.max_abs_rel:g} x max|ref| {self.ref_max_abs:.3g}")
        if not self.min_cosine >= tol.min_cosine:
            out.append(f"cosine {self.min_cosine:.6f} < {tol.min_cosine}")
        if not self.top1 >= tol.min_top1:
            out.append(f"top-1 agreement {self.top1:.1%} < {tol.min_top1:.0%}")
        return out


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
    """Per input set and output: statistics and failures; ``passed`` only if every one passed."""

    runner: str
    reference: str
    precision: str
    tolerance: Tolerance
    stats: dict[str, dict[str, OutputStats]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)  # input set -> {"reference", "runner"}

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {
            "runner": self.runner,
            "reference": self.reference,
            "precision": self.precision,
            "tolerance": {**asdict(self.tolerance), "checked": list(self.tolerance.checked)},
            "passed": self.passed,
            "failures": self.failures,
            "accuracy": self.accuracy,
            "inputs": {
                name: {out: {**asdict(s), "min_passing_rel": s.min_passing_rel} for out, s in outs.items()}
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
        report.stats[set_name] = {}
        for out_name, ref in expected.items():
            if out_name not in actual:
                report.failures.append(f"{set_name}/{out_name}: missing from {runner.name}")
                continue
            stats = compare(ref, actual[out_name])
            report.stats[set_name][out_name] = stats
            failures = stats.failures(tolerance, bounds=set_name in tolerance.checked)
            report.failures += [f"{set_name}/{out_name}: {f}" for f in failures]
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

    ``images`` replaces the built-in photos (``rbench.data.load_image_folder`` reads a user's folder).
    """
    photos = images if images is not None else builtin_photos()
    shape = (3, preprocess.size, preprocess.size)
    return {
        "random": {input_name: random_inputs(random_count, shape, seed)},
        "photos": {input_name: preprocess_batch(dict(photos), preprocess)},
    }


def artifact_parity(
    artifact: Artifact,
    backend: str = "ort",
    precision: str = "fp32",
    images: Mapping[str, np.ndarray] | None = None,
    tolerance: Tolerance | None = None,
    labels: np.ndarray | None = None,
) -> ParityReport:
    """Parity of one backend and precision of an artifact against its unfolded FP32 PyTorch model.

    ``images`` replace the built-in photos; ``labels`` (one per image) add top-1 accuracy figures.
    """
    from rbench.runtime import TorchRunner, runner_for

    tolerance = tolerance or tolerance_for(precision)
    runner = runner_for(artifact, backend, precision)
    model = artifact.reference_model()
    reference = TorchRunner(model, artifact.input_shape)
    inputs = parity_inputs(artifact.preprocess, artifact.input_name, images=images)
    with runner, reference:
        return check_parity(runner, reference, inputs, tolerance, None if labels is None else {"photos": labels})
