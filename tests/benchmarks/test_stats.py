"""Aggregates against hand-computed values and scipy; bootstrap CI coverage on synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from drivelab.benchmarks.leaderboard import stats


def test_mean_and_iqm_hand_computed():
    assert stats.mean([1.0, 2.0, 6.0]) == 3.0
    # n = 8: int(0.25 * 8) = 2 cut from each end -> mean(2, 3, 4, 5) = 3.5
    assert stats.iqm([100.0, 0.0, 3.0, 1.0, 6.0, 2.0, 5.0, 4.0]) == 3.5
    # n = 6: int(1.5) = 1 cut from each end -> mean(2, 3, 4, 5) = 3.5
    assert stats.iqm([1.0, 2.0, 3.0, 4.0, 5.0, 60.0]) == 3.5
    # n < 4 cuts nothing: IQM equals the mean
    assert stats.iqm([1.0, 2.0, 9.0]) == 4.0


def test_iqm_matches_scipy_trim_mean():
    rng = np.random.default_rng(3)
    for size in (4, 7, 10, 33, 100):
        values = rng.normal(size=size) ** 3
        assert stats.iqm(values) == pytest.approx(scipy.stats.trim_mean(values, 0.25), abs=1e-12)
    rows = rng.exponential(size=(5, 21))
    np.testing.assert_allclose(
        stats.trimmed_mean_rows(rows), scipy.stats.trim_mean(rows, 0.25, axis=1), atol=1e-12
    )


def test_rates_hand_computed():
    crashed = [True, False, True, False]
    assert stats.crash_rate(crashed) == 0.5
    assert stats.success_rate([1, 1, 1, 0]) == 0.75
    # 2 collisions over 4 km
    assert stats.collisions_per_km(crashed, [500.0, 1500.0, 1000.0, 1000.0]) == 0.5
    assert math.isnan(stats.collisions_per_km([False], [0.0]))


def test_bootstrap_two_point_distribution_hand_computed():
    # Mean of 2 draws from {0, 1}: 0 w.p. 1/4, 0.5 w.p. 1/2, 1 w.p. 1/4, so the 2.5 % and
    # 97.5 % percentiles are 0 and 1; a 40 % interval is [0.5, 0.5].
    assert stats.stratified_bootstrap_ci([[0.0, 1.0]], reps=4000, seed=1) == stats.Interval(0.0, 1.0)
    narrow = stats.stratified_bootstrap_ci([[0.0, 1.0]], confidence=0.4, reps=4000, seed=1)
    assert narrow == stats.Interval(0.5, 0.5)


def test_bootstrap_resamples_within_strata_only():
    # Each stratum is constant: resampling within strata never changes the pooled mean,
    # whereas pooling the strata first would give a wide interval.
    strata = [np.zeros(10), np.full(30, 4.0)]
    assert stats.stratified_bootstrap_ci(strata, "mean", reps=500) == stats.Interval(3.0, 3.0)
    pooled = stats.stratified_bootstrap_ci([np.concatenate(strata)], "mean", reps=500)
    assert pooled.high - pooled.low > 0.5


def test_bootstrap_is_seeded():
    data = [np.random.default_rng(0).normal(size=40), np.random.default_rng(1).normal(size=25)]
    first = stats.stratified_bootstrap_ci(data, "iqm", reps=2500, seed=7)
    assert first == stats.stratified_bootstrap_ci(data, "iqm", reps=2500, seed=7)
    assert first != stats.stratified_bootstrap_ci(data, "iqm", reps=2500, seed=8)
    assert first.low < stats.iqm(np.concatenate(data)) < first.high


def test_bootstrap_rejects_bad_arguments():
    with pytest.raises(ValueError, match="valid"):
        stats.stratified_bootstrap_ci([[1.0]], "median")
    with pytest.raises(ValueError):
        stats.stratified_bootstrap_ci([[1.0]], confidence=1.0)
    with pytest.raises(ValueError):
        stats.stratified_bootstrap_ci([])


def _coverage(sample_strata, true_mean: float, trials: int = 200) -> float:
    rng = np.random.default_rng(12345)
    hits = 0
    for trial in range(trials):
        interval = stats.stratified_bootstrap_ci(sample_strata(rng), "mean", reps=1000, seed=trial)
        hits += interval.low <= true_mean <= interval.high
    return hits / trials


def test_bootstrap_ci_covers_true_mean_at_nominal_rate():
    coverage = _coverage(lambda rng: [rng.normal(2.0, 3.0, size=50)], true_mean=2.0)
    assert 0.90 <= coverage <= 0.99


def test_stratified_ci_covers_pooled_mean_at_nominal_rate():
    # Three training runs with different mean returns; the estimand is the pooled mean 5.
    run_means = (0.0, 5.0, 10.0)
    coverage = _coverage(
        lambda rng: [rng.normal(m, 2.0, size=50) for m in run_means], true_mean=5.0
    )
    assert 0.90 <= coverage <= 0.99


def test_entry_stats_hand_computed():
    runs = [
        {"return": [1.0, 2.0, 3.0, 4.0], "crashed": [0, 0, 1, 0], "success": [1, 1, 0, 1],
         "distance_m": [1000.0, 1000.0, 500.0, 1000.0]},
        {"return": [5.0, 6.0, 7.0, 8.0], "crashed": [1, 0, 0, 0], "success": [0, 1, 1, 1],
         "distance_m": [500.0, 1000.0, 1000.0, 1000.0]},
    ]  # fmt: skip
    result = stats.entry_stats(runs, reps=2000)
    assert (result.num_runs, result.num_episodes) == (2, 8)
    assert result.mean_return == 4.5
    assert result.iqm_return == 4.5  # mean(3, 4, 5, 6)
    assert result.crash_rate == 0.25
    assert result.success_rate == 0.75
    assert result.collisions_per_km == pytest.approx(2 / 7.0)
    assert result.mean_return_ci.low < 4.5 < result.mean_return_ci.high
    # Each run is resampled within itself: the pooled mean can never leave [(1+5)/2, (4+8)/2].
    assert 3.0 < result.mean_return_ci.low and result.mean_return_ci.high < 6.0
