from __future__ import annotations

import numpy as np
import pytest

from rbench.bench.parity import TOLERANCES, compare, tolerance_for
from rbench.errors import BadInputError


def _ref() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((6, 1000)).astype(np.float32) * 3


def test_identical_outputs_have_zero_error():
    ref = _ref()
    stats = compare(ref, ref.copy())
    assert stats.max_abs == 0 and stats.top1 == 1 and stats.top5 == 1 and stats.min_cosine == pytest.approx(1)
    assert stats.failures(TOLERANCES["fp32"]) == []


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
    failures = stats.failures(TOLERANCES["fp32"])
    assert len(failures) == 1 and failures[0].startswith("max abs error 0.01 > 0.0001 x max|ref|")


def test_a_flipped_top1_fails_fp32_but_not_the_error_bound():
    ref = _ref()
    out = ref.copy()
    i, j = np.argsort(-ref[0])[:2]
    out[0, i], out[0, j] = ref[0, j], ref[0, i]
    stats = compare(ref, out)
    assert stats.top1 == pytest.approx(5 / 6) and stats.top5 == 1.0
    assert any("top-1 agreement 83.3% < 100%" in f for f in stats.failures(TOLERANCES["fp32"]))


def test_nan_always_fails():
    ref = _ref()
    out = ref.copy()
    out[1, 3] = np.nan
    out[4, 4] = np.inf
    stats = compare(ref, out)
    assert (stats.nan, stats.inf) == (1, 1)
    failures = stats.failures(TOLERANCES["int8"])
    assert failures[0] == "1 NaN and 1 Inf"


def test_tolerances_are_ordered_by_precision():
    fp32, fp16, int8 = (tolerance_for(p) for p in ("fp32", "fp16", "int8"))
    assert fp32.max_abs_rel < fp16.max_abs_rel < int8.max_abs_rel
    assert fp32.min_cosine > fp16.min_cosine > int8.min_cosine
    with pytest.raises(BadInputError, match="unsupported precision 'bf8'; choose from fp32, fp16, int8"):
        tolerance_for("bf8")


def test_shape_mismatch_is_bad_input():
    with pytest.raises(BadInputError, match="differs from reference"):
        compare(_ref(), _ref()[:, :10])
