"""The run store's tables (SQLAlchemy Core), the same on SQLite and Postgres, and migrations.

Times are epoch milliseconds (``BIGINT``): one representation on both databases, compared as
integers. ``engine_version`` holds the schema version; :func:`migrate` applies the missing
steps in one transaction, serialised (an advisory lock on Postgres, ``BEGIN IMMEDIATE`` on
SQLite), so any number of workers may start at once.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    text,
)

__all__ = [
    "SCHEMA_VERSION",
    "metadata",
    "migrate",
    "run",
    "run_event",
    "schedule",
    "session",
    "session_refresh",
    "step",
    "worker",
]

metadata = MetaData()

run = Table(
    "ductwork_run",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("target", String(300), nullable=False),
    Column("tag", String(128), nullable=False),
    Column("env", String(64), nullable=False),
    Column("input", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False, default=1),
    Column("retry", Text, nullable=False),
    Column("run_at", BigInteger, nullable=False),
    Column("priority", Integer, nullable=False, default=0),
    Column("queue", String(64), nullable=False, default="default"),
    Column("timeout", Float, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", BigInteger, nullable=True),
    Column("lease_epoch", Integer, nullable=False, default=0),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    # Set while the run is active, cleared when it ends: unique among active runs only.
    Column("dedupe_key", String(300), nullable=True, unique=True),
    Column("schedule_id", String(40), nullable=True),
    Column("scheduled_for", BigInteger, nullable=True),
    Column("parent_run_id", String(40), nullable=True),
    Column("forked_from", String(40), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("result", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("started_at", BigInteger, nullable=True),
    Column("finished_at", BigInteger, nullable=True),
    UniqueConstraint("schedule_id", "scheduled_for", name="ductwork_run_slot"),
    Index("ductwork_run_due", "status", "queue", "priority", "run_at"),
    Index("ductwork_run_lease", "status", "lease_expires_at"),
)

run_event = Table(
    "ductwork_run_event",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", String(40), nullable=False, index=True),
    Column("at", BigInteger, nullable=False),
    Column("event", String(32), nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("worker", String(64), nullable=True),
    Column("detail", Text, nullable=True),
)

schedule = Table(
    "ductwork_schedule",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("target", String(300), nullable=False),
    Column("tag", String(128), nullable=False),
    Column("env", String(64), nullable=False),
    Column("input", Text, nullable=False),
    Column("spec", Text, nullable=False),
    Column("start_at", BigInteger, nullable=True),
    Column("end_at", BigInteger, nullable=True),
    Column("fire_limit", Integer, nullable=True),
    Column("fired", Integer, nullable=False, default=0),
    Column("next_fire_at", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),
    Column("retry", Text, nullable=False),
    Column("queue", String(64), nullable=False, default="default"),
    Column("priority", Integer, nullable=False, default=0),
    Column("timeout", Float, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Index("ductwork_schedule_due", "status", "next_fire_at"),
)

worker = Table(
    "ductwork_worker",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("started_at", BigInteger, nullable=False),
    Column("heartbeat_at", BigInteger, nullable=False),
    Column("queues", Text, nullable=False),
    Column("concurrency", Integer, nullable=False),
)

# A feature run's checkpoints: one row per step key (the step's stable path in the feature),
# written fenced by the run's lease epoch (see ductwork.engine.steps).
step = Table(
    "ductwork_step",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("step_key", String(300), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("output", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("started_at", BigInteger, nullable=True),
    Column("finished_at", BigInteger, nullable=True),
    # a parked step: when it wakes (sleep end, wait timeout) and the signal it waits for
    Column("wake_at", BigInteger, nullable=True),
    Column("signal", String(128), nullable=True),
    Column("epoch", Integer, nullable=False, default=0),
)

# User sessions (ductwork.sessions): the session's data only sealed (encrypted under the session
# keys), the user only as a hash of the selector value, refresh tokens only as SHA-256 hashes.
session = Table(
    "ductwork_session",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tag", String(128), nullable=False),
    Column("selector", String(64), nullable=False),
    Column("sealed", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("refreshed_at", BigInteger, nullable=True),
    Column("expires_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    Column("revoked_reason", String(16), nullable=True),
    Index("ductwork_session_user", "tag", "selector"),
)

session_refresh = Table(
    "ductwork_session_refresh",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("session_id", String(40), nullable=False, index=True),
    Column("issued_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger, nullable=True),
)

version = Table(
    "ductwork_engine_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", BigInteger, nullable=False),
)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[run, run_event, schedule, worker], checkfirst=True)


def _v2(conn: Connection) -> None:
    metadata.create_all(conn, tables=[step], checkfirst=True)


def _sessions(conn: Connection) -> None:
    metadata.create_all(conn, tables=[session, session_refresh], checkfirst=True)


# Append only: each step moves the schema from version i to i + 1.
MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _sessions]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: Connection, now_ms: int) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION` inside the caller's transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(7236501)"))
    version.create(conn, checkfirst=True)
    current = conn.execute(select(version.c.version).order_by(version.c.version.desc())).scalar()
    current = current or 0
    if current > SCHEMA_VERSION:
        from ductwork.errors import ConfigError

        raise ConfigError(
            f"the jobs engine's tables are at version {current}, newer than this ductwork "
            f"({SCHEMA_VERSION}); upgrade ductwork"
        )
    for number in range(current + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[number - 1](conn)
        conn.execute(version.insert().values(version=number, applied_at=now_ms))
    return SCHEMA_VERSION
