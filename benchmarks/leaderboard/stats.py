"""Aggregate statistics for evaluation results: mean, IQM, stratified-bootstrap CIs, rates.

Follows Agarwal et al. (2021), "Deep RL at the Edge of the Statistical Precipice", and its
library rliable:

- **IQM** (interquartile mean) is the mean of the middle 50 % of the scores, i.e.
  ``scipy.stats.trim_mean(x, 0.25)``: ``int(0.25 * n)`` scores are cut from each end.
- **Stratified bootstrap** (rliable's ``StratifiedBootstrap``): the scores form strata, and
  each bootstrap replicate resamples *within every stratum independently, with replacement*,
  keeping each stratum's size. The statistic is computed on all resampled scores pooled;
  the CI is the percentile interval of the replicates (rliable's default method).

Our choice of strata: rliable's matrix is ``(runs, tasks)`` and it resamples runs within each
task. A drivelab leaderboard entry is one scenario evaluated for several training runs, with
data ``(runs, episodes)``. We make every **training run a stratum** and resample its
**episodes** within it. So an entry with one run gets the ordinary bootstrap over its
episodes, and an entry with several runs does not mix episodes across runs, so the CI does
not absorb the spread between run means as if it were episode noise. The strata may hold
different numbers of episodes.

Example:
    >>> iqm([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0])
    3.5
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

IQM_TRIM_PROPORTION = 0.25  # cut 25 % from each end: the interquartile mean
DEFAULT_BOOTSTRAP_REPS = 10_000  # rliable uses 50k; 10k keeps the percentile error < 0.5 %
DEFAULT_CONFIDENCE = 0.95
_REPS_PER_CHUNK = 1_000  # bounds memory to about chunk x episodes x 8 bytes

Statistic = Callable[[np.ndarray], np.ndarray]  # (R, N) -> (R,): one value per replicate row


@dataclass(frozen=True)
class Interval:
    """A closed confidence interval ``[low, high]``."""

    low: float
    high: float

    def overlaps(self, other: Interval) -> bool:
        """Whether the two intervals share at least one point."""
        return self.low <= other.high and other.low <= self.high


def _as_1d(values: ArrayLike) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError("statistics need at least one value")
    return array


def mean(values: ArrayLike) -> float:
    """Arithmetic mean of all values."""
    return float(_as_1d(values).mean())


def trimmed_mean_rows(scores: np.ndarray, proportion: float = IQM_TRIM_PROPORTION) -> np.ndarray:
    """Trimmed mean of each row, as ``scipy.stats.trim_mean(scores, proportion, axis=1)``.

    Args:
        scores: ``(R, N)`` array.
        proportion: fraction cut from each end of every row.

    Returns:
        ``(R,)`` array.
    """
    count = scores.shape[1]
    cut = int(proportion * count)
    if cut >= count - cut:
        raise ValueError(f"trimming {proportion} from each end of {count} values leaves none")
    ordered = np.partition(scores, (cut, count - cut - 1), axis=1) if cut else scores
    return ordered[:, cut : count - cut].mean(axis=1)


def iqm(values: ArrayLike) -> float:
    """Interquartile mean: the mean of the middle 50 % of the values (rliable's IQM)."""
    return float(trimmed_mean_rows(_as_1d(values)[None, :])[0])


def _mean_rows(scores: np.ndarray) -> np.ndarray:
    return scores.mean(axis=1)


STATISTICS: dict[str, Statistic] = {"mean": _mean_rows, "iqm": trimmed_mean_rows}


def stratified_bootstrap_ci(
    strata: Sequence[ArrayLike],
    statistic: str | Statistic = "mean",
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    reps: int = DEFAULT_BOOTSTRAP_REPS,
    seed: int = 0,
) -> Interval:
    """Percentile CI of a statistic under stratified bootstrap resampling.

    Every replicate draws, for each stratum of size ``n_s``, ``n_s`` scores from that stratum
    with replacement; the statistic is computed over the pooled ``sum(n_s)`` draws.

    Args:
        strata: one 1-D array of scores per stratum (for an entry: per training run).
        statistic: ``"mean"``, ``"iqm"`` or a function mapping ``(R, N)`` to ``(R,)``.
        confidence: coverage of the two-sided interval, in (0, 1).
        reps: number of bootstrap replicates.
        seed: seed of the resampling RNG; the same seed gives the same interval.

    Returns:
        The ``Interval`` between the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
        percentiles of the replicate statistics.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    if isinstance(statistic, str):
        if statistic not in STATISTICS:
            raise ValueError(f"unknown statistic {statistic!r}; valid: {sorted(STATISTICS)}")
        statistic = STATISTICS[statistic]
    arrays = [_as_1d(stratum) for stratum in strata]
    if not arrays:
        raise ValueError("stratified bootstrap needs at least one stratum")
    rng = np.random.default_rng(seed)
    replicate_values = np.empty(reps, dtype=np.float64)
    for start in range(0, reps, _REPS_PER_CHUNK):
        chunk = min(_REPS_PER_CHUNK, reps - start)
        resampled = [a[rng.integers(0, a.size, size=(chunk, a.size))] for a in arrays]
        replicate_values[start : start + chunk] = statistic(np.concatenate(resampled, axis=1))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicate_values, [tail, 1.0 - tail])
    return Interval(float(low), float(high))


def success_rate(success: ArrayLike) -> float:
    """Fraction of episodes that succeeded."""
    return float(_as_1d(success).astype(bool).mean())


def crash_rate(crashed: ArrayLike) -> float:
    """Fraction of episodes that ended in a collision."""
    return float(_as_1d(crashed).astype(bool).mean())


def collisions_per_km(crashed: ArrayLike, distance_m: ArrayLike) -> float:
    """Collisions per kilometre driven, pooled: ``sum(crashed) / (sum(distance_m) / 1000)``.

    An episode ends at its first collision, so each crashed episode counts one collision.
    Returns ``nan`` when no distance was driven at all.
    """
    crashes = float(_as_1d(crashed).astype(bool).sum())
    distance_km = float(_as_1d(distance_m).sum()) / 1000.0
    if distance_km <= 0.0:
        return float("nan")
    return crashes / distance_km


@dataclass(frozen=True)
class EntryStats:
    """Aggregates of one leaderboard entry over all episodes of all its training runs."""

    num_runs: int
    num_episodes: int
    mean_return: float
    mean_return_ci: Interval
    iqm_return: float
    iqm_return_ci: Interval
    success_rate: float
    crash_rate: float
    crash_rate_ci: Interval
    collisions_per_km: float


def entry_stats(
    runs: Sequence[Mapping[str, ArrayLike]],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    reps: int = DEFAULT_BOOTSTRAP_REPS,
    seed: int = 0,
) -> EntryStats:
    """Aggregate an entry's per-episode metrics, each training run being one stratum.

    Args:
        runs: one mapping per training run with 1-D arrays (one value per episode) under the
            keys ``"return"``, ``"crashed"``, ``"success"`` and ``"distance_m"``.
        confidence: CI coverage.
        reps: bootstrap replicates.
        seed: bootstrap seed.

    Returns:
        The entry's ``EntryStats``.
    """
    if not runs:
        raise ValueError("an entry needs at least one run")
    returns = [_as_1d(run["return"]) for run in runs]
    crashed = [_as_1d(run["crashed"]) for run in runs]
    pooled_return = np.concatenate(returns)
    pooled_crashed = np.concatenate(crashed)
    pooled_success = np.concatenate([_as_1d(run["success"]) for run in runs])
    pooled_distance_m = np.concatenate([_as_1d(run["distance_m"]) for run in runs])
    options = {"confidence": confidence, "reps": reps, "seed": seed}
    return EntryStats(
        num_runs=len(runs),
        num_episodes=int(pooled_return.size),
        mean_return=mean(pooled_return),
        mean_return_ci=stratified_bootstrap_ci(returns, "mean", **options),
        iqm_return=iqm(pooled_return),
        iqm_return_ci=stratified_bootstrap_ci(returns, "iqm", **options),
        success_rate=success_rate(pooled_success),
        crash_rate=crash_rate(pooled_crashed),
        crash_rate_ci=stratified_bootstrap_ci(
            [c.astype(bool).astype(np.float64) for c in crashed], "mean", **options
        ),
        collisions_per_km=collisions_per_km(pooled_crashed, pooled_distance_m),
    )
