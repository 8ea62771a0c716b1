"""The run store: enqueue, claim, leases, fenced completion, retries, the reaper.

One implementation over SQLAlchemy Core's asyncio API, on SQLite (aiosqlite; WAL,
``synchronous=FULL``, every transaction ``BEGIN IMMEDIATE`` so writers are serialised) and on
Postgres (asyncpg; claims with ``FOR UPDATE SKIP LOCKED``; ``pg_notify`` on enqueue so idle
workers wake at once — polling stays the correctness path).

Fencing: every claim and every reaping bumps ``lease_epoch``; a worker's status writes carry
``AND lease_epoch = :mine``, so a worker whose lease expired (and whose run was re-queued or
claimed elsewhere) has its writes refused and stops.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, case, event, func, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ductwork.engine.schema import migrate, run, run_event, worker
from ductwork.engine.spec import RetryPolicy, parse_retries

if TYPE_CHECKING:
    from sqlalchemy.engine import RowMapping

__all__ = ["ACTIVE", "NOTIFY_CHANNEL", "Claimed", "NewRun", "Store", "now_ms", "transient"]

NOTIFY_CHANNEL = "ductwork_jobs"
ACTIVE = ("queued", "running", "paused")


def now_ms() -> int:
    """Wall-clock epoch milliseconds (the store's time unit)."""
    return int(time.time() * 1000)


def new_id(prefix: str) -> str:
    """A fresh job id: ``run_…`` for runs, ``sch_…`` for schedules."""
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class NewRun:
    """A run to enqueue."""

    kind: str
    target: str
    tag: str
    env: str
    input: Mapping[str, Any]
    run_at: int
    retry: RetryPolicy
    queue: str = "default"
    priority: int = 0
    timeout: float | None = None
    dedupe_key: str | None = None
    schedule_id: str | None = None
    scheduled_for: int | None = None


@dataclass(frozen=True)
class Claimed:
    """A run a worker holds under lease ``epoch``."""

    id: str
    kind: str
    target: str
    env: str
    input: dict[str, Any]
    attempt: int
    max_attempts: int
    retry: RetryPolicy
    timeout: float | None
    epoch: int
    queue: str


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is (for now) unreachable, so retrying may succeed."""
    if isinstance(exc, IntegrityError | ProgrammingError):
        return False
    if isinstance(exc, DBAPIError | OSError | ConnectionError | TimeoutError):
        return True
    # asyncpg errors raised while (re)connecting escape SQLAlchemy's wrapping, e.g.
    # CannotConnectNowError while the server is starting up.
    return type(exc).__module__.startswith("asyncpg")


def to_async_url(url: str) -> str:
    """``sqlite:///x`` and ``postgresql://…`` with the asyncio drivers the store uses."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def run_values(new: NewRun, now: int) -> dict[str, Any]:
    """The row of a new run."""
    return {
        "id": new_id("run"),
        "kind": new.kind,
        "target": new.target,
        "tag": new.tag,
        "env": new.env,
        "input": json.dumps(new.input, separators=(",", ":")),
        "status": "queued",
        "attempt": 0,
        "max_attempts": new.retry.max_attempts,
        "retry": json.dumps(new.retry.to_dict()),
        "run_at": new.run_at,
        "priority": new.priority,
        "queue": new.queue,
        "timeout": new.timeout,
        "lease_epoch": 0,
        "cancel_requested": False,
        "dedupe_key": new.dedupe_key,
        "schedule_id": new.schedule_id,
        "scheduled_for": new.scheduled_for,
        "created_at": now,
    }


class Store:
    """The engine's tables in one database; open with :meth:`open`, then :meth:`close`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.url = engine.url.render_as_string(hide_password=True)
        # Transactions through tx() are writers: BEGIN IMMEDIATE on SQLite (plain reads through
        # engine.connect() use a deferred BEGIN and never take the write lock).
        self._writer = engine.execution_options(ductwork_write=True)
        # SQLite serialises writers anyway; queueing them here instead of in SQLite's busy
        # handler (which sleeps 1-100 ms between retries) keeps one process's writers from
        # stalling each other. Other processes still wait in the busy handler.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.dialect == "sqlite" else None

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10, wait: float = 10.0) -> Store:
        """Connect to ``url`` and bring the schema up to date.

        While the database is unreachable (restarting, still starting up) the connection is
        retried with backoff for up to ``wait`` seconds, so a worker started during a
        database restart waits for it instead of exiting.
        """
        target = to_async_url(url)
        if target.startswith("sqlite"):
            engine = create_async_engine(target, connect_args={"timeout": 30})
            _sqlite_setup(engine)
        else:
            engine = create_async_engine(target, pool_size=pool_size, pool_pre_ping=True)
        store = cls(engine)
        deadline = time.monotonic() + wait
        delay = 0.05
        while True:
            try:
                async with store.tx() as conn:
                    await conn.run_sync(migrate, now_ms())
                return store
            except Exception as exc:
                if not transient(exc) or time.monotonic() + delay > deadline:
                    await engine.dispose()
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.engine.dispose()

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncConnection]:
        """One writing transaction (``BEGIN IMMEDIATE`` on SQLite, one at a time per process)."""
        if self._write_lock is None:
            async with self._writer.begin() as conn:
                yield conn
            return
        async with self._write_lock, self._writer.begin() as conn:
            yield conn

    async def _notify(self, conn: AsyncConnection, queue: str) -> None:
        if self.dialect == "postgresql":
            await conn.execute(text("SELECT pg_notify(:c, :q)"), {"c": NOTIFY_CHANNEL, "q": queue})

    async def _events(self, conn: AsyncConnection, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if rows:
            await conn.execute(run_event.insert(), rows)

    # -- enqueue ---------------------------------------------------------------------------

    async def enqueue(self, new: NewRun) -> tuple[RowMapping, bool]:
        """Insert a run; with a live run of the same dedupe key, return that one instead."""
        now = now_ms()
        values = run_values(new, now)
        try:
            async with self.tx() as conn:
                await conn.execute(run.insert().values(values))
                await self._events(conn, [_event(values["id"], "enqueued", now)])
                await self._notify(conn, new.queue)
                row = (await conn.execute(select(run).where(run.c.id == values["id"]))).one()
                return row._mapping, True
        except IntegrityError:
            if new.dedupe_key is None:
                raise
        async with self.tx() as conn:
            query = select(run).where(run.c.dedupe_key == new.dedupe_key)
            found = (await conn.execute(query)).first()
        if found is None:  # it ended in between: try once more
            return await self.enqueue(new)
        return found._mapping, False

    async def enqueue_many(self, runs: Sequence[NewRun]) -> list[str]:
        """Insert many runs in one transaction (no dedupe handling); return their ids."""
        now = now_ms()
        rows = [run_values(r, now) for r in runs]
        async with self.tx() as conn:
            await conn.execute(run.insert(), rows)
            await self._events(conn, [_event(r["id"], "enqueued", now) for r in rows])
            for queue in {r.queue for r in runs}:
                await self._notify(conn, queue)
        return [r["id"] for r in rows]

    # -- claims and leases -----------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        n: int,
        *,
        queues: Sequence[str] | None = None,
        lease: float = 30.0,
        limits: Mapping[str, int] | None = None,
    ) -> list[Claimed]:
        """Take up to ``n`` due runs (highest priority, then oldest) under a fresh lease."""
        if n <= 0:
            return []
        limits = limits or {}
        now = now_ms()
        claimed: list[Claimed] = []
        async with self.tx() as conn:
            limited = [q for q in limits if queues is None or q in queues]
            for queue in limited:
                if self.dialect == "postgresql":
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"dw:q:{queue}"}
                    )
                busy = (
                    await conn.execute(
                        select(func.count())
                        .select_from(run)
                        .where(run.c.status == "running", run.c.queue == queue)
                    )
                ).scalar_one()
                room = min(n - len(claimed), limits[queue] - busy)
                if room > 0:
                    claimed += await self._claim(conn, worker_id, room, [queue], None, lease, now)
            if len(claimed) < n:
                claimed += await self._claim(
                    conn, worker_id, n - len(claimed), queues, limited, lease, now
                )
            await self._events(
                conn, [_event(c.id, "started", now, c.attempt, worker_id) for c in claimed]
            )
        return claimed

    async def _claim(
        self,
        conn: AsyncConnection,
        worker_id: str,
        n: int,
        queues: Sequence[str] | None,
        exclude: Sequence[str] | None,
        lease: float,
        now: int,
    ) -> list[Claimed]:
        due = select(run.c.id).where(run.c.status == "queued", run.c.run_at <= now)
        if queues is not None:
            due = due.where(run.c.queue.in_(list(queues)))
        if exclude:
            due = due.where(run.c.queue.not_in(list(exclude)))
        due = due.order_by(run.c.priority.desc(), run.c.run_at, run.c.id).limit(n)
        # A materialised CTE joined once: an IN (subquery) may be re-run by the planner and
        # claim more than n rows under SKIP LOCKED.
        chosen = due.with_for_update(skip_locked=True).cte("due")
        chosen = chosen.prefix_with("MATERIALIZED", dialect="postgresql")
        stmt = (
            update(run)
            .where(run.c.id == chosen.c.id, run.c.status == "queued")
            .values(
                status="running",
                lease_owner=worker_id,
                lease_expires_at=now + int(lease * 1000),
                lease_epoch=run.c.lease_epoch + 1,
                attempt=run.c.attempt + 1,
                started_at=now,
            )
            .returning(
                run.c.id,
                run.c.kind,
                run.c.target,
                run.c.env,
                run.c.input,
                run.c.attempt,
                run.c.max_attempts,
                run.c.retry,
                run.c.timeout,
                run.c.lease_epoch,
                run.c.queue,
                run.c.priority,
                run.c.run_at,
            )
        )
        rows = sorted((await conn.execute(stmt)).all(), key=lambda r: (-r.priority, r.run_at, r.id))
        return [
            Claimed(
                r.id,
                r.kind,
                r.target,
                r.env,
                json.loads(r.input),
                r.attempt,
                r.max_attempts,
                parse_retries(json.loads(r.retry)),
                r.timeout,
                r.lease_epoch,
                r.queue,
            )
            for r in rows
        ]

    async def heartbeat(
        self,
        worker_id: str,
        lease: float,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 0,
        held: Sequence[str] = (),
    ) -> dict[str, tuple[int, bool]]:
        """Record the worker alive and extend its leases; return its runs' (epoch, cancel)."""
        now = now_ms()
        async with self.tx() as conn:
            values = {"heartbeat_at": now}
            done = await conn.execute(update(worker).where(worker.c.id == worker_id).values(values))
            if done.rowcount == 0:
                await conn.execute(
                    worker.insert().values(
                        id=worker_id,
                        started_at=now,
                        heartbeat_at=now,
                        queues=json.dumps(list(queues) if queues else None),
                        concurrency=concurrency,
                    )
                )
            if not held:
                return {}
            # Only the runs this worker knows it holds: a claim whose reply was lost (the
            # connection dropped after commit) must expire and be reaped, not be kept alive.
            rows = await conn.execute(
                update(run)
                .where(
                    run.c.lease_owner == worker_id,
                    run.c.status == "running",
                    run.c.id.in_(list(held)),
                )
                .values(lease_expires_at=now + int(lease * 1000))
                .returning(run.c.id, run.c.lease_epoch, run.c.cancel_requested)
            )
            return {r.id: (r.lease_epoch, bool(r.cancel_requested)) for r in rows}

    async def remove_worker(self, worker_id: str) -> None:
        """Forget a worker that stopped cleanly."""
        async with self.tx() as conn:
            await conn.execute(worker.delete().where(worker.c.id == worker_id))

    async def release(self, worker_id: str, runs: Iterable[tuple[str, int]]) -> int:
        """Give runs back to the queue unfinished (graceful shutdown); not counted as attempts."""
        now = now_ms()
        count = 0
        async with self.tx() as conn:
            for run_id, epoch in runs:
                done = await conn.execute(
                    update(run)
                    .where(
                        run.c.id == run_id, run.c.lease_epoch == epoch, run.c.status == "running"
                    )
                    .values(
                        status="queued",
                        lease_owner=None,
                        lease_expires_at=None,
                        lease_epoch=epoch + 1,
                        attempt=run.c.attempt - 1,
                        run_at=now,
                    )
                )
                if done.rowcount:
                    count += 1
                    await self._events(conn, [_event(run_id, "released", now, 0, worker_id)])
        return count

    async def reap(self) -> list[str]:
        """Re-queue runs whose lease expired (bumping the epoch); fail those out of attempts."""
        now = now_ms()
        out_of_attempts = run.c.attempt >= run.c.max_attempts
        async with self.tx() as conn:
            rows = (
                await conn.execute(
                    update(run)
                    .where(run.c.status == "running", run.c.lease_expires_at < now)
                    .values(
                        status=case((out_of_attempts, "failed"), else_="queued"),
                        finished_at=case((out_of_attempts, now), else_=None),
                        dedupe_key=case((out_of_attempts, None), else_=run.c.dedupe_key),
                        lease_owner=None,
                        lease_expires_at=None,
                        lease_epoch=run.c.lease_epoch + 1,
                        run_at=now,
                        last_error="lease expired: the worker stopped heartbeating",
                    )
                    .returning(run.c.id, run.c.status, run.c.attempt)
                )
            ).all()
            await self._events(
                conn,
                [_event(r.id, "lease_expired", now, r.attempt, None, r.status) for r in rows],
            )
        return [r.id for r in rows]

    # -- outcomes --------------------------------------------------------------------------

    async def succeed(self, c: Claimed, worker_id: str, result: Any) -> bool:
        """Record success if this worker still holds the lease (fenced)."""
        now = now_ms()
        async with self.tx() as conn:
            done = await conn.execute(
                update(run)
                .where(run.c.id == c.id, run.c.lease_epoch == c.epoch, run.c.status == "running")
                .values(
                    status="succeeded",
                    result=_json(result),
                    finished_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                    dedupe_key=None,
                )
            )
            if done.rowcount != 1:
                return False
            await self._events(conn, [_event(c.id, "succeeded", now, c.attempt, worker_id)])
        return True

    async def succeed_many(self, worker_id: str, done: Sequence[tuple[Claimed, Any]]) -> list[bool]:
        """Record many successes in one transaction, each fenced by its own lease epoch.

        Returns, in order, whether each run was recorded (False: that lease was lost).
        """
        if not done:
            return []
        now = now_ms()
        results = [_json(result) for _, result in done]
        async with self.tx() as conn:
            if self.dialect == "postgresql":
                rows = await conn.execute(
                    text(
                        f"UPDATE {run.name} AS r SET status = 'succeeded', result = v.result,"
                        " finished_at = :now, lease_owner = NULL, lease_expires_at = NULL,"
                        " dedupe_key = NULL"
                        " FROM unnest(CAST(:ids AS text[]), CAST(:epochs AS integer[]),"
                        " CAST(:results AS text[])) AS v(id, epoch, result)"
                        " WHERE r.id = v.id AND r.lease_epoch = v.epoch AND r.status = 'running'"
                        " RETURNING r.id, r.lease_epoch"
                    ),
                    {
                        "now": now,
                        "ids": [c.id for c, _ in done],
                        "epochs": [c.epoch for c, _ in done],
                        "results": results,
                    },
                )
                ok = {(r[0], r[1]) for r in rows}
            else:
                ok = set[tuple[str, int]]()
                for (c, _), result in zip(done, results, strict=True):
                    params = {"rid": c.id, "repoch": c.epoch, "rresult": result, "rnow": now}
                    updated = await conn.execute(_SUCCEED_ONE, params)
                    if updated.rowcount == 1:
                        ok.add((c.id, c.epoch))
            await self._events(
                conn,
                [
                    _event(c.id, "succeeded", now, c.attempt, worker_id)
                    for c, _ in done
                    if (c.id, c.epoch) in ok
                ],
            )
        return [(c.id, c.epoch) in ok for c, _ in done]

    async def fail(
        self,
        c: Claimed,
        worker_id: str,
        error_type: str,
        message: str,
        *,
        cancelled: bool = False,
    ) -> str | None:
        """Record a failure (fenced): re-queue after backoff, or fail; the new status or None."""
        now = now_ms()
        error = f"{error_type}: {message}"[:4000]
        if cancelled:
            status, run_at = "cancelled", now
        elif c.attempt < c.max_attempts and c.retry.retryable(error_type):
            status, run_at = "queued", now + int(c.retry.delay(c.attempt) * 1000)
        else:
            status, run_at = "failed", now
        ended = status != "queued"
        async with self.tx() as conn:
            done = await conn.execute(
                update(run)
                .where(run.c.id == c.id, run.c.lease_epoch == c.epoch, run.c.status == "running")
                .values(
                    status=status,
                    run_at=run_at,
                    last_error=error,
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=now if ended else None,
                    **({"dedupe_key": None} if ended else {}),
                )
            )
            if done.rowcount != 1:
                return None
            name = "retry" if status == "queued" else status
            await self._events(conn, [_event(c.id, name, now, c.attempt, worker_id, error)])
        return status


# one fenced success, built once (SQLite records a batch row by row in one transaction)
_SUCCEED_ONE = (
    update(run)
    .where(
        run.c.id == bindparam("rid"),
        run.c.lease_epoch == bindparam("repoch"),
        run.c.status == "running",
    )
    .values(
        status="succeeded",
        result=bindparam("rresult"),
        finished_at=bindparam("rnow"),
        lease_owner=None,
        lease_expires_at=None,
        dedupe_key=None,
    )
)


def _event(
    run_id: str,
    name: str,
    at: int,
    attempt: int = 0,
    worker_id: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "at": at,
        "event": name,
        "attempt": attempt,
        "worker": worker_id,
        "detail": detail,
    }


def _json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(value, default=str)[:100_000]
    except (TypeError, ValueError):
        return json.dumps(repr(value))


def _sqlite_setup(engine: AsyncEngine) -> None:
    """WAL, synchronous=FULL, and BEGIN IMMEDIATE for every transaction (writers serialised)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        # Store.tx() (every write) takes the write lock up front; reads stay deferred so a
        # reader never queues behind writers (WAL readers see the last committed state).
        write = conn.get_execution_options().get("ductwork_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
