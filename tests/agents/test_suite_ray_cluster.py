"""A suite on a real two-node Ray cluster on this machine, with the worker node killed during a run.

The head and a second node are started with ``ray start --block`` (loopback addresses, their own
temporary folders), each in its own session, so the test can kill exactly one node (its raylet,
agents and workers: every process of its session) and, at the end, only what it started.
Slow: two nodes, two runs and a retry take a few minutes on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",  # loopback only, one user: no token to share between the nodes
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_health_check_period_ms": "1000",  # a dead node is declared dead in seconds, not a minute
    "RAY_health_check_failure_threshold": "3",
}
# Ray replaces 127.0.0.1 (and localhost) by the machine's routable address; other loopback
# addresses it keeps. The head listens on 127.0.0.2, the second node on 127.0.0.3.
HEAD_IP, NODE_IP = "127.0.0.2", "127.0.0.3"
SUITE = {
    "name": "cluster", "scenarios": ["drivelab/highway-fast-v0"], "algos": ["ppo"], "seeds": [0, 1],
    "device": "cpu", "resources": {"cpus_per_run": 1, "gpus_per_run": 0},
    "overrides": {"total_steps": 128, "camera": {"width": 64, "height": 32, "metres_per_pixel": 1.0, "stack": 2},
                  "ppo.n_envs": 4, "ppo.n_steps": 8, "ppo.batch_size": 32, "ppo.n_epochs": 1,
                  "encoder.features_dim": 32, "eval_every_steps": 64, "eval_episodes": 2, "eval_envs": 2,
                  "checkpoint_every_steps": 32},
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HEAD_IP, 0))
        return probe.getsockname()[1]


def session_pids(session: int) -> list[int]:
    """Every process of a session (a node started with start_new_session: raylet, agents, workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != "Z":  # after the name: state, ppid, pgrp, session
                pids.append(int(entry.name))
    return pids


def kill_session(session: int) -> list[int]:
    pids = session_pids(session)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def runs_open_in(session: int) -> set[str]:
    """Names of the run folders whose files a session's processes hold open (a task trains there)."""
    names = set()
    for pid in session_pids(session):
        try:
            targets = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        for target in targets:
            parts = Path(target).parts
            names.update(parts[i + 1] for i, part in enumerate(parts[:-1]) if part.startswith("drivelab-run-"))
    return names


def start_node(arguments: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as handle:
        return subprocess.Popen([RAY, "start", "--block", "--num-cpus=1", "--disable-usage-stats", *arguments],
                                env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_for_cpus(address: str, cpus: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = subprocess.run([RAY, "status", f"--address={address}"], capture_output=True, text=True,
                                env={**os.environ, **RAY_ENV}).stdout
        if f"/{cpus}.0 CPU" in status:
            return
        time.sleep(2)
    raise AssertionError(f"the cluster at {address} did not reach {cpus} CPUs: {status[-500:]}")


@pytest.fixture
def cluster() -> Iterator[tuple[str, subprocess.Popen, subprocess.Popen]]:
    port = free_port()
    address = f"{HEAD_IP}:{port}"
    scratch = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    nodes: list[subprocess.Popen] = []
    try:
        head = ["--head", f"--port={port}", "--include-dashboard=false", f"--node-ip-address={HEAD_IP}"]
        nodes.append(start_node([*head, f"--temp-dir={scratch / 'head'}"], RAY_ENV, scratch / "head.log"))
        wait_for_cpus(address, 1)
        nodes.append(start_node([f"--address={address}", f"--node-ip-address={NODE_IP}",
                                 f"--temp-dir={scratch / 'node'}"], RAY_ENV, scratch / "node.log"))
        wait_for_cpus(address, 2)
        yield address, nodes[0], nodes[1]
    finally:
        for node in nodes:  # only what this test started, never `ray stop` (other Ray users on the machine)
            kill_session(node.pid)
            node.wait(timeout=60)
        for log in sorted(scratch.glob("*.log")):
            print(f"--- {log.name} (tail)\n" + "".join(log.read_text(errors="replace").splitlines(True)[-15:]))
        subprocess.run(["rm", "-rf", str(scratch)], check=False)


def invocations(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "run.json").read_text())["invocations"]


def test_suite_survives_a_killed_worker_node(tmp_path: Path, cluster: tuple) -> None:
    address, head, worker = cluster
    runs_dir = tmp_path / "runs"
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({**SUITE, "runs_dir": str(runs_dir)}))
    out, log = tmp_path / "record.json", tmp_path / "driver.log"
    command = [sys.executable, "-m", "drivelab.benchmarks.cli", "bench", "rl", "--suite", str(suite),
               "--ray", address, "--ray-shared-fs", "no", "--out", str(out)]
    with open(log, "w") as handle:
        driver = subprocess.Popen(command, env={**os.environ, **RAY_ENV}, stdout=handle, stderr=subprocess.STDOUT)
    killed: list[int] = []
    try:
        while driver.poll() is None:
            # Kill the worker node once the run it trains has sent a checkpoint to the driver's node.
            for name in [] if killed else runs_open_in(worker.pid):
                pointer = runs_dir / name / "checkpoints" / "last.json"
                if pointer.is_file() and not (runs_dir / name / "final").exists():
                    killed = kill_session(worker.pid)
                    print(f"killed the worker node ({len(killed)} processes) while it trained {name}, "
                          f"checkpoint at step {json.loads(pointer.read_text())['step']} in runs_dir")
                    break
            time.sleep(0.5)
    finally:
        if driver.poll() is None:
            driver.kill()
    print(log.read_text())
    assert killed, "the runs finished before both had a checkpoint; nothing was killed"
    assert driver.returncode == 0
    record = json.loads(out.read_text())
    runs = {r["seed"]: r for r in record["runs"]}
    assert record["runner"]["kind"] == "ray" and record["runner"]["nodes"] == 2
    assert record["runner"]["address"] == address
    assert record["runner"]["shared_fs"] is False
    assert sorted(r["attempts"] for r in runs.values()) == [1, 2]  # the run on the killed node ran again
    for run in runs.values():
        run_dir = Path(run["run_dir"])
        history = invocations(run_dir)
        finished = [i for i in history if "finished" in i]
        print(f"seed {run['seed']}: status {run['status']}, attempts {run['attempts']}, errors {run['errors']}, "
              f"invocations resumed from {[i['resumed_from_step'] for i in history]}, "
              f"finished {len(finished)}x at {finished[0]['finished']['num_timesteps']} steps")
        assert run["status"] == "trained" and run["num_timesteps"] == 128
        assert len(finished) == 1 and history[-1] is finished[0]  # finished once, by its last invocation
        assert (run_dir / "final" / "policy.json").is_file() and (run_dir / "best" / "policy.json").is_file()
        assert json.loads((run_dir / "evaluations.jsonl").read_text().splitlines()[-1])["step"] == 128
        assert run["best_eval"]["episodes"] == 2
        if run["attempts"] == 2:  # resumed from the checkpoint it had sent before its node died
            assert len(run["errors"]) == 1 and len(history) == 2
            assert history[1]["resumed_from_step"] >= 32
        else:
            assert run["errors"] == [] and [i["resumed_from_step"] for i in history] == [None]
    assert head.poll() is None  # the head survived; the worker node is gone
    assert not session_pids(worker.pid)
