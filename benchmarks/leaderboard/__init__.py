"""The leaderboard library: the SQLite store, statistics, rendered tables/pages and submission.

No argparse here: everything is callable from Python.

- ``store``: ``Leaderboard`` (the SQLite board), ``EntryMetadata``, ``RunRecord``, ``StoredEntry``.
- ``schema``: the SQLite schema (version 2: entries owned by their identity) and the migration from 1.
- ``stats``: mean, IQM and stratified-bootstrap confidence intervals (Agarwal et al. 2021).
- ``pages``: ranking, terminal table, Markdown, CSV and a static HTML folder.
- ``submit``: evaluate policies under the protocol and submit them, in one call
  (``submit.evaluate_and_submit``); build an entry's metadata; record failure videos.

The store's names are re-exported here; import ``submit`` (it loads the agents and torch) and
``pages`` (matplotlib, when writing HTML) from their modules.
"""

from drivelab.benchmarks.leaderboard.store import (
    DEFAULT_DB_PATH,
    SCHEMA_VERSION,
    CorruptDatabaseError,
    EntryMetadata,
    Leaderboard,
    LeaderboardError,
    RunRecord,
    StoredEntry,
    Submission,
)

__all__ = [
    "DEFAULT_DB_PATH",
    "SCHEMA_VERSION",
    "CorruptDatabaseError",
    "EntryMetadata",
    "Leaderboard",
    "LeaderboardError",
    "RunRecord",
    "StoredEntry",
    "Submission",
]
