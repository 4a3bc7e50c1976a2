"""Suites as Ray tasks on a local Ray instance: same records as the local runner, resume, skip, failures.

The real multi-node cluster (a node killed during a run) is tests/agents/test_suite_ray_cluster.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivelab.benchmarks.cli import main

TINY = {
    "name": "tiny", "scenarios": ["drivelab/highway-fast-v0"], "algos": ["ppo"], "seeds": [0, 1], "device": "cpu",
    "resources": {"cpus_per_run": 1, "gpus_per_run": 0},
    "overrides": {"total_steps": 64, "camera": {"width": 64, "height": 32, "metres_per_pixel": 1.0, "stack": 2},
                  "ppo.n_envs": 4, "ppo.n_steps": 8, "ppo.batch_size": 32, "ppo.n_epochs": 1,
                  "encoder.features_dim": 32, "eval_every_steps": 64, "eval_episodes": 2, "eval_envs": 2,
                  "checkpoint_every_steps": 32},
}


def write_suite(path: Path, runs_dir: Path, **changes: Any) -> Path:
    suite = {**TINY, "runs_dir": str(runs_dir), **changes}
    if "total_steps" in changes:
        suite["overrides"] = {**TINY["overrides"], "total_steps": suite.pop("total_steps")}
    path.write_text(yaml.safe_dump(suite))
    return path


def invocations(run_dir: Path) -> list[dict[str, Any]]:
    return json.loads((run_dir / "run.json").read_text())["invocations"]


def shape(value: Any) -> Any:
    """The form of a record: its keys (recursively), not its values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()
                if key not in ("machine", "packages", "runner", "command")}
    return type(value).__name__ if isinstance(value, list) else None


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_suite_records_resume_skip_and_failure(tmp_path: Path, ray_local: Any) -> None:
    from drivelab.agents.suite import read_suite
    from drivelab.agents.suite_ray import run_suite_ray

    # The local runner, through the CLI in a fresh process (it never imports ray), trains seed 0 to 32 steps;
    # the Ray run (no shared file system) then ships that checkpoint to its task and resumes it to 64.
    local_out = tmp_path / "local.json"
    first = write_suite(tmp_path / "b32.yaml", tmp_path / "b", seeds=[0], total_steps=32)
    arguments = ["bench", "rl", "--suite", str(first), "--out", str(local_out), "--no-progress"]
    probe = (f"import sys; from drivelab.benchmarks.cli import main; status = main({arguments!r}); "
             "print('ray imported:', 'ray' in sys.modules); sys.exit(status)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ray imported: False" in done.stdout
    local = json.loads(local_out.read_text())
    assert [(r["seed"], r["status"], r["num_timesteps"]) for r in local["runs"]] == [(0, "trained", 32)]
    lines: list[str] = []
    suite = read_suite(write_suite(tmp_path / "b.yaml", tmp_path / "b"))
    record = run_suite_ray(suite, shared_fs="no", announce=lines.append)
    assert shape({**record, "runs": None}) == shape({**local, "runs": None})  # the local runner's form
    assert shape(record["runs"][0]) == shape(local["runs"][0])
    assert record["runner"]["kind"] == "ray" and record["runner"]["shared_fs"] is False
    assert local["runner"] == {"kind": "local"}
    assert [(r["seed"], r["status"], r["attempts"], r["num_timesteps"]) for r in record["runs"]] == \
        [(0, "trained", 1, 64), (1, "trained", 1, 64)]
    run0, run1 = (Path(r["run_dir"]) for r in record["runs"])
    assert [i["resumed_from_step"] for i in invocations(run0)] == [None, 32]
    assert [i["resumed_from_step"] for i in invocations(run1)] == [None]
    for run_dir in (run0, run1):  # written by the driver's node from the tasks' folders
        assert (run_dir / "final" / "policy.json").is_file() and (run_dir / "checkpoints" / "last.json").is_file()
        assert json.loads((run_dir / "evaluations.jsonl").read_text().splitlines()[-1])["step"] == 64
    assert record["summary"][0]["seeds"] == 2 and record["summary"][0]["eval_episodes"] == 2
    assert "(resuming)" in lines[0] and "(resuming)" not in lines[1]

    # A rerun starts no task for finished runs; a run whose folder contradicts the suite fails for good
    # (a user error: no retry) and is reported, and the suite still writes its record.
    bad_config = json.loads((run1 / "config.json").read_text())
    bad_config["ppo"]["gamma"] = 0.5
    (run1 / "config.json").write_text(json.dumps(bad_config))
    record_file = json.loads((run1 / "run.json").read_text())
    del record_file["invocations"][-1]["finished"]  # as if killed after its last checkpoint
    (run1 / "run.json").write_text(json.dumps(record_file))
    out = tmp_path / "rerun.json"
    assert main(["bench", "rl", "--suite", str(tmp_path / "b.yaml"), "--ray", "--out", str(out)]) == 1
    rerun = json.loads(out.read_text())
    assert rerun["runner"]["shared_fs"] is True  # one machine: the probe file is seen
    (skipped, failed) = rerun["runs"]
    assert (skipped["status"], skipped["attempts"], skipped["num_timesteps"]) == ("skipped", 0, 64)
    assert len(invocations(run0)) == 2  # nothing started for it
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert "cannot resume" in failed["errors"][0] and "gamma" in failed["errors"][0]


def test_ray_suite_bad_inputs_fail_before_work(tmp_path: Path, ray_local: Any,
                                               capsys: pytest.CaptureFixture) -> None:
    suite = write_suite(tmp_path / "s.yaml", tmp_path / "runs")
    for extra, message in (
        (["--ray", "--threads", "2"], "--threads sets local training threads"),
        (["--ray", "--ray-retries", "99"], "max_retries must be in [0, 10]"),
    ):
        assert main(["bench", "rl", "--suite", str(suite), "--out", str(tmp_path / "o.json"), *extra]) == 2
        assert message in capsys.readouterr().err
    big = write_suite(tmp_path / "big.yaml", tmp_path / "runs", resources={"cpus_per_run": 64})
    assert main(["bench", "rl", "--suite", str(big), "--ray", "--out", str(tmp_path / "o.json")]) == 2
    assert "asks 64 CPUs" in capsys.readouterr().err
    zero = write_suite(tmp_path / "zero.yaml", tmp_path / "runs", resources={"cpus_per_run": 0})
    assert main(["bench", "rl", "--suite", str(zero), "--ray", "--out", str(tmp_path / "o.json")]) == 2
    assert "cpus_per_run" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "o.json").exists()
    from drivelab.agents.suite_ray import ClusterError, _check_reachable

    with pytest.raises(ClusterError, match="no Ray cluster answers at 127.0.0.1:1"):  # at once, not after minutes
        _check_reachable("127.0.0.1:1")
