"""Run a policy for a fixed set of seeded episodes and summarise the driving metrics.

Episode k of an evaluation always uses seed ``seed + k``, whatever the batch size: the batch
is reset with consecutive seeds and each env contributes only its first episode per round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from drivelab.agents.policies import Policy


@dataclass(frozen=True)
class EvalResult:
    """Per-episode driving metrics of an evaluation, in seed order; arrays are (N,)."""

    seeds: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    crashed: np.ndarray
    mean_speed: np.ndarray

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean())

    @property
    def crash_rate(self) -> float:
        return float(self.crashed.mean())

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (means and the seed range)."""
        return {
            "episodes": int(len(self.seeds)),
            "first_seed": int(self.seeds[0]),
            "mean_return": self.mean_return,
            "std_return": float(self.returns.std()),
            "crash_rate": self.crash_rate,
            "mean_length": float(self.lengths.mean()),
            "mean_speed": float(self.mean_speed.mean()),
        }


def run_episodes(policy: Policy, vec_env: Any, n_episodes: int, seed: int) -> EvalResult:
    """Run ``n_episodes`` episodes with seeds ``seed .. seed + n_episodes - 1``.

    Args:
        policy: any ``Policy``; it is reset at every episode start.
        vec_env: a drivelab gymnasium ``VectorEnv`` (same-step autoreset, ``infos["driving"]``).
        n_episodes: number of episodes.
        seed: first episode seed.

    Returns:
        The metrics of every episode, ordered by seed.
    """
    policy.check_env(vec_env)
    batch = vec_env.num_envs
    metrics: dict[str, list[np.ndarray]] = {"returns": [], "lengths": [], "crashed": [], "mean_speed": []}
    for first in range(0, n_episodes, batch):
        wanted = min(batch, n_episodes - first)  # envs [0, wanted) count in this round
        observation, _ = vec_env.reset(seed=seed + first)
        policy.reset(np.ones(batch, bool))
        finished = np.zeros(batch, bool)
        rounds = {key: np.zeros(batch) for key in metrics}
        while not finished[:wanted].all():
            actions = policy.act(observation, vec_env)
            observation, _, terminated, truncated, infos = vec_env.step(actions)
            ended = np.asarray(terminated) | np.asarray(truncated)
            if ended.any():
                policy.reset(ended)
                new = ended & ~finished
                driving = infos["driving"]
                rounds["returns"][new] = driving["return"][new]
                rounds["lengths"][new] = driving["length"][new]
                rounds["crashed"][new] = driving["crashed"][new]
                rounds["mean_speed"][new] = driving["mean_speed"][new]
                finished |= ended
        for key in metrics:
            metrics[key].append(rounds[key][:wanted])
    merged = {key: np.concatenate(values) for key, values in metrics.items()}
    return EvalResult(
        seeds=np.arange(seed, seed + n_episodes),
        returns=merged["returns"],
        lengths=merged["lengths"].astype(np.int64),
        crashed=merged["crashed"].astype(bool),
        mean_speed=merged["mean_speed"],
    )
