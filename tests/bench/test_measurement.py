"""Statistics on known samples: nearest-rank percentiles, spread, throughput."""

from __future__ import annotations

import numpy as np
import pytest

from rbench.bench.measurement import Measurement, nearest_rank


def test_statistics_of_one_to_one_hundred_milliseconds():
    samples = tuple(np.random.default_rng(0).permutation(np.arange(1, 101)) * 1e-3)  # order must not matter
    stats = Measurement(samples, batch=8).stats()
    assert stats["iterations"] == 100
    assert (stats["min"], stats["p50"], stats["p90"], stats["p95"], stats["p99"], stats["max"]) == pytest.approx(
        (0.001, 0.050, 0.090, 0.095, 0.099, 0.100)
    )
    assert stats["mean"] == pytest.approx(0.0505)
    assert stats["std"] == pytest.approx(np.std(np.arange(1, 101), ddof=1) * 1e-3)
    assert stats["cv"] == pytest.approx(stats["std"] / stats["mean"])
    assert stats["throughput"] == pytest.approx(8 / 0.050)  # images per second at the median
    assert stats["iqr_over_median"] == pytest.approx((75.25 - 25.75) / 50)


def test_nearest_rank_takes_a_sample_never_an_interpolation():
    values = np.array([10.0, 20.0, 30.0, 40.0])
    assert [nearest_rank(values, q) for q in (1, 25, 26, 50, 99, 100)] == [10, 10, 20, 20, 40, 40]


def test_spread_warning_above_ten_percent_only():
    tight = Measurement(tuple(1.0 + 0.01 * np.sin(np.arange(50))), 1)
    wide = Measurement(tuple([1.0] * 20 + [1.5] * 20 + [0.8] * 10), 1)
    assert tight.warnings() == []
    assert wide.warnings() == ["unstable: IQR is 50% of the median (> 10%)"]


def test_one_sample_and_none():
    assert Measurement((0.002,), 1).stats()["std"] == 0.0
    with pytest.raises(ValueError, match="at least one sample"):
        Measurement((), 1)
