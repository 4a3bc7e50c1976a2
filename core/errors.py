"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class DrivelabError(Exception):
    """Base class: something the user can fix; the message says what and how."""


class ConfigError(DrivelabError, ValueError):
    """An unknown, ill-typed or out-of-range configuration value."""


class CheckpointError(DrivelabError, ValueError):
    """A checkpoint, exported policy or model file that is missing, truncated or corrupt,
    or built for another model kind or architecture."""


class OutputPathError(DrivelabError, OSError):
    """An output path that cannot be written (a file where a folder is needed, no permission)."""
