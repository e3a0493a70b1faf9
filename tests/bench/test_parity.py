from __future__ import annotations

import numpy as np
import pytest

from rbench.bench.parity import compare, tolerance_for
from rbench.errors import BadInputError
from rbench.runtime.base import Runner, TensorSpec


def _ref() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((6, 1000)).astype(np.float32) * 3


def test_identical_outputs_have_zero_error():
    ref = _ref()
    stats = compare(ref, ref.copy())
    assert stats.max_abs == 0 and stats.top1 == 1 and stats.top5 == 1 and stats.min_cosine == pytest.approx(1)
    assert stats.failing(tolerance_for("fp32")) == {}


def test_error_figures_are_exact():
    ref = _ref()
    out = ref.copy()
    out[2, 7] += 0.01
    stats = compare(ref, out)
    assert stats.max_abs == pytest.approx(0.01, rel=1e-4)
    assert stats.mean_abs == pytest.approx(0.01 / ref.size, rel=1e-3)
    assert stats.max_rel == pytest.approx(0.01 / abs(ref[2, 7]), rel=1e-3)
    assert stats.min_passing_rel == pytest.approx(0.01 / np.abs(ref).max(), rel=1e-4)
    assert stats.ref_max_abs == pytest.approx(float(np.abs(ref).max()))
    failing = stats.failing(tolerance_for("fp32"))
    assert list(failing) == ["max_abs"]
    assert failing["max_abs"] == f"max abs error {0.01 / np.abs(ref).max():.3g} x max|ref| > 0.0001 x max|ref|"


def test_a_flipped_top1_fails_fp32_but_not_the_error_bound():
    ref = _ref()
    out = ref.copy()
    i, j = np.argsort(-ref[0])[:2]
    out[0, i], out[0, j] = ref[0, j], ref[0, i]
    stats = compare(ref, out)
    assert stats.top1 == pytest.approx(5 / 6) and stats.top5 == 1.0
    assert stats.failing(tolerance_for("int8")) == {"top1": "top-1 agreement 83.3% < 90%"}
    assert stats.failing(tolerance_for("fp32"))["top1"] == "top-1 agreement 83.3% < 100%"


def test_nan_always_fails():
    ref = _ref()
    out = ref.copy()
    out[1, 3] = np.nan
    out[4, 4] = np.inf
    stats = compare(ref, out)
    assert (stats.nan, stats.inf) == (1, 1)
    assert stats.failing(tolerance_for("int8"))["nan"] == "1 NaN and 1 Inf"
    assert stats.failing(tolerance_for("int8"), bounds=False) == {"nan": "1 NaN and 1 Inf"}


def test_tolerances_are_ordered_by_precision():
    fp32, fp16, int8 = (tolerance_for(p) for p in ("fp32", "fp16", "int8"))
    assert fp32.max_abs_rel < fp16.max_abs_rel < int8.max_abs_rel
    assert fp32.min_cosine > fp16.min_cosine > int8.min_cosine
    with pytest.raises(BadInputError, match="unknown precision 'bf8'; choose from fp32, fp16, int8"):
        tolerance_for("bf8")


def test_shape_mismatch_is_bad_input():
    with pytest.raises(BadInputError, match="differs from reference"):
        compare(_ref(), _ref()[:, :10])


class _Scaled(Runner):
    """Returns its input flattened, times ``factor``: a runner whose error is known exactly."""

    def __init__(self, precision: str, factor: float) -> None:
        super().__init__(f"scaled-{precision}", "cpu", precision)
        self.factor = factor

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec("input", np.dtype(np.float32), ("batch", 12))]

    def _activate(self) -> None:
        pass

    def _deactivate(self) -> None:
        pass

    def _infer(self, feed):
        return {"logits": feed["input"] * self.factor}


def _report(precision: str, factor: float):
    from rbench.bench.parity import check_parity

    feed = {"input": np.random.default_rng(1).standard_normal((4, 12)).astype(np.float32)}
    with _Scaled(precision, factor) as runner, _Scaled("fp32", 1.0) as ref:
        return check_parity(runner, ref, {"random": feed, "photos": feed}, tolerance_for(precision))


def test_reduced_precision_random_inputs_are_reported_but_not_judged():
    report = _report("fp16", 1.05)  # 5% off: fails FP16's bounds on both sets, but only photos are judged
    assert report.verdict("random") == "not judged" and report.verdict("photos") == "FAIL"
    assert report.failures and all(f.startswith("fp16 photos/logits: ") for f in report.failures)
    assert any(
        f.startswith("fp16 photos/logits: max abs error 0.0") and "> 0.01 x max|ref|" in f for f in report.failures
    )
    data = report.to_dict()
    assert data["passed"] is False
    assert data["inputs"]["random"]["verdict"] == "not judged" and data["inputs"]["photos"]["verdict"] == "FAIL"
    assert data["inputs"]["photos"]["outputs"]["logits"]["failing"] == ["max_abs"]


def test_fp32_judges_both_sets_and_json_figures_are_rounded():
    report = _report("fp32", 1.0)
    assert report.passed and report.verdict("random") == "pass" and report.verdict("photos") == "pass"
    stats = report.to_dict()["inputs"]["photos"]["outputs"]["logits"]
    assert all(len(repr(v)) <= 13 for v in stats.values() if isinstance(v, float)), stats
