"""The leaderboard's SQLite schema (version 2) and the migration from version 1.

Version 1 made entries unique on (policy digest, protocol, scenario), so anyone submitting the
same file replaced the entry. Version 2 identifies an entry by its ``IDENTITY`` (submitter,
agent name, scenario, protocol, backend) and records the episodes per run its protocol asks
for (``protocol_episodes``), which tells partial entries apart.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

SCHEMA_VERSION = 2  # stored in PRAGMA user_version
IDENTITY = ("submitter", "agent_name", "env_id", "protocol_version", "backend")
TABLES = ("entries", "runs", "episodes")

SCHEMA = """
CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    env_id TEXT NOT NULL,
    protocol_version TEXT NOT NULL,
    policy_sha256 TEXT NOT NULL,
    submitter TEXT NOT NULL,
    agent_name TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    backend TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    config_json TEXT NOT NULL,
    package_versions_json TEXT NOT NULL,
    git_commit TEXT NOT NULL,
    training_steps INTEGER,
    training_wall_s REAL,
    hardware TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    protocol_episodes INTEGER,
    UNIQUE (submitter, agent_name, env_id, protocol_version, backend)
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    run_index INTEGER NOT NULL,
    policy_sha256 TEXT NOT NULL,
    policy_label TEXT NOT NULL,
    training_seed INTEGER,
    UNIQUE (entry_id, run_index)
);
CREATE TABLE episodes (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    episode_index INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    episode_return REAL,
    length INTEGER NOT NULL,
    crashed INTEGER NOT NULL,
    success INTEGER NOT NULL,
    mean_speed REAL,
    distance_m REAL,
    lane_changes INTEGER NOT NULL,
    right_lane_share REAL,
    on_road_share REAL,
    max_abs_jerk REAL,
    failed INTEGER NOT NULL,
    video_path TEXT,
    UNIQUE (run_id, episode_index)
);
CREATE INDEX runs_by_entry ON runs(entry_id);
CREATE INDEX episodes_by_run ON episodes(run_id);
"""
# Entry columns of schema 1; schema 2 adds protocol_episodes and changes the UNIQUE key.
V1_ENTRY_COLUMNS = (
    "id", "env_id", "protocol_version", "policy_sha256", "submitter", "agent_name", "algorithm",
    "backend", "config_hash", "config_json", "package_versions_json", "git_commit",
    "training_steps", "training_wall_s", "hardware", "created_at", "updated_at",
)  # fmt: skip


def create_schema(connection: sqlite3.Connection) -> None:
    """Create the tables of the current version (in the caller's transaction)."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            connection.execute(statement)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def migrate_from_v1(connection: sqlite3.Connection, protocol_episodes: Callable[[str], int | None]) -> None:
    """Schema 1 -> 2 in the caller's transaction (foreign keys must be off: the entries table is rebuilt).

    Two schema-1 entries may share an identity (e.g. an agent re-submitted with new weights).
    None is dropped: the newest keeps its name, older ones get `` (entry ID)`` appended to their
    agent name. ``protocol_episodes(version)`` fills the new column.

    Raises:
        sqlite3.IntegrityError: the rebuilt table breaks a foreign key (the caller rolls back).
    """
    same_identity = " AND ".join(f"newer.{c} = entries.{c}" for c in IDENTITY)
    connection.execute(
        "UPDATE entries SET agent_name = agent_name || ' (entry ' || id || ')' WHERE EXISTS ("
        f"SELECT 1 FROM entries AS newer WHERE {same_identity} AND (newer.updated_at > "
        "entries.updated_at OR (newer.updated_at = entries.updated_at AND newer.id > entries.id)))"
    )
    entries_v2 = next(s for s in SCHEMA.split(";") if "CREATE TABLE entries" in s)
    connection.execute(entries_v2.replace("CREATE TABLE entries", "CREATE TABLE entries_v2"))
    columns = ", ".join(V1_ENTRY_COLUMNS)
    connection.execute(f"INSERT INTO entries_v2 ({columns}) SELECT {columns} FROM entries")
    connection.execute("DROP TABLE entries")
    connection.execute("ALTER TABLE entries_v2 RENAME TO entries")
    versions = [row[0] for row in connection.execute("SELECT DISTINCT protocol_version FROM entries")]
    for version in versions:
        connection.execute(
            "UPDATE entries SET protocol_episodes = ? WHERE protocol_version = ?", (protocol_episodes(version), version)
        )
    problems = connection.execute("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise sqlite3.IntegrityError(f"foreign keys broken by the migration: {[tuple(p) for p in problems[:3]]}")
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
