"""Errors a user can cause in the agents layer; all are ``DrivelabError``s, printed as one line."""

from __future__ import annotations

from drivelab.core.errors import CheckpointError, ConfigError, DrivelabError, OutputPathError

__all__ = [
    "CheckpointError", "ConfigError", "DrivelabError", "OutputPathError", "PolicyLoadError", "PolicySpecError",
    "RunDirError", "UnsafePolicyFileError",
]


class PolicySpecError(DrivelabError, ValueError):
    """An exported policy whose spec is invalid or does not match the environment or its own weights."""


class PolicyLoadError(DrivelabError, ValueError):
    """A policy label (path or baseline name) that cannot be loaded."""


class UnsafePolicyFileError(PolicyLoadError):
    """A policy file that needs unpickling (which can run code) without ``trust_pickle``."""


class RunDirError(DrivelabError, RuntimeError):
    """A run directory that exists (and neither resume nor force was asked) or cannot be resumed."""
