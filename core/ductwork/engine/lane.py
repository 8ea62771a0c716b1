"""The dispatch lane: Postgres connections kept checked out for enqueues.

A dispatch from a web request is one statement (:func:`ductwork.engine.store._pg_enqueue`).
Checking a connection out of SQLAlchemy's async pool and back in around it costs two greenlet
switches and the pool's bookkeeping, about as much client time as the statement's own round
trip. The lane keeps a few connections out of the pool between enqueues and sends the
statement to asyncpg directly, so a dispatch pays only its round trip.

A kept connection is not pinged: one that died in between (a server restart, a cut session)
fails its statement, is invalidated, every other kept connection is handed back to the pool
(they most likely died with it; the pool checks them before reuse), and the enqueue is
retried once on a connection from the pool. The retry is safe: the run's id is chosen before
the first attempt, so an attempt that committed after all makes the second meet its own row.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, IntegrityError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["Lane"]


class Lane:
    """At most ``keep`` idle connections of ``engine``'s pool, held for one-statement writes."""

    def __init__(self, engine: AsyncEngine, keep: int, at_once: int) -> None:
        self.engine = engine
        self.keep = keep
        self._idle: list[tuple[AsyncConnection, Any]] = []  # (connection, asyncpg's own)
        self._closed = False
        # first come, first served: more callers than this wait here, in order, not in the
        # pool's queue, where a caller that arrives as a connection comes back takes it ahead
        # of those already waiting (asyncio.Queue puts a woken waiter that lost at the back)
        self._gate = asyncio.Semaphore(at_once)

    async def fetchval(self, statement: str, args: list[Any]) -> Any:
        """Run ``statement`` in autocommit on a kept (or newly checked-out) connection.

        Raises:
            IntegrityError: a constraint refused it (the connection is kept).
            DBAPIError: the server refused it otherwise, or the connection was lost twice.
        """
        async with self._gate:
            return await self._fetchval(statement, args)

    async def _fetchval(self, statement: str, args: list[Any]) -> Any:
        import asyncpg  # type: ignore[import-untyped]

        for last in (False, True):
            conn, driver = await self._take(fresh=last)
            try:
                value = await driver.fetchval(statement, *args)
            except asyncpg.IntegrityConstraintViolationError as exc:
                await self._give(conn, driver)
                raise IntegrityError(statement, args, exc) from exc
            except Exception as exc:
                # SQLSTATE class 08 (connection) and 57 (shutdown, terminated): gone
                lost = str(getattr(exc, "sqlstate", "") or "")[:2] in ("08", "57")
                if isinstance(exc, asyncpg.PostgresError) and not lost and not driver.is_closed():
                    await self._give(conn, driver)
                    raise DBAPIError(statement, args, exc) from exc  # the server said no
                # the connection is gone (cut, reset, or left mid-protocol): not this statement
                await conn.invalidate(exc)
                await conn.close()
                await self._release_idle()
                if last:
                    raise DBAPIError(statement, args, exc, connection_invalidated=True) from exc
                continue
            except BaseException:  # cancelled mid-statement: the pool resets or discards it
                await conn.close()
                raise
            await self._give(conn, driver)
            return value
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """Hand every kept connection back to the pool (before the pool is disposed)."""
        self._closed = True
        await self._release_idle()

    async def _take(self, *, fresh: bool) -> tuple[AsyncConnection, Any]:
        while self._idle and not fresh:
            conn, driver = self._idle.pop()
            if not driver.is_closed():
                return conn, driver
            await conn.invalidate()
            await conn.close()
        conn = await self.engine.connect()  # the pool pings it if it sat idle
        try:
            raw = await conn.get_raw_connection()
        except BaseException:
            await conn.close()
            raise
        assert raw.driver_connection is not None  # an open pooled connection
        return conn, raw.driver_connection

    async def _give(self, conn: AsyncConnection, driver: Any) -> None:
        if self._closed or len(self._idle) >= self.keep:
            await conn.close()
        else:
            self._idle.append((conn, driver))

    async def _release_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await conn.close()
