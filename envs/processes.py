"""Worker interpreters that answer commands over socket pairs: what both process backends share.

``ProcessGroup`` starts N fresh interpreters (never forked: highway-env, pygame, numba and
EnvPool's threads must not be copied mid-use; and unlike multiprocessing's ``spawn`` the caller's
``__main__`` is not re-run, so scripts need no ``if __name__ == "__main__"`` guard). Each builds
one object from a factory named ``"module:function"`` and then answers the commands that object
lists in its ``COMMANDS``. One ``call`` is one round trip to any subset of the workers.

Workers exit on ``close()``, when the group is garbage collected or the interpreter exits, and
when the parent dies (their socket reads end-of-file). A worker that dies or stops answering
raises ``WorkerError`` naming it, never a hang; the group is then broken and every worker stopped.
Users: ``drivelab.envs.workers`` (highway-env shards) and ``drivelab.envs.sharded`` (EnvPool
shards with their own cameras).
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import traceback
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from drivelab.envs.errors import WorkerError

DEFAULT_TIMEOUT_S = 300.0  # longest wait for one reply: a big shard on a loaded machine, not a hang
_CLOSE_TIMEOUT_S = 5.0
_SERVE_COMMAND = "from drivelab.envs.processes import serve; serve()"


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _error_reply(error: BaseException) -> tuple[str, Any]:
    text = traceback.format_exc()
    try:
        pickle.dumps(error)
    except Exception:  # noqa: BLE001 - an exception that cannot travel is sent as text
        error = RuntimeError(f"{type(error).__name__}: {error}")
    return "error", (error, text)


def serve() -> None:
    """Body of a worker process (``python -c ... <socket fd>``): build the object, answer until closed.

    The first message is ``(factory, args)``; the factory's object answers ``hello()`` once
    built, then each ``(command, args)`` in its ``COMMANDS`` until ``("close", ())``.
    """
    # Ctrl-C reaches the whole process group: the parent handles it and closes the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(sys.argv[1]))
    target = None
    try:
        factory, args = conn.recv()
        module, name = factory.split(":")
        target = getattr(importlib.import_module(module), name)(*args)
        conn.send(("ok", target.hello()))
        commands = tuple(target.COMMANDS)
        while True:
            try:
                command, args = conn.recv()
            except (EOFError, OSError):  # the parent is gone
                return
            if command == "close":
                return
            try:
                reply = ("ok", getattr(target, command)(*args)) if command in commands else (
                    "error", (RuntimeError(f"unknown worker command {command!r}"), ""))
            except Exception as error:  # noqa: BLE001 - reported to the parent, which re-raises it
                reply = _error_reply(error)
            try:
                conn.send(reply)
            except OSError:  # the parent is gone
                return
    except Exception as error:  # noqa: BLE001 - the object could not be built
        try:
            conn.send(_error_reply(error))
        except (OSError, ValueError):
            pass
    finally:
        if target is not None:
            target.close()
        conn.close()


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen
    conn: Connection


def _start(index: int, factory: str, args: tuple) -> _Worker:
    """Start one worker interpreter with the caller's import path, connected by a socket pair."""
    parent_end, child_end = socket.socketpair()
    with child_end:
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVE_COMMAND, str(child_end.fileno())],
            pass_fds=(child_end.fileno(),), stdin=subprocess.DEVNULL, env=environment,
        )
    # Only the worker holds the other end now: its death reads as end-of-file here.
    conn = Connection(parent_end.detach())
    conn.send((factory, args))
    return _Worker(index, process, conn)


def _shut_down(workers: list[_Worker], graceful: bool = True) -> None:
    """Ask every worker to exit (or kill it), then make sure it did; safe to call twice."""
    for worker in workers:
        try:
            worker.conn.send(("close", ())) if graceful else worker.process.kill()
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + _CLOSE_TIMEOUT_S
    for worker in workers:
        try:
            worker.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait(_CLOSE_TIMEOUT_S)
        worker.conn.close()
    workers.clear()


