"""The error only the perception track raises; the shared kinds live in ``drivelab.core.errors``."""

from __future__ import annotations

from drivelab.core.errors import DrivelabError


class DatasetError(DrivelabError, ValueError):
    """A dataset file that is missing, corrupt or inconsistent (names the file or entry)."""
