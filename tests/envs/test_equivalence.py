"""EnvPool's batched port against highway-env: same fixed policy, same statistics."""

import numpy as np

import drivelab.envs as de

IDLE = 1


def first_episodes(backend: str, num_envs: int, seed: int) -> dict[str, np.ndarray]:
    """Run IDLE until every env finished its first episode; the metrics of those episodes."""
    env = de.make_vec("drivelab/highway-fast-v0", num_envs=num_envs, backend=backend, seed=seed)
    env.reset()
    finished = np.zeros(num_envs, bool)
    metrics = {name: np.zeros(num_envs) for name in ("return", "length", "crashed")}
    while not finished.all():
        _, _, _, _, infos = env.step(np.full(num_envs, IDLE))
        if "_driving" in infos:
            new = infos["_driving"] & ~finished
            for name in metrics:
                metrics[name][new] = infos["driving"][name][new]
            finished |= new
    env.close()
    return metrics


def test_idle_policy_statistics_agree_between_backends():
    batched = first_episodes("envpool", 200, seed=0)
    reference = first_episodes("highway-env", 24, seed=10_000)
    for name in ("return", "length", "crashed"):
        a, b = batched[name], reference[name]
        if name == "crashed":  # two-proportion z-test: pooled rate, robust when one side is all 1s
            pooled = np.concatenate([a, b]).mean()
            standard_error = np.sqrt(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b)))
        else:  # Welch
            standard_error = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        difference = abs(a.mean() - b.mean())
        # 3.5 standard errors: a false alarm about once in 2,000 runs; the floor covers
        # the all-crash case where every variance is zero
        assert difference <= 3.5 * standard_error + 0.02, (name, a.mean(), b.mean(), standard_error)
    # the fixed policy crashes most of the time on both (planning measured ~95%)
    assert batched["crashed"].mean() > 0.8 and reference["crashed"].mean() > 0.7
