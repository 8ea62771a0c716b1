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

from sqlalchemy import case, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ductwork.engine.connect import engine_for, refused, transient, unreachable
from ductwork.engine.outcomes import failure_outcome, record_failures, record_successes
from ductwork.engine.schema import migrate, run, run_event, worker
from ductwork.engine.spec import RetryPolicy, parse_retries

if TYPE_CHECKING:
    from sqlalchemy.engine import RowMapping

__all__ = [
    "ACTIVE",
    "NOTIFY_CHANNEL",
    "Claimed",
    "Failure",
    "NewRun",
    "Store",
    "now_ms",
    "transient",
]

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

    @classmethod
    def from_row(cls, r: Any) -> Claimed:
        """The claimed run from a ``RETURNING`` row of the run table."""
        return cls(
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


@dataclass(frozen=True)
class Failure:
    """A failed attempt to record: the run, its error's class name and message."""

    claimed: Claimed
    error_type: str
    message: str
    cancelled: bool = False


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
    async def open(
        cls,
        url: str,
        *,
        pool_size: int = 10,
        wait: float = 10.0,
        connect_timeout: float | None = None,
    ) -> Store:
        """Connect to ``url`` and bring the schema up to date.

        While the database is unreachable (restarting, still starting up) the connection is
        retried with backoff for up to ``wait`` seconds, so a worker started during a
        database restart waits for it instead of exiting; ``wait=0`` tries once (the CLI's
        job commands, which should answer at once). ``connect_timeout`` bounds each
        connection attempt to Postgres (default: the driver's, 60 s).

        Raises:
            ConnectionFailedError: still unreachable when ``wait`` ran out, or no such
                database (at once); the message names the URL without its password.
            AuthenticationError: the server refused the login (at once).
            MissingDependencyError: the URL's driver (asyncpg, aiosqlite) is not installed.
        """
        engine = engine_for(url, pool_size=pool_size, connect_timeout=connect_timeout)
        store = cls(engine)
        started = time.monotonic()
        attempts = 0
        delay = 0.05
        while True:
            attempts += 1
            try:
                async with store.tx() as conn:
                    await conn.run_sync(migrate, now_ms())
                return store
            except Exception as exc:
                refusal = refused(exc)
                if refusal is not None:  # no wait fixes a refused login or a missing database
                    await engine.dispose()
                    elapsed = time.monotonic() - started
                    raise unreachable(url, exc, attempts, elapsed, refusal) from exc
                if not transient(exc):
                    await engine.dispose()
                    raise
                if time.monotonic() + delay > started + wait:
                    await engine.dispose()
                    raise unreachable(url, exc, attempts, time.monotonic() - started) from exc
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
        return [Claimed.from_row(r) for r in rows]

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
        return (await self.complete_many(worker_id, done, ()))[0]

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
        return (await self.fail_many(worker_id, [Failure(c, error_type, message, cancelled)]))[0]

    async def fail_many(self, worker_id: str, failed: Sequence[Failure]) -> list[str | None]:
        """Record many failures in one transaction, each fenced by its own lease epoch.

        Each run is re-queued after its own backoff (full jitter) while it has attempts left
        and its error is retryable, else it ends ``failed`` (or ``cancelled``). Returns, in
        order, each run's new status, or None where that lease was lost.
        """
        return (await self.complete_many(worker_id, (), failed))[1]

    async def complete_many(
        self,
        worker_id: str,
        succeeded: Sequence[tuple[Claimed, Any]],
        failed: Sequence[Failure],
    ) -> tuple[list[bool], list[str | None]]:
        """Record successes and failures together in one transaction (the worker's flush).

        Every row is fenced by its own lease epoch: a run whose lease was lost (reaped,
        claimed elsewhere, already recorded) is left alone and reported False / None.
        """
        if not succeeded and not failed:
            return [], []
        now = now_ms()
        results = [_json(result) for _, result in succeeded]
        # decided here, per run, exactly as a single failure would be
        outcomes = [failure_outcome(f, now) for f in failed]
        async with self.tx() as conn:
            recorded_ok = await record_successes(conn, succeeded, results, now)
            recorded_failed = await record_failures(conn, failed, outcomes, now)
            events = [
                _event(c.id, "succeeded", now, c.attempt, worker_id)
                for c, _ in succeeded
                if (c.id, c.epoch) in recorded_ok
            ]
            for f, (status, _, error) in zip(failed, outcomes, strict=True):
                c = f.claimed
                if (c.id, c.epoch) in recorded_failed:
                    name = "retry" if status == "queued" else status
                    events.append(_event(c.id, name, now, c.attempt, worker_id, error))
            await self._events(conn, events)
        return (
            [(c.id, c.epoch) in recorded_ok for c, _ in succeeded],
            [
                status if (f.claimed.id, f.claimed.epoch) in recorded_failed else None
                for f, (status, _, _) in zip(failed, outcomes, strict=True)
            ],
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
