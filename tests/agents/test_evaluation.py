"""The one episode runner (on a fake vector env and a real one): waves, seeds, policy state."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import FakeDrivingVecEnv

import drivelab.agents as agents
from drivelab.agents import ConfigError, EvaluationResult, Policy, evaluate

ENV_ID = "drivelab/highway-fast-v0"


class CyclingPolicy(Policy):
    """A stateful policy: action 2 (FASTER) every third step since its reset, else 1 (IDLE).

    With ``deterministic=False`` it always picks FASTER, so the flag's effect is visible.
    """

    def __init__(self) -> None:
        self.steps = None
        self.resets = 0

    def act(self, observation: np.ndarray, env=None, deterministic: bool = True) -> np.ndarray:
        assert env is not None and observation.shape[0] == env.num_envs
        actions = np.where(self.steps % 3 == 0, 2, 1) if deterministic else np.full(env.num_envs, 2)
        self.steps += 1
        return actions

    def reset(self, mask: np.ndarray) -> None:
        if self.steps is None:
            self.steps = np.zeros(mask.shape[0], dtype=int)
        self.steps[mask] = 0
        self.resets += 1


class IdlePolicy(Policy):
    """Always IDLE (action 1)."""

    def act(self, observation: np.ndarray, env=None, deterministic: bool = True) -> np.ndarray:
        return np.ones(observation.shape[0], dtype=np.int64)


def fake_evaluate(num_envs: int, episodes: int = 11, policy=None, **kwargs) -> EvaluationResult:
    return evaluate(policy or CyclingPolicy(), ENV_ID, episodes=episodes, num_envs=num_envs,
                    make_env=FakeDrivingVecEnv, **kwargs)


def test_evaluate_records_one_episode_per_protocol_seed():
    result = fake_evaluate(num_envs=4, episodes=11)
    assert result.seeds == tuple(range(10_000_000, 10_000_011))
    assert [e.seed for e in result.episodes] == list(result.seeds)
    assert [e.index for e in result.episodes] == list(range(11))
    assert result.backend == "highway-env" and result.protocol_version == "drivelab-eval-v1"
    assert all(3 <= e.length <= 10 for e in result.episodes)
    assert all(e.failed == e.crashed for e in result.episodes)
    np.testing.assert_array_equal(result.metric("distance_m"), 20.0 * result.metric("length"))
    summary = result.summary()
    assert summary["episodes"] == 11 and summary["first_seed"] == 10_000_000
    assert summary["mean_return"] == pytest.approx(result.metric("episode_return").mean()) == result.mean_return
    assert summary["crash_rate"] == pytest.approx(result.metric("crashed").mean()) == result.crash_rate


def test_same_seeds_give_identical_numbers_for_any_batch_size():
    first = fake_evaluate(num_envs=4)
    assert fake_evaluate(num_envs=4) == first
    # Each episode depends only on its seed, so 1, 3 or 11 envs at a time agree exactly.
    for num_envs in (1, 3, 11, 50):
        assert fake_evaluate(num_envs=num_envs).episodes == first.episodes


def test_policy_state_is_reset_when_episodes_end():
    # Replay each seed by hand: CyclingPolicy's step counter must restart at every episode.
    result = fake_evaluate(num_envs=3, episodes=3)
    for record in result.episodes:
        rng = np.random.default_rng(record.seed)
        length = 3 + rng.integers(0, 8)
        actions = np.where(np.arange(length) % 3 == 0, 2, 1)
        expected = sum(rng.random() for _ in range(length)) + 0.25 * actions.sum()
        assert record.length == length
        assert record.episode_return == pytest.approx(expected, abs=1e-12)
        assert record.crashed == (rng.random() < 0.3)


def test_deterministic_flag_reaches_the_policy_and_on_step_sees_every_step():
    greedy = fake_evaluate(num_envs=2, episodes=2)
    steps = []
    sampled = fake_evaluate(num_envs=2, episodes=2, deterministic=False,
                            on_step=lambda vec, obs, actions, infos: steps.append(actions.copy()))
    # Same seeds, same lengths; FASTER on every step adds 0.25 per step over the cycling policy.
    for g, s in zip(greedy.episodes, sampled.episodes):
        assert g.length == s.length and s.episode_return > g.episode_return
    assert steps and all(np.array_equal(a, [2, 2]) for a in steps)
    assert len(steps) == max(e.length for e in sampled.episodes)


def test_explicit_seeds_and_refusals():
    result = fake_evaluate(num_envs=2, episodes=None, seeds=[1_000_000, 1_000_001, 1_000_002])
    assert result.seeds == (1_000_000, 1_000_001, 1_000_002)
    with pytest.raises(ConfigError, match="backend"):
        evaluate(IdlePolicy(), ENV_ID, episodes=2, backend="mujoco", make_env=FakeDrivingVecEnv)
    with pytest.raises(ConfigError, match="num_envs"):
        evaluate(IdlePolicy(), ENV_ID, episodes=2, num_envs=0, make_env=FakeDrivingVecEnv)
    with pytest.raises(ConfigError, match="at least one"):
        evaluate(IdlePolicy(), ENV_ID, seeds=[], make_env=FakeDrivingVecEnv)


def test_evaluate_refuses_env_that_ignores_reset_seeds():
    class WrongSeeds(FakeDrivingVecEnv):
        def reset(self, seed=None, options=None):
            return super().reset(seed=[s + 1 for s in seed], options=options)

    with pytest.raises(RuntimeError, match="per-env reset seeds"):
        evaluate(IdlePolicy(), ENV_ID, episodes=2, num_envs=2, make_env=WrongSeeds)


def test_evaluate_closes_the_env_it_made():
    made = []

    def make_env(num_envs):
        made.append(FakeDrivingVecEnv(num_envs))
        return made[-1]

    evaluate(IdlePolicy(), ENV_ID, episodes=3, num_envs=2, make_env=make_env)
    assert len(made) == 1 and made[0].closed


def test_real_env_same_seeds_identical_numbers():
    kwargs = {"observation": "native"}
    first = evaluate(agents.IdlePolicy(), ENV_ID, episodes=3, num_envs=2, env_kwargs=kwargs)
    second = evaluate(agents.IdlePolicy(), ENV_ID, episodes=3, num_envs=3, env_kwargs=kwargs)
    assert first.backend == "highway-env"
    assert first.episodes == second.episodes
    assert [e.seed for e in first.episodes] == [10_000_000, 10_000_001, 10_000_002]
