"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class DrivelabError(Exception):
    """Base class: something the user can fix; the message says what and how."""


class UnknownEnvError(DrivelabError, ValueError):
    """An environment id that is not registered."""


class ConfigError(DrivelabError, ValueError):
    """An unknown, ill-typed or out-of-range configuration value."""


class BackendUnavailableError(DrivelabError, RuntimeError):
    """A backend that is not installed or does not support the scenario or option."""


class ActionError(DrivelabError, ValueError):
    """An action batch of the wrong shape, dtype or range."""
