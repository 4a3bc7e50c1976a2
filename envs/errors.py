"""Errors of the envs layer (bad ids, backends, actions), all ``drivelab.core`` ``DrivelabError``s."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from drivelab.core.errors import ConfigError, DrivelabError

__all__ = [
    "ActionError", "BackendUnavailableError", "ConfigError", "DrivelabError", "UnknownEnvError", "WorkerError",
    "simulator_errors",
]


class UnknownEnvError(DrivelabError, ValueError):
    """An environment id that is not registered."""


class BackendUnavailableError(DrivelabError, RuntimeError):
    """A backend that is not installed or does not support the scenario or option."""


class WorkerError(DrivelabError, RuntimeError):
    """A worker process of the highway-env backend died or stopped answering."""


class ActionError(DrivelabError, ValueError):
    """An action batch of the wrong shape, dtype or range."""


@contextlib.contextmanager
def simulator_errors(backend: str, env_id: str, config: dict[str, Any]) -> Iterator[None]:
    """Turn a failure deep inside highway-env or EnvPool into one readable ``ConfigError``.

    Such failures come from values the type check lets through (``lanes_count=0``, say).
    """
    try:
        yield
    except DrivelabError:
        raise
    except Exception as error:  # noqa: BLE001 - any simulator failure is reported the same way
        raise ConfigError(
            f"{backend} failed to run {env_id} with config {config or '{}'}: "
            f"{type(error).__name__}: {error}. Check the config values against highway-env's defaults."
        ) from error