class ProcessGroup:
    """N worker interpreters, worker ``w`` built by ``factory(*args[w])``.

    Attributes:
        hellos: each worker's ``hello()`` reply, in worker order.
        label: names the group in errors, e.g. ``"drivelab/two-way-v0"``.
        timeout_s: longest wait for one worker's reply before ``WorkerError``.
    """

    def __init__(self, factory: str, args: Sequence[tuple], label: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.label = label
        self.timeout_s = timeout_s
        self._workers: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _shut_down, self._workers)
        self._broken: str | None = None
        try:
            for index, worker_args in enumerate(args):
                self._workers.append(_start(index, factory, tuple(worker_args)))
            replies = self._gather(range(len(args)), "start")
        except BaseException:
            self.close()
            raise
        self.hellos = [replies[w] for w in range(len(args))]

    def __len__(self) -> int:
        return len(self._workers)

    @property
    def processes(self) -> list[subprocess.Popen]:
        """The worker processes, in worker order (empty once closed)."""
        return [worker.process for worker in self._workers]

    def pid(self, w: int) -> int:
        return self._workers[w].process.pid

    def call(self, messages: dict[int, tuple[str, tuple]], what: str) -> dict[int, Any]:
        """Send each listed worker its ``(command, args)``, then wait for every reply (one round trip).

        A command that raised in a worker is raised here, with the worker's traceback as a note,
        once every reply is in (so the workers stay in step)."""
        if self._broken is not None:
            raise WorkerError(self._broken)
        if not self._workers:
            raise WorkerError(f"the worker processes of {self.label} were closed; make a new env")
        for w, message in messages.items():
            try:
                self._workers[w].conn.send(message)
            except (OSError, ValueError):
                raise self._fail(w, what) from None
        return self._gather(messages, what)

    def call_all(self, command: str, per_worker: Sequence[tuple] | None = None) -> list[Any]:
        """``command`` on every worker, with its own arguments (``per_worker[w]``) or none; replies in order."""
        workers = range(len(self._workers))
        replies = self.call({w: (command, tuple(per_worker[w]) if per_worker else ()) for w in workers}, command)
        return [replies[w] for w in workers]

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        self._finalizer()

    def _gather(self, indices: Iterable[int], what: str) -> dict[int, Any]:
        """Every listed worker's reply; a worker's death reads as end-of-file on its socket."""
        waiting = {self._workers[w].conn: w for w in indices}
        replies: dict[int, Any] = {}
        errors: list[tuple[int, BaseException, str]] = []
        deadline = time.monotonic() + self.timeout_s
        while waiting:
            ready = wait(list(waiting), max(0.0, deadline - time.monotonic()))
            if not ready:
                late = min(waiting.values())
                self._broken = (
                    f"drivelab worker {late} (pid {self.pid(late)}) of {self.label} did not answer {what} "
                    f"within {self.timeout_s:g} s (stuck, or starved of CPU); its envs are lost: make a new env"
                )
                _shut_down(self._workers, graceful=False)
                raise WorkerError(self._broken)
            for conn in ready:
                w = waiting.pop(conn)
                try:
                    status, payload = conn.recv()
                except (EOFError, OSError):
                    raise self._fail(w, what) from None
                if status == "ok":
                    replies[w] = payload
                else:
                    errors.append((w, *payload))
        if errors:
            w, error, text = errors[0]
            error.add_note(f"(raised in drivelab worker {w}, pid {self.pid(w)})\n{text}")
            raise error
        return replies

    def _fail(self, w: int, what: str) -> WorkerError:
        """The error of worker ``w`` gone during ``what``; every worker is stopped."""
        process = self._workers[w].process
        try:
            code = process.wait(1.0)
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        except subprocess.TimeoutExpired:
            how = "closed its connection"
        self._broken = (
            f"drivelab worker {w} (pid {process.pid}) of {self.label} {how} during {what}; "
            "its envs are lost: make a new env (the worker's own traceback, if it had one, is on stderr)"
        )
        _shut_down(self._workers, graceful=False)
        return WorkerError(self._broken)
