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
import functools
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ductwork.engine import claims, outcomes
from ductwork.engine.connect import engine_for, refused, transient, unreachable
from ductwork.engine.records import (
    ACTIVE,
    FINISHED,
    NOTIFY_CHANNEL,
    Claimed,
    Failure,
    NewRun,
    event_row,
    inserted,
    new_id,
    now_ms,
    run_values,
    to_json,
)
from ductwork.engine.schema import migrate, run, run_event

if TYPE_CHECKING:
    from ductwork.engine.lane import Lane

__all__ = [
    "ACTIVE",
    "FINISHED",
    "NOTIFY_CHANNEL",
    "Claimed",
    "Failure",
    "NewRun",
    "Store",
    "new_id",
    "now_ms",
    "run_values",
    "transient",
]

# the old private names, still imported by the features' modules
_event = event_row
_json = to_json


@functools.lru_cache(maxsize=4)
def _pg_enqueue(columns: tuple[str, ...]) -> str:
    """The enqueue of one run on Postgres, as one statement for asyncpg (``$n`` parameters).

    It inserts the run (these columns, then the NOTIFY channel) and wakes idle workers (NOTIFY
    is delivered at commit). The row is what was inserted (the run table has no server-side
    defaults), and its ``enqueued`` event is its ``created_at`` (see
    :func:`ductwork.engine.admin.timeline`), so nothing else is written.
    """
    marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return (
        f"INSERT INTO {run.name} ({', '.join(columns)}) VALUES ({marks})"
        f" RETURNING pg_notify(${len(columns) + 1}::text, queue)"
    )


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
        self._behind: set[asyncio.Task[None]] = set()  # writes no caller waits for (behind)
        self._lane: Lane | None = None  # Postgres: connections kept for enqueues

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

    def behind(self, write: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``write`` without waiting for it; :meth:`settle` and :meth:`close` wait.

        For writes a caller need not wait for (the delivery log's attempts): they must not
        raise (log their own failures).
        """
        task = asyncio.create_task(write)
        self._behind.add(task)
        task.add_done_callback(self._behind.discard)
        return task

    async def settle(self) -> None:
        """Wait for the writes started with :meth:`behind` so far."""
        while self._behind:
            await asyncio.wait(list(self._behind))

    async def close(self) -> None:
        """Finish the writes still behind, then close the connection pool."""
        await self.settle()
        if self._lane is not None:
            await self._lane.close()
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

    async def enqueue(self, new: NewRun) -> tuple[Mapping[Any, Any], bool]:
        """Insert a run; with a live run of the same dedupe key, return that one instead.

        On Postgres the run and the wake-up are one statement in autocommit (one round trip):
        a dispatch from a web request pays one. On SQLite the run is one transaction in one
        trip to the store's own connection thread (:mod:`ductwork.engine.direct`). No event
        row is written: a run's ``enqueued`` event is its ``created_at``.
        """
        return await self.enqueue_row(run_values(new, now_ms()))

    async def enqueue_row(self, values: dict[str, Any]) -> tuple[Mapping[Any, Any], bool]:
        """:meth:`enqueue` of a row :func:`~ductwork.engine.records.run_values` made.

        The caller has the row before the insert is done, and can use it meanwhile: a created
        run's row is ``inserted(values)``.
        """
        if self.dialect == "sqlite":  # one trip to the store's own connection thread
            from ductwork.engine import direct

            return await direct.enqueue(self, values)
        try:
            return await self._pg_enqueue(values), True
        except IntegrityError:
            async with self.engine.connect() as conn:
                query = select(run).where(run.c.id == values["id"])
                mine = (await conn.execute(query)).first()
            if mine is not None:  # ours, committed before the connection was lost
                return mine._mapping, True
            if values["dedupe_key"] is None:
                raise
        async with self.tx() as conn:
            query = select(run).where(run.c.dedupe_key == values["dedupe_key"])
            found = (await conn.execute(query)).first()
        if found is None:  # it ended in between: try once more
            return await self.enqueue_row(values)
        return found._mapping, False

    async def _pg_enqueue(self, values: dict[str, Any]) -> Mapping[Any, Any]:
        """The one-statement enqueue, in autocommit on the dispatch lane's connection.

        The statement goes to asyncpg directly (prepared once per connection, positional
        arguments) on a connection the lane keeps out of the pool (:mod:`ductwork.engine.lane`):
        through SQLAlchemy's execution machinery and pool it cost about as much again as the
        round trip. A lost connection is retried once; an attempt that committed after all
        makes the retry an ``IntegrityError`` that :meth:`enqueue` resolves by id.
        """
        if self._lane is None:
            from ductwork.engine.lane import Lane

            # at most the pool's own size at once: enqueues alone never wait in the pool
            size = getattr(self.engine.pool, "size", None)
            self._lane = Lane(self.engine, keep=2, at_once=size() if callable(size) else 10)
        await self._lane.fetchval(_pg_enqueue(tuple(values)), [*values.values(), NOTIFY_CHANNEL])
        return inserted(values)

    async def enqueue_many(self, runs: Sequence[NewRun]) -> list[str]:
        """Insert many runs in one transaction (no dedupe handling); return their ids."""
        now = now_ms()
        rows = [run_values(r, now) for r in runs]
        async with self.tx() as conn:
            await conn.execute(run.insert(), rows)
            for queue in {r.queue for r in runs}:
                await self._notify(conn, queue)
        return [r["id"] for r in rows]

    # -- claims and leases (ductwork.engine.claims) ------------------------------------------

    claim = claims.claim
    heartbeat = claims.heartbeat
    remove_worker = claims.remove_worker
    release = claims.release
    reap = claims.reap

    # -- outcomes (ductwork.engine.outcomes) -------------------------------------------------

    complete_many = outcomes.complete_many

    async def succeed(self, c: Claimed, worker_id: str, result: Any) -> bool:
        """Record success if this worker still holds the lease (fenced)."""
        return (await self.complete_many(worker_id, [(c, result)], ()))[0][0]

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
