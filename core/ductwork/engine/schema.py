"""The run store's tables (SQLAlchemy Core), the same on SQLite and Postgres, and migrations.

Times are epoch milliseconds (``BIGINT``): one representation on both databases, compared as
integers. ``engine_version`` holds the schema version; :func:`migrate` applies the missing
steps in one transaction, serialised (an advisory lock on Postgres, ``BEGIN IMMEDIATE`` on
SQLite), so any number of workers may start at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    literal_column,
    select,
    text,
)
from sqlalchemy.sql.elements import ColumnElement

__all__ = [
    "SCHEMA_VERSION",
    "health",
    "metadata",
    "migrate",
    "notification",
    "notification_to",
    "run",
    "run_event",
    "schedule",
    "session",
    "session_refresh",
    "status_is",
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
    # Set while the run is active, cleared when it ends: unique among active runs only
    # (``ductwork_run_dedupe``).
    Column("dedupe_key", String(300), nullable=True),
    Column("schedule_id", String(40), nullable=True),
    Column("scheduled_for", BigInteger, nullable=True),
    Column("parent_run_id", String(40), nullable=True),
    Column("forked_from", String(40), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("result", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("started_at", BigInteger, nullable=True),
    Column("finished_at", BigInteger, nullable=True),
)


def status_is(name: str) -> ColumnElement[bool]:
    """``status = '<name>'`` with the status inline, not bound.

    A partial index serves a query only if the planner can prove the query's condition implies
    the index's; a bound parameter proves nothing (SQLite never uses the index then, Postgres
    not in a generic plan), so every query meant for a partial index below uses this.
    """
    if name not in _STATUSES:
        raise ValueError(f"unknown run status {name!r}")
    return run.c.status == literal_column(f"'{name}'")


_STATUSES = ("queued", "running", "paused", "waiting", "succeeded", "failed", "cancelled")


def _where_set(name: str, first: Column[Any], *more: Column[Any], unique: bool = False) -> Index:
    """An index holding only the runs whose ``first`` column is set (not NULL)."""
    present = first.is_not(None)
    return Index(name, first, *more, unique=unique, postgresql_where=present, sqlite_where=present)


# Every index the workers read per cycle holds only the rows that query can return, so a
# growing history (finished runs) or backlog (queued runs) costs O(log n), never O(n):
# (schema version 3; version 1 had (status, queue, priority, run_at) and (status,
# lease_expires_at) over every run, so each claim sorted the whole backlog)
RUN_INDEXES = (
    # the claim: queued runs in exactly its ORDER BY, so it reads its first rows and stops
    Index(
        "ductwork_run_claim",
        run.c.priority.desc(),
        run.c.run_at,
        run.c.id,
        postgresql_where=status_is("queued"),
        sqlite_where=status_is("queued"),
    ),
    # the reaper (expired leases) and queue limits (running runs per queue)
    Index(
        "ductwork_run_running",
        run.c.lease_expires_at,
        postgresql_where=status_is("running"),
        sqlite_where=status_is("running"),
    ),
    # parked feature runs whose wake time has come
    Index(
        "ductwork_run_waiting",
        run.c.run_at,
        postgresql_where=status_is("waiting"),
        sqlite_where=status_is("waiting"),
    ),
    # retention: the oldest finished runs of a status
    Index(
        "ductwork_run_finished",
        run.c.status,
        run.c.finished_at,
        postgresql_where=run.c.finished_at.is_not(None),
        sqlite_where=run.c.finished_at.is_not(None),
    ),
    # jobs ls: newest first
    Index("ductwork_run_created", run.c.created_at),
    # a dedupe key names one active run; most runs have none, and hold no entry (version 7)
    _where_set("ductwork_run_dedupe", run.c.dedupe_key, unique=True),
    # a schedule's slot fires one run; runs not from a schedule hold no entry (version 7)
    _where_set("ductwork_run_schedule_slot", run.c.schedule_id, run.c.scheduled_for, unique=True),
    # references retention must respect: a run's children and its replays
    _where_set("ductwork_run_parent", run.c.parent_run_id),
    _where_set("ductwork_run_forked", run.c.forked_from),
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

# The notification delivery log (ductwork.engine.deliveries): one row per send, its status
# (pending -> sent | failed) and attempts; data with secrets redacted, never the rendered body.
# Ids are time-ordered (``ntf_<ms><random>``), so "newest first", the since/until bounds and
# retention all read the primary key in order; each filter has an index ending in the id.
notification = Table(
    "ductwork_notification",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("notifier", String(128), nullable=False),
    # ``notifier:message``; None for an ad hoc send
    Column("message", String(300), nullable=True),
    Column("env", String(64), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("recipients", Text, nullable=False),
    Column("data", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("provider_message_id", String(300), nullable=True),
    # a repeated send with the same key (a job's or a feature step's retry) updates this row
    Column("idempotency_key", String(300), nullable=True, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("duration_ms", Integer, nullable=True),
    Index("ductwork_notification_status", "status", "id"),
    Index("ductwork_notification_notifier", "notifier", "id"),
    Index("ductwork_notification_message", "message", "id"),
)

# Each distinct recipient of a send, normalised (an email address lowercased, without its
# display name), so ``log(recipient=…)`` reads an index instead of every row's JSON.
notification_to = Table(
    "ductwork_notification_to",
    metadata,
    Column("notification_id", String(40), primary_key=True),
    Column("recipient", String(320), primary_key=True),
    Index("ductwork_notification_to_recipient", "recipient", "notification_id"),
)

# What the health monitor last saw of each healthcheck, per env (ductwork.health.monitor): the
# status, the consecutive counters the thresholds read, and the slot of the probe last applied
# (so a late probe never overwrites a newer one). ``changes`` numbers the status changes: the
# alert of change n is keyed by it, so it is enqueued once whoever decided it.
health = Table(
    "ductwork_health",
    metadata,
    Column("env", String(64), primary_key=True),
    Column("tag", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("since", BigInteger, nullable=True),
    Column("latency", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("checked_at", BigInteger, nullable=True),
    Column("failures", Integer, nullable=False, default=0),
    Column("successes", Integer, nullable=False, default=0),
    Column("slot", BigInteger, nullable=True),
    Column("probes", Integer, nullable=False, default=0),
    Column("changes", Integer, nullable=False, default=0),
    Column("schedule_id", String(40), nullable=True),
    Column("spec", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
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


def _v3(conn: Connection) -> None:
    # partial indexes in each query's order (a store created at version 1 or 2 had neither)
    for old in ("ductwork_run_due", "ductwork_run_lease"):
        conn.execute(text(f"DROP INDEX IF EXISTS {old}"))
    for index in RUN_INDEXES:
        index.create(conn, checkfirst=True)
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ANALYZE {run.name}"))


def _v4(conn: Connection) -> None:
    metadata.create_all(conn, tables=[session, session_refresh], checkfirst=True)


def _v5(conn: Connection) -> None:
    metadata.create_all(conn, tables=[notification, notification_to], checkfirst=True)


def _v6(conn: Connection) -> None:
    metadata.create_all(conn, tables=[health], checkfirst=True)


def _v7(conn: Connection) -> None:
    """Unique keys indexed only for the runs that have them: a dispatch writes four entries.

    Versions 1-6 had unique constraints on ``dedupe_key`` and on the schedule slot, which
    index every run, NULL keys too (six b-trees written per dispatch). Both rules become
    partial unique indexes. SQLite cannot drop a table's constraint, so there the run table
    is rebuilt: its rows copied once, in this transaction.
    """
    if conn.dialect.name == "postgresql":
        for constraint in ("ductwork_run_dedupe_key_key", "ductwork_run_slot"):
            conn.execute(text(f"ALTER TABLE {run.name} DROP CONSTRAINT IF EXISTS {constraint}"))
    elif _sqlite_unique_constraints(conn):
        _rebuild_sqlite_run_table(conn)
    for index in RUN_INDEXES:
        index.create(conn, checkfirst=True)


def _sqlite_unique_constraints(conn: Connection) -> list[str]:
    """The run table's UNIQUE constraints' indexes (origin ``u``) on SQLite."""
    rows = conn.execute(text(f"PRAGMA index_list({run.name})")).all()
    return [row[1] for row in rows if row[3] == "u"]


def _rebuild_sqlite_run_table(conn: Connection) -> None:
    """The run table in version 7's shape, with every row (SQLite's way to drop a constraint)."""
    old = f"{run.name}_v6"
    own = text(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t AND sql IS NOT NULL"
    )
    for (name,) in conn.execute(own, {"t": run.name}).all():
        conn.execute(text(f"DROP INDEX {name}"))  # recreated on the new table below
    conn.execute(text(f"ALTER TABLE {run.name} RENAME TO {old}"))
    run.create(conn)
    columns = ", ".join(c.name for c in run.c)
    conn.execute(text(f"INSERT INTO {run.name} ({columns}) SELECT {columns} FROM {old}"))
    conn.execute(text(f"DROP TABLE {old}"))


# Append only: each step moves the schema from version i to i + 1.
MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7]
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
