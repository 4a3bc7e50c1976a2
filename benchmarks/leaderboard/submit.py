"""Evaluate policies under the protocol and submit them to a leaderboard, in one Python call.

``evaluate_and_submit`` checks every argument (and the board, and the failure-video folder)
before any evaluation starts, loads the policies through ``drivelab.agents.load_policy`` (the
one loader, with its pickle refusal and spec validation), refuses run sets that are not runs
of one agent, evaluates each policy with ``drivelab.agents.evaluate`` (the one episode runner),
optionally replays failed episodes into MP4 files and one success and one failure into small
clips for the leaderboard page (``replays``), and stores the entry. ``evaluate_policies``
is the same without the submission (``drivelab eval`` without ``--submit``).

Example:
    >>> from drivelab.benchmarks.leaderboard import submit
    >>> outcome = submit.evaluate_and_submit(                            # doctest: +SKIP
    ...     ["runs/ppo-s0/final", "runs/ppo-s1/final"], "drivelab/highway-fast-v0",
    ...     db="runs/leaderboard.db", name="ppo-camera", submitter="alice")
    >>> print("\\n".join(submit.summary_lines(outcome.results, outcome.protocol)))  # doctest: +SKIP
    >>> print("\\n".join(submit.submission_lines(outcome)))             # doctest: +SKIP
    updated entry 3 (alice / ppo-camera on drivelab/highway-fast-v0, drivelab-eval-v1, highway-env): ...
"""

from __future__ import annotations

import dataclasses
import getpass
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivelab.agents import Policy, PolicySource, env_kwargs_from_spec, load_policy
from drivelab.agents.evaluation import DEFAULT_NUM_ENVS, EvaluationResult, evaluate
from drivelab.agents.protocol import DEFAULT_PROTOCOL, EvalProtocol, load_protocol
from drivelab.benchmarks.leaderboard.replays import record_example_videos, record_failure_videos
from drivelab.benchmarks.leaderboard.stats import entry_stats
from drivelab.benchmarks.leaderboard.store import (
    DEFAULT_DB_PATH,
    EntryMetadata,
    Leaderboard,
    RunRecord,
    StoredEntry,
    check_board_path,
)
from drivelab.core import provenance
from drivelab.core.errors import ConfigError, OutputPathError
from drivelab.core.files import check_writable, sha256_bytes

# Spec keys that describe an export's files or its evaluations, not the agent's config.
SPEC_KEYS_NOT_CONFIG = ("weights", "weights_sha256", "encoder_file", "eval")
DEFAULT_MAX_FAILURE_VIDEOS = 10
MakeEnv = Callable[[int], Any]  # num_envs -> a drivelab vector env (tests, custom backends)


class SubmissionError(ConfigError):
    """A set of policies that cannot form one leaderboard entry (duplicates, mixed agents)."""


@dataclass(frozen=True)
class Evaluation:
    """Policies evaluated under a protocol: one ``EvaluationResult`` per policy (training run)."""

    protocol: EvalProtocol
    env_id: str
    policies: tuple[Policy, ...]
    results: tuple[EvaluationResult, ...]
    failures_manifest: Path | None = None  # failures.json, when failures were recorded
    examples_manifest: Path | None = None  # examples.json, when example videos were recorded

    @property
    def sources(self) -> tuple[PolicySource, ...]:
        """Where each policy came from (label, sha256, spec)."""
        return tuple(policy.source for policy in self.policies)


@dataclass(frozen=True)
class SubmitOutcome:
    """What ``evaluate_and_submit`` did."""

    entry_id: int
    db: str  # the board as shown: a path, or a URL with its password masked
    metadata: EntryMetadata
    evaluation: Evaluation
    previous: StoredEntry | None  # the entry this submission replaced (same identity), if any

    @property
    def results(self) -> tuple[EvaluationResult, ...]:
        """One result per run."""
        return self.evaluation.results

    @property
    def protocol(self) -> EvalProtocol:
        """The protocol the runs were evaluated under."""
        return self.evaluation.protocol

    @property
    def partial(self) -> bool:
        """Whether a run has fewer episodes than the protocol asks for (ranked below complete)."""
        return any(len(r.episodes) < self.protocol.episodes for r in self.results)


