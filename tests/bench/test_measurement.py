"""Statistics on known samples: nearest-rank percentiles, spread, throughput; the measurement is the result object."""

from __future__ import annotations

import numpy as np
import pytest

from rbench.bench.measurement import Measurement, nearest_rank


def test_statistics_of_one_to_one_hundred_milliseconds():
    samples = tuple(np.random.default_rng(0).permutation(np.arange(1, 101)) * 1e-3)  # order must not matter
    m = Measurement.of(samples, batch=8)
    assert m.iterations == 100
    assert (m.min, m.p50, m.p90, m.p95, m.p99, m.max) == pytest.approx((0.001, 0.050, 0.090, 0.095, 0.099, 0.100))
    assert m.mean == pytest.approx(0.0505)
    assert m.std == pytest.approx(np.std(np.arange(1, 101), ddof=1) * 1e-3)
    assert m.cv == pytest.approx(m.std / m.mean)
    assert m.throughput == pytest.approx(8 / 0.050)  # images per second at the median
    assert m.iqr_over_median == pytest.approx((75.25 - 25.75) / 50)
    assert m.samples == samples  # the raw samples, in their order


def test_stats_round_trip_through_a_results_file():
    m = Measurement.of((0.003, 0.001, 0.002), batch=4)
    stats = m.stats()
    assert list(stats)[:2] == ["p50", "iterations"] and "samples" not in stats and "batch" not in stats
    assert Measurement.from_stats(stats, 4) == m


def test_nearest_rank_takes_a_sample_never_an_interpolation():
    values = np.array([10.0, 20.0, 30.0, 40.0])
    assert [nearest_rank(values, q) for q in (1, 25, 26, 50, 99, 100)] == [10, 10, 20, 20, 40, 40]


def test_spread_warning_above_ten_percent_only():
    tight = Measurement.of(tuple(1.0 + 0.01 * np.sin(np.arange(50))), 1)
    wide = Measurement.of(tuple([1.0] * 20 + [1.5] * 20 + [0.8] * 10), 1)
    assert tight.warnings() == []
    assert wide.warnings() == ["unstable: IQR is 50% of the median (> 10%)"]


def test_one_sample_and_none():
    assert Measurement.of((0.002,), 1).std == 0.0
    with pytest.raises(ValueError, match="at least one sample"):
        Measurement.of((), 1)
