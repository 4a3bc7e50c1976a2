"""The leaderboard's schema (version 2) and its migrations, for SQLite and PostgreSQL alike.

Version 1 made entries unique on (policy digest, protocol, scenario), so anyone submitting the
same file replaced the entry. Version 2 identifies an entry by its ``IDENTITY`` (submitter,
agent name, scenario, protocol, backend) and records the episodes per run its protocol asks
for (``protocol_episodes``), which tells partial entries apart.

The DDL is written once in SQLite's types; ``Database.ddl`` maps them for PostgreSQL (64-bit
integers, double precision, identity ids). The version is kept where the database keeps it
(``Database.set_schema_version``). ``MIGRATIONS[n]`` takes a board from version ``n`` to
``n + 1``; ``migrate`` runs them in order, in the caller's schema transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivelab.benchmarks.leaderboard.database import Database

SCHEMA_VERSION = 2
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
EpisodesOf = Callable[[str], "int | None"]  # protocol version -> episodes per run it asks for


def statements(script: str) -> list[str]:
    """The statements of an SQL script (no ``;`` inside our literals)."""
    return [statement.strip() for statement in script.split(";") if statement.strip()]


def create_schema(db: Database) -> None:
    """Create the tables of the current version (in the caller's schema transaction)."""
    for statement in statements(SCHEMA):
        db.execute(db.ddl(statement))
    db.set_schema_version(SCHEMA_VERSION)


def migrate(db: Database, version: int, protocol_episodes: EpisodesOf) -> None:
    """Bring a board of schema ``version`` to ``SCHEMA_VERSION`` (in the caller's schema transaction)."""
    for step in range(version, SCHEMA_VERSION):
        MIGRATIONS[step](db, protocol_episodes)
        db.set_schema_version(step + 1)


def migrate_from_v1(db: Database, protocol_episodes: EpisodesOf) -> None:
    """Schema 1 -> 2: the identity key replaces the digest key; ``protocol_episodes`` is filled.

    Two schema-1 entries may share an identity (e.g. an agent re-submitted with new weights).
    None is dropped: the newest keeps its name, older ones get `` (entry ID)`` appended to their
    agent name. ``protocol_episodes(version)`` fills the new column. SQLite cannot drop a
    constraint, so it rebuilds the entries table (foreign keys are off in its schema
    transaction); PostgreSQL alters it in place.

    Raises:
        the database's IntegrityError: a foreign key broke (the caller rolls back).
    """
    same_identity = " AND ".join(f"newer.{c} = entries.{c}" for c in IDENTITY)
    db.execute(
        "UPDATE entries SET agent_name = agent_name || ' (entry ' || id || ')' WHERE EXISTS ("
        f"SELECT 1 FROM entries AS newer WHERE {same_identity} AND (newer.updated_at > "
        "entries.updated_at OR (newer.updated_at = entries.updated_at AND newer.id > entries.id)))"
    )
    if db.kind == "sqlite":
        entries_v2 = next(s for s in statements(SCHEMA) if s.startswith("CREATE TABLE entries"))
        db.execute(entries_v2.replace("CREATE TABLE entries", "CREATE TABLE entries_v2"))
        columns = ", ".join(V1_ENTRY_COLUMNS)
        db.execute(f"INSERT INTO entries_v2 ({columns}) SELECT {columns} FROM entries")
        db.execute("DROP TABLE entries")
        db.execute("ALTER TABLE entries_v2 RENAME TO entries")
    else:
        db.execute(db.ddl("ALTER TABLE entries ADD COLUMN protocol_episodes INTEGER"))
        old_keys = db.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'entries'::regclass AND contype = 'u'"
        ).fetchall()
        for key in old_keys:
            db.execute(f'ALTER TABLE entries DROP CONSTRAINT "{key["conname"]}"')
        db.execute(f"ALTER TABLE entries ADD UNIQUE ({', '.join(IDENTITY)})")
    versions = [row["protocol_version"] for row in db.execute("SELECT DISTINCT protocol_version FROM entries")]
    for version in versions:
        db.execute("UPDATE entries SET protocol_episodes = ? WHERE protocol_version = ?",
                   (protocol_episodes(version), version))  # fmt: skip
    if db.kind == "sqlite":
        problems = db.execute("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise sqlite3.IntegrityError(f"foreign keys broken by the migration: {problems[:3]}")


MIGRATIONS: dict[int, Callable[[Database, EpisodesOf], None]] = {1: migrate_from_v1}
