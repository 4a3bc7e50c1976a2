"""`drivelab eval` on every scenario with each backend that runs it, and `drivelab watch` on every
scenario (watch plays on highway-env, whose scene renderer draws the video), through the CLI."""

import imageio.v2 as imageio
import numpy as np
import pytest

import drivelab.envs as de
from drivelab.benchmarks import cli
from drivelab.envs.config import highway_env_defaults

# Cases that cost more than ~1 s of CPU each (long random episodes, many vehicles) run with --slow.
SLOW_EVAL = {("drivelab/highway-v0", "highway-env"), ("drivelab/highway-fast-v0", "highway-env"),
             ("drivelab/intersection-v0", "highway-env"), ("drivelab/parking-v0", "highway-env"),
             ("drivelab/exit-v0", "highway-env"), ("drivelab/parking-parked-v0", "highway-env"),
             ("drivelab/racetrack-oval-v0", "highway-env"), ("drivelab/intersection-v1", "highway-env"),
             ("drivelab/roundabout-v0", "highway-env")}
FAST_WATCH = {"drivelab/highway-fast-v0", "drivelab/exit-v0", "drivelab/two-way-v0", "drivelab/parking-parked-v0"}


def _marked(case, slow: bool):
    return pytest.param(*case, marks=pytest.mark.slow) if slow else pytest.param(*case)


EVAL_CASES = [
    _marked((env_id, backend), (env_id, backend) in SLOW_EVAL)
    for env_id, scenario in de.SCENARIOS.items()
    for backend in ("highway-env", "envpool")
    if backend == "highway-env" or scenario.envpool_id is not None
]
WATCH_CASES = [_marked((env_id,), env_id not in FAST_WATCH) for env_id in de.SCENARIOS]


@pytest.mark.filterwarnings("ignore:backend envpool")
@pytest.mark.parametrize("env_id, backend", EVAL_CASES)
def test_eval_runs_every_scenario_on_each_backend(env_id, backend, capsys):
    status = cli.main(["eval", "--policy", "baseline:random", "--env", env_id, "--episodes", "1",
                       "--backend", backend, "--num-envs", "1"])
    out = capsys.readouterr().out
    assert status == 0
    assert f"{env_id} [{backend}, " in out and "1 run(s) x 1 episodes" in out


@pytest.mark.parametrize("env_id", WATCH_CASES)
def test_watch_records_every_scenario(env_id, tmp_path, capsys):
    out = tmp_path / "episode.mp4"
    scenario = de.get_scenario(env_id)
    # A short episode where the scenario has a time limit (merge, two-way and lane-keeping have none).
    short = ["--set", "duration=2"] if "duration" in highway_env_defaults(scenario.highway_env_id) else []
    status = cli.main(["watch", "--policy", "baseline:random", "--env", env_id, "--seed", "3", "--episodes", "1",
                       "--record", str(out), *short])
    assert status == 0
    assert "seed 3: return" in capsys.readouterr().out
    frames = imageio.mimread(out, memtest=False)
    assert len(frames) >= 2
    # highway-env's scene (road, vehicles) beside the agent's camera: not a blank video
    assert np.asarray(frames[-1]).std() > 10
