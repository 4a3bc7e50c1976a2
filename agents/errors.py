"""Errors a user can cause in the agents layer; all are ``DrivelabError``s, printed as one line."""

from __future__ import annotations

from drivelab.envs.errors import ConfigError, DrivelabError

__all__ = ["CheckpointError", "ConfigError", "DrivelabError", "PolicySpecError", "RunDirError"]


class CheckpointError(DrivelabError, RuntimeError):
    """A checkpoint or exported policy that is missing, truncated or corrupt."""


class PolicySpecError(DrivelabError, ValueError):
    """An exported policy whose spec does not match the environment or its own weights."""


class RunDirError(DrivelabError, RuntimeError):
    """A run directory that exists (and neither resume nor force was asked) or cannot be resumed."""
