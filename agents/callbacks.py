"""Stable-Baselines3 callbacks of a training run: metrics, progress bar, checkpoints, evaluation.

Checkpoints and evaluations happen at the start of a rollout: at that point the algorithm has
trained on every step counted in ``num_timesteps``, so a checkpoint is a consistent state to
resume from (PPO's partial rollouts are never saved).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, TensorBoardOutputFormat
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from drivelab.agents.checkpoints import save_checkpoint
from drivelab.agents.evaluation import EvaluationResult
from drivelab.core.files import write_text_atomic

log = logging.getLogger("drivelab.agents")

# SB3's own key prefixes -> the namespaces drivelab logs under (CleanRL-style).
KEY_NAMESPACES = {"train/": "losses/", "rollout/": "charts/", "time/": "perf/"}


def namespaced(key: str) -> str:
    """``"train/value_loss"`` -> ``"losses/value_loss"``; drivelab keys pass through."""
    for prefix, namespace in KEY_NAMESPACES.items():
        if key.startswith(prefix):
            return namespace + key[len(prefix):]
    return key


class NamespacedWriter(KVWriter):
    """Renames SB3 keys into drivelab namespaces, then writes through another ``KVWriter``."""

    def __init__(self, inner: KVWriter) -> None:
        self.inner = inner

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        self.inner.write(
            {namespaced(k): v for k, v in key_values.items()},
            {namespaced(k): v for k, v in key_excluded.items()},
            step,
        )

    def close(self) -> None:
        self.inner.close()


class ResumableTensorBoard(TensorBoardOutputFormat):
    """SB3's TensorBoard writer that, on a resume, tells TensorBoard to drop the rolled-back steps.

    ``purge_step`` (the resumed checkpoint's step) makes TensorBoard discard events at or past it
    from the earlier event files, so a resumed run shows one line per key, not overlapping ones.
    """

    def __init__(self, folder: str, purge_step: int | None = None) -> None:  # noqa: B042 - replaces the parent's
        self.writer = SummaryWriter(log_dir=folder, purge_step=purge_step)
        self._is_closed = False


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop the rows of a JSON-lines log past ``last_step`` (steps a resume rolls back), atomically."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a line torn by a kill
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)) and row["step"] <= last_step:
            kept.append(line)
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))


class JsonLinesWriter(KVWriter):
    """Appends one JSON object per dump to ``metrics.jsonl`` (kept across resumes)."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "a")

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        row: dict[str, Any] = {"step": int(step)}
        for key, value in sorted(key_values.items()):
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                row[key] = float(value)
        self.handle.write(json.dumps(row) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class EpisodeMetricsCallback(BaseCallback):
    """Logs finished episodes (``charts/``) and throughput (``perf/sps``), dumping every N steps."""

    def __init__(self, log_every_steps: int) -> None:
        super().__init__()
        self.log_every_steps = log_every_steps
        self._episodes: dict[str, list[float]] = {"return": [], "length": [], "crashed": [], "mean_speed": []}
        self._next_dump = 0
        self._dumped_at = -1
        self._clock = (0.0, 0)

    def _on_training_start(self) -> None:
        self._next_dump = self.num_timesteps + self.log_every_steps
        self._clock = (time.perf_counter(), self.num_timesteps)

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            driving = info.get("driving")
            if driving is not None:
                for key in self._episodes:
                    self._episodes[key].append(float(driving[key]))
        return True

    def _on_rollout_start(self) -> None:
        # At a rollout start the previous update's losses are recorded too: one row per step.
        if self.num_timesteps >= self._next_dump:
            self.dump()

    def _on_training_end(self) -> None:
        # Not twice at one step (a rollout end just dumped), unless a final evaluation recorded more.
        if self._dumped_at != self.num_timesteps or self.logger.name_to_value:
            self.dump()

    def dump(self) -> None:
        """Record means since the last dump and write every logged value."""
        now, steps = time.perf_counter(), self.num_timesteps
        start_time, start_steps = self._clock
        if now > start_time and steps > start_steps:
            self.logger.record("perf/sps", (steps - start_steps) / (now - start_time))
        self._clock = (now, steps)
        if self._episodes["return"]:
            self.logger.record("charts/episodic_return", float(np.mean(self._episodes["return"])))
            self.logger.record("charts/episodic_length", float(np.mean(self._episodes["length"])))
            self.logger.record("charts/crash_rate", float(np.mean(self._episodes["crashed"])))
            self.logger.record("charts/mean_speed", float(np.mean(self._episodes["mean_speed"])))
            self.logger.record("charts/episodes", len(self._episodes["return"]))
            for values in self._episodes.values():
                values.clear()
        self.logger.record("perf/total_steps", steps)
        self.logger.dump(step=steps)
        self._dumped_at = steps
        self._next_dump = steps + self.log_every_steps


class TrainingProgressBar(BaseCallback):
    """tqdm bar over env steps: rate in env-steps/s, ETA, and the mean of recent returns."""

    def __init__(self, total_steps: int, recent_episodes: int = 50) -> None:
        super().__init__()
        self.total_steps = total_steps
        self.recent_returns: deque[float] = deque(maxlen=recent_episodes)
        self.bar: tqdm | None = None
        self._last_postfix = 0.0

    def _on_training_start(self) -> None:
        self.bar = tqdm(
            total=self.total_steps, initial=self.num_timesteps, unit="step", unit_scale=True,
            dynamic_ncols=True, desc="train", smoothing=0.1,
        )

    def _on_step(self) -> bool:
        assert self.bar is not None
        for info in self.locals.get("infos", ()):
            if "episode" in info:
                self.recent_returns.append(float(info["episode"]["r"]))
        self.bar.update(self.training_env.num_envs)
        now = time.perf_counter()
        if self.recent_returns and now - self._last_postfix > 1.0:
            self.bar.set_postfix(ret=f"{np.mean(self.recent_returns):.2f}", refresh=False)
            self._last_postfix = now
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


class EveryNStepsCallback(BaseCallback):
    """Calls ``run()`` at the first rollout start at or past each multiple of ``every_steps``.

    Rollout starts are where SB3 has a consistent model (PPO between rollouts and updates, DQN
    between vector steps). Subclasses implement ``run`` and call ``schedule()`` when done.
    """

    def __init__(self, every_steps: int) -> None:
        super().__init__()
        self.every_steps = every_steps
        self._next = 0

    def schedule(self) -> None:
        """Set the next firing to the multiple of ``every_steps`` after the current step."""
        self._next = (self.num_timesteps // self.every_steps + 1) * self.every_steps

    def _on_training_start(self) -> None:
        self.schedule()

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self._next:
            self.run()

    def _on_step(self) -> bool:
        return True

    def run(self) -> None:
        raise NotImplementedError


class RunCheckpointer(EveryNStepsCallback):
    """Saves a resumable checkpoint every ``every_steps`` env steps and at the end of training."""

    def __init__(self, folder: Path, algo: str, every_steps: int, wall_s: Callable[[], float] | None = None) -> None:
        super().__init__(every_steps)
        self.folder, self.algo, self.wall_s = folder, algo, wall_s

    def _on_training_end(self) -> None:
        self.run()

    def run(self) -> None:
        wall_s = self.wall_s() if self.wall_s is not None else None
        info = save_checkpoint(self.model, self.algo, self.folder, training_wall_s=wall_s)
        log.debug("checkpoint at step %d in %s", info.step, info.folder)
        self.schedule()


class TimeBudgetCallback(BaseCallback):
    """Stops training at the first step after ``wall_s()`` passes ``budget_s`` seconds.

    ``wall_s`` measures the whole run (earlier sessions of a resumed run included), so "trained
    for at most N minutes" holds across resumes; the step in flight and the final checkpoint and
    export still finish, so the run ends a few seconds past the budget.
    """

    def __init__(self, wall_s: Callable[[], float], budget_s: float) -> None:
        super().__init__()
        self.wall_s, self.budget_s = wall_s, budget_s

    def _on_step(self) -> bool:
        if self.wall_s() < self.budget_s:
            return True
        log.info("time budget of %.1f min reached at step %d; stopping", self.budget_s / 60, self.num_timesteps)
        return False


class StopOnSignal(BaseCallback):
    """Stops training at the next step once SIGINT or SIGTERM arrived (checkpoint and export follow).

    The handlers are installed for the duration of training only and the previous ones restored
    after, so the process's own signal handling is unchanged outside ``learn``. A second signal
    while the checkpoint is written interrupts at once (``KeyboardInterrupt``).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        super().__init__()
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        log.warning("%s received: stopping at the next step, then checkpointing", signal.Signals(signum).name)

    def _on_training_start(self) -> None:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}

    def _on_step(self) -> bool:
        return self.received is None

    def restore(self) -> None:
        """Put the handlers that were there before training back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class PeriodicEvalCallback(EveryNStepsCallback):
    """Evaluates the current policy on held-out seeds every N steps and keeps the best one.

    Args:
        evaluate: runs the evaluation for the current model and returns its result.
        on_best: called with the result when the mean return beats every earlier evaluation.
        every_steps: evaluation period in env steps (also evaluated once at the end).
        history_path: JSON-lines file that receives every evaluation.
        best_mean_return: the best earlier evaluation's mean return (of a resumed run).
        skip_final: whether to skip the evaluation at the end of training.
        on_evaluation: called with (step, result) after every evaluation; returning False
            stops training at the next step (e.g. an Optuna pruner deciding the trial is poor).
    """

    def __init__(
        self,
        evaluate: Callable[[], EvaluationResult],
        on_best: Callable[[EvaluationResult], None],
        every_steps: int,
        history_path: Path,
        best_mean_return: float = -np.inf,
        skip_final: Callable[[], bool] = lambda: False,
        on_evaluation: Callable[[int, EvaluationResult], bool] | None = None,
    ) -> None:
        super().__init__(every_steps)
        self.on_evaluation = on_evaluation
        self.stopped_by_hook = False
        self.evaluate, self.on_best, self.history_path = evaluate, on_best, history_path
        self.best_mean_return = best_mean_return
        self.skip_final = skip_final  # e.g. when a signal stopped training: save, do not evaluate
        self._last_step = -1

    def _on_training_end(self) -> None:
        if self._last_step != self.num_timesteps and not self.skip_final() and not self.stopped_by_hook:
            self.run()

    def run(self) -> None:
        result = self.evaluate()
        summary = {"step": int(self.num_timesteps), **result.summary()}
        self.logger.record("eval/mean_return", summary["mean_return"])
        self.logger.record("eval/crash_rate", summary["crash_rate"])
        with open(self.history_path, "a") as handle:
            handle.write(json.dumps(summary) + "\n")
        if summary["mean_return"] > self.best_mean_return:
            self.best_mean_return = summary["mean_return"]
            self.on_best(result)
        log.info(
            "eval at step %d: return %.2f, crash rate %.2f (best %.2f)",
            self.num_timesteps, summary["mean_return"], summary["crash_rate"], self.best_mean_return,
        )
        self._last_step = self.num_timesteps
        if self.on_evaluation is not None and self.on_evaluation(int(self.num_timesteps), result) is False:
            self.stopped_by_hook = True
        self.schedule()

    def _on_step(self) -> bool:
        return not self.stopped_by_hook