# --- Checks, all before any evaluation ------------------------------------------------------


def _check_int(name: str, value: int | None, low: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_folder_writable(folder: Path, option: str) -> None:
    """``check_writable`` plus a probe: create and remove a temporary folder where it would go.

    The probe catches what permission bits cannot (``/proc``, read-only mounts, running as root).
    """
    try:
        check_writable(folder, folder=True)
        parent = folder if folder.is_dir() else folder.parent
        while not parent.exists():
            parent = parent.parent
        Path(tempfile.mkdtemp(dir=parent, prefix=".drivelab-probe.")).rmdir()
    except (OutputPathError, OSError) as error:
        reason = error if isinstance(error, OutputPathError) else (error.strerror or error)
        raise OutputPathError(f"{option} {folder}: cannot write there ({reason}); choose another folder") from None


def check_eval_options(
    env_id: str,
    *,
    episodes: int | None = None,
    backend: str | None = None,
    num_envs: int = DEFAULT_NUM_ENVS,
    protocol: str | EvalProtocol = DEFAULT_PROTOCOL,
    record_failures: str | Path | None = None,
    max_failure_videos: int = DEFAULT_MAX_FAILURE_VIDEOS,
    training_steps: int | None = None,
    training_wall_s: float | None = None,
    record_examples: str | Path | None = None,
) -> EvalProtocol:
    """Check evaluation options without evaluating anything; return the protocol.

    Raises:
        ConfigError, ProtocolError, OutputPathError: a value out of range, a scenario, backend
            or episode count the protocol does not have, or an unwritable failure folder.
    """
    spec = load_protocol(protocol) if isinstance(protocol, str) else protocol
    _check_int("--num-envs", num_envs, 1)
    _check_int("--episodes", episodes, 1)
    _check_int("--max-failure-videos", max_failure_videos, 0)
    _check_int("--training-steps", training_steps, 0)
    if training_wall_s is not None and not (math.isfinite(training_wall_s) and training_wall_s >= 0):
        raise ConfigError(f"--training-wall-s must be a finite number of seconds >= 0, got {training_wall_s!r}")
    spec.seeds_for(env_id, episodes)  # an unknown scenario or a count the protocol lacks
    if backend is not None:
        spec.check_backend(backend)
    if record_failures is not None:
        _check_folder_writable(Path(record_failures), "--record-failures")
    if record_examples is not None:
        _check_folder_writable(Path(record_examples), "--record-examples")
    return spec


def _agent_kind(source: PolicySource) -> dict[str, Any]:
    """What all runs of one entry must share: algorithm, observation and env spec."""
    kwargs = env_kwargs_from_spec(source.spec)
    return {
        "algorithm": source.spec.get("algo") or source.file_format,
        "observation": kwargs.get("observation"),
        "camera": kwargs.get("camera"),
        "env_config": kwargs.get("config"),
    }


def check_runs_of_one_agent(sources: Sequence[PolicySource]) -> None:
    """Refuse duplicate runs (same digest) and runs of different agents in one entry.

    Raises:
        SubmissionError: two runs are the same file, or differ in algorithm, observation,
            camera or env config.
    """
    seen: dict[str, str] = {}
    for source in sources:
        if source.sha256 in seen:
            raise SubmissionError(
                f"{source.label} and {seen[source.sha256]} are the same policy (sha256 "
                f"{source.sha256[:12]}); each --policy must be a different training run"
            )
        seen[source.sha256] = source.label
    first = _agent_kind(sources[0])
    for source in sources[1:]:
        kind = _agent_kind(source)
        for key, value in kind.items():
            if value != first[key]:
                raise SubmissionError(
                    f"runs of one entry must share algorithm, observation and env spec: "
                    f"{sources[0].label} has {key}={first[key]!r}, {source.label} has {key}={value!r}; "
                    "submit them as separate entries (--name)"
                )


# --- Evaluation -----------------------------------------------------------------------------


def evaluate_policies(
    policies: Sequence[str],
    env_id: str,
    *,
    episodes: int | None = None,
    backend: str | None = None,
    num_envs: int = DEFAULT_NUM_ENVS,
    protocol: str | EvalProtocol = DEFAULT_PROTOCOL,
    trust_pickle: bool = False,
    record_failures: str | Path | None = None,
    max_failure_videos: int = DEFAULT_MAX_FAILURE_VIDEOS,
    progress: bool = False,
    make_env: MakeEnv | None = None,
    for_submission: bool = False,
    record_examples: str | Path | None = None,
) -> Evaluation:
    """Load and evaluate policies (training runs of one agent) on the protocol's held-out seeds.

    Args:
        policies: labels ``load_policy`` takes: ``baseline:NAME`` or a path (export folder,
            ``policy.json``, ``policy.safetensors``, run folder; SB3 ``.zip`` with trust_pickle).
        env_id: the scenario, e.g. ``"drivelab/highway-fast-v0"``.
        episodes: episodes per policy (default: the protocol's, 100).
        backend: ``"highway-env"`` (the protocol's reference, default) or ``"envpool"``.
        num_envs: envs stepped together; does not change any result.
        protocol: protocol version or object.
        trust_pickle: allow policy files that need unpickling (runs their code).
        record_failures: replay failed episodes into this folder as MP4 (and ``failures.json``).
        max_failure_videos: record at most this many failures.
        progress: show a progress bar.
        make_env: build the vector env from ``num_envs`` instead of ``drivelab.envs.make_vec``.
        for_submission: also refuse policies trained on seeds outside the protocol's training range.
        record_examples: replay one success and one failure (the shortest of each, over all runs)
            into this folder as small MP4s for the leaderboard page (and ``examples.json``).

    Raises:
        DrivelabError: a bad option, policy or run set (before anything is evaluated).
    """
    if not policies:
        raise ConfigError("give at least one policy")
    spec = check_eval_options(env_id, episodes=episodes, backend=backend, num_envs=num_envs, protocol=protocol,
                              record_failures=record_failures, max_failure_videos=max_failure_videos,
                              record_examples=record_examples)  # fmt: skip
    loaded = tuple(load_policy(label, env_id, trust_pickle=trust_pickle) for label in policies)
    sources = [policy.source for policy in loaded]
    check_runs_of_one_agent(sources)
    if for_submission:  # a policy trained on evaluation seeds cannot enter the leaderboard
        spec.assert_disjoint(s.spec["seed"] for s in sources if isinstance(s.spec.get("seed"), int))
    results = tuple(
        evaluate(policy, env_id, episodes=episodes, backend=backend, num_envs=num_envs, protocol=spec,
                 env_kwargs=env_kwargs_from_spec(policy.source.spec), make_env=make_env, progress=progress)
        for policy in loaded
    )  # fmt: skip
    evaluation = Evaluation(spec, env_id, loaded, results)
    if record_failures is not None:
        results, manifest = record_failure_videos(Path(record_failures), loaded, results, max_failure_videos)
        evaluation = dataclasses.replace(evaluation, results=tuple(results), failures_manifest=manifest)
    if record_examples is not None:  # after the failures: the page shows these episodes' videos
        results, manifest = record_example_videos(Path(record_examples), loaded, evaluation.results)
        evaluation = dataclasses.replace(evaluation, results=tuple(results), examples_manifest=manifest)
    return evaluation


def evaluate_and_submit(
    policies: Sequence[str],
    env_id: str,
    *,
    db: str | Path = DEFAULT_DB_PATH,
    name: str,
    submitter: str | None = None,
    algorithm: str | None = None,
    episodes: int | None = None,
    backend: str | None = None,
    num_envs: int = DEFAULT_NUM_ENVS,
    protocol: str | EvalProtocol = DEFAULT_PROTOCOL,
    trust_pickle: bool = False,
    training_steps: int | None = None,
    training_wall_s: float | None = None,
    record_failures: str | Path | None = None,
    max_failure_videos: int = DEFAULT_MAX_FAILURE_VIDEOS,
    progress: bool = False,
    make_env: MakeEnv | None = None,
    record_examples: str | Path | None = None,
) -> SubmitOutcome:
    """Evaluate policies (training runs of one agent) and store them as one leaderboard entry.

    The entry is identified by (submitter, name, scenario, protocol, backend): submitting again
    under the same identity updates that entry, and ``SubmitOutcome.previous`` holds what it
    replaced (``submission_lines`` says old vs new). Fewer episodes than the protocol's count
    make a *partial* entry, ranked below every complete one.

    Args:
        policies: one label per training run (see ``evaluate_policies``); no file twice, and all
            of one algorithm, observation and env spec.
        env_id: the scenario.
        db: the leaderboard file (created if missing).
        name: the agent's name on the leaderboard.
        submitter: who submits (default: the OS user).
        algorithm: the algorithm to show (default: from the policy spec).
        episodes, backend, num_envs, protocol, trust_pickle, record_failures,
            max_failure_videos, progress, make_env, record_examples: as in ``evaluate_policies``.
        training_steps: training env steps (default: from the policy spec).
        training_wall_s: training wall time [s] (default: from the policy spec).

    Returns:
        The ``SubmitOutcome``: entry id, metadata, results and the replaced entry, if any.

    Raises:
        DrivelabError: a bad option, board, policy or run set, before anything is evaluated;
            ``LeaderboardError`` if the write fails (nothing stored).

    Example:
        >>> outcome = evaluate_and_submit(["baseline:idm"], "drivelab/highway-fast-v0",  # doctest: +SKIP
        ...                               db="board.db", name="idm", episodes=20)
        >>> outcome.entry_id, outcome.partial                                            # doctest: +SKIP
        (1, True)
    """
    if not name or not name.strip():
        raise ConfigError("a submission needs a name (--name NAME: the agent's name on the leaderboard)")
    submitter = submitter if submitter is not None else getpass.getuser()
    if not submitter.strip():
        raise ConfigError("--submitter must not be empty")
    check_eval_options(env_id, episodes=episodes, backend=backend, num_envs=num_envs, protocol=protocol,
                       training_steps=training_steps, training_wall_s=training_wall_s)  # fmt: skip
    check_board_path(db)  # a bad --db fails before evaluating, and nothing is created yet
    evaluation = evaluate_policies(
        policies, env_id, episodes=episodes, backend=backend, num_envs=num_envs, protocol=protocol,
        trust_pickle=trust_pickle, record_failures=record_failures, max_failure_videos=max_failure_videos,
        progress=progress, make_env=make_env, for_submission=True, record_examples=record_examples,
    )  # fmt: skip
    metadata = build_metadata(evaluation, name=name, submitter=submitter, algorithm=algorithm,
                              training_steps=training_steps, training_wall_s=training_wall_s)  # fmt: skip
    runs = [
        RunRecord(s.sha256, s.label, r.episodes, s.spec.get("seed") if isinstance(s.spec.get("seed"), int) else None)
        for s, r in zip(evaluation.sources, evaluation.results)
    ]
    with Leaderboard(db) as board:
        stored = board.submit(metadata, runs)
        location = board.location
    return SubmitOutcome(stored.entry_id, location, metadata, evaluation, stored.previous)


# --- Metadata -------------------------------------------------------------------------------


def entry_digest(sources: Sequence[PolicySource]) -> str:
    """The entry's policy digest: the file's sha256, or of all run digests for several runs."""
    if len(sources) == 1:
        return sources[0].sha256
    return sha256_bytes("\n".join(sorted(s.sha256 for s in sources)).encode())


def _spec_value(sources: Sequence[PolicySource], key: str) -> Any:
    values = [s.spec.get(key) for s in sources if s.spec.get(key) is not None]
    return values[0] if values else None


def build_metadata(
    evaluation: Evaluation,
    *,
    name: str,
    submitter: str,
    algorithm: str | None = None,
    training_steps: int | None = None,
    training_wall_s: float | None = None,
) -> EntryMetadata:
    """Everything a leaderboard entry records about this submission."""
    sources, results = evaluation.sources, evaluation.results
    config: dict[str, Any] = {
        "training": [
            dict(s.run_config) or {k: v for k, v in s.spec.items() if k not in SPEC_KEYS_NOT_CONFIG}
            for s in sources
        ],
        "evaluation": {
            "protocol": evaluation.protocol.version, "env_id": evaluation.env_id,
            "backend": results[0].backend, "episodes": len(results[0].episodes),
        },
    }  # fmt: skip
    return EntryMetadata(
        submitter=submitter,
        agent_name=name,
        algorithm=algorithm or _spec_value(sources, "algo") or "unknown",
        env_id=evaluation.env_id,
        protocol_version=evaluation.protocol.version,
        policy_sha256=entry_digest(sources),
        backend=results[0].backend,
        config=config,
        package_versions=provenance.package_versions(),
        git_commit=provenance.git_commit(),
        training_steps=training_steps if training_steps is not None else _spec_value(sources, "num_timesteps"),
        training_wall_s=training_wall_s if training_wall_s is not None else _spec_value(sources, "training_wall_s"),
        hardware=provenance.hardware_summary(),
        protocol_episodes=evaluation.protocol.episodes,
    )


# --- What to print --------------------------------------------------------------------------


def summary_lines(results: Sequence[EvaluationResult], protocol: EvalProtocol) -> list[str]:
    """Mean and IQM return with 95% CIs, crash, success and collision rates of one run set."""
    stats = entry_stats([r.as_run_arrays() for r in results], reps=protocol.bootstrap_reps)
    return [
        f"{results[0].env_id} [{results[0].backend}, {protocol.version}]: "
        f"{stats.num_runs} run(s) x {stats.num_episodes // stats.num_runs} episodes",
        f"  mean return {stats.mean_return:.3f}  95% CI [{stats.mean_return_ci.low:.3f}, "
        f"{stats.mean_return_ci.high:.3f}]",
        f"  IQM return  {stats.iqm_return:.3f}  95% CI [{stats.iqm_return_ci.low:.3f}, "
        f"{stats.iqm_return_ci.high:.3f}]",
        f"  crash rate {stats.crash_rate:.3f}  success rate {stats.success_rate:.3f}  "
        f"collisions/km {stats.collisions_per_km:.3f}",
    ]


def _run_arrays(runs: Sequence[RunRecord]) -> list[Mapping[str, Any]]:
    return [
        {
            "return": [e.episode_return for e in run.episodes],
            "crashed": [e.crashed for e in run.episodes],
            "success": [e.success for e in run.episodes],
            "distance_m": [e.distance_m for e in run.episodes],
        }
        for run in runs
    ]


def submission_lines(outcome: SubmitOutcome) -> list[str]:
    """What the submission did: a new entry, or an update with old vs new numbers."""
    meta = outcome.metadata
    who = f"{meta.submitter} / {meta.agent_name} on {meta.env_id}, {meta.protocol_version}, {meta.backend}"
    lines = []
    if outcome.previous is None:
        lines.append(f"submitted new entry {outcome.entry_id} ({who}) to {outcome.db}")
    else:
        old = entry_stats(_run_arrays(outcome.previous.runs), reps=1)
        new = entry_stats([r.as_run_arrays() for r in outcome.results], reps=1)
        old_meta = outcome.previous.metadata
        lines += [
            f"updated entry {outcome.entry_id} ({who}) in {outcome.db}; it replaces the entry of "
            f"{outcome.previous.updated_at}:",
            f"  mean return {old.mean_return:.3f} -> {new.mean_return:.3f}, crash rate "
            f"{old.crash_rate:.3f} -> {new.crash_rate:.3f}, runs x episodes "
            f"{old.num_runs}x{old.num_episodes // max(old.num_runs, 1)} -> "
            f"{new.num_runs}x{new.num_episodes // new.num_runs}",
            f"  policy sha256 {old_meta.policy_sha256[:12]} -> {meta.policy_sha256[:12]}",
        ]
    if outcome.partial:
        lines.append(
            f"  partial entry: fewer than the protocol's {outcome.protocol.episodes} episodes per run; "
            "it is ranked below every complete entry"
        )
    return lines
