"""The leaderboard library: the store (an SQLite file or a PostgreSQL database), statistics,
rendered tables/pages and submission.

No argparse here: everything is callable from Python.

- ``store``: ``Leaderboard`` (one board, written once for both databases), ``check_board_path``;
  ``records``: ``EntryMetadata``, ``RunRecord``, ``StoredEntry``.
- ``database`` / ``postgres``: the small dialect and connection layer under the store (``--db``
  parsing, retries, password masking); psycopg is imported only for a ``postgresql://`` URL.
- ``schema``: the tables (version 2: entries owned by their identity) and the migrations.
- ``stats``: mean, IQM and stratified-bootstrap confidence intervals (Agarwal et al. 2021).
- ``ranking``: ranks and ties by CI overlap; ``pages``: terminal table, Markdown, CSV;
  ``html_page``: the static page with a tab per scenario and inline clips.
- ``submit``: evaluate policies under the protocol and submit them, in one call
  (``submit.evaluate_and_submit``); build an entry's metadata; ``replays``: failure and example clips.

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
