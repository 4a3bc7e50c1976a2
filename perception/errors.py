"""Errors a user of the perception track can cause; each names the file or entry at fault."""

from __future__ import annotations

from drivelab.envs.errors import ConfigError, DrivelabError

__all__ = ["CheckpointError", "ConfigError", "DatasetError", "DrivelabError"]


class DatasetError(DrivelabError, ValueError):
    """A dataset file that is missing, corrupt or inconsistent (names the file or entry)."""


class CheckpointError(DrivelabError, ValueError):
    """A checkpoint that is missing, corrupt, or built for another model kind or architecture."""
