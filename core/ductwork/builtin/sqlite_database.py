"""``sqlite`` database: a SQLite file (or ``:memory:``), the embedded default.

Features: ``:name`` parameters bound by SQLite itself; transactions with transactional DDL;
WAL and ``synchronous=FULL``; named locks across processes (an ``fcntl`` lock on
``<database>.<name>.lock``). One connection on one thread: statements run one at a time, and a
transaction holds the connection until it ends.

Streaming (``stream``): the statement's cursor is stepped ``batch_size`` rows at a time
(``fetchmany``) on the connection's thread, so only one batch is in memory; the stream holds the
connection (as a transaction does) until it ends, and closing it early closes the cursor.

Configuration: ``path`` (default ``.ductwork/main.db``, relative to the config's folder).
Errors: :class:`sqlite3.Error` becomes :class:`ProviderError` naming the resource.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager, contextmanager
from typing import Any, ClassVar

from ductwork.builtin._sqlite import SqliteThread
from ductwork.errors import ValidationError
from ductwork.providers.base import Options
from ductwork.providers.database import (
    DEFAULT_BATCH_SIZE,
    Connection,
    Database,
    Result,
    check_batch_size,
    row_dicts,
)

__all__ = ["SqliteDatabase"]


class SqliteDatabaseOptions(Options):
    """Options of the ``sqlite`` database."""

    path: str = ".ductwork/main.db"


def _run(conn: sqlite3.Connection, sql: str, params: Mapping[str, Any] | None) -> Result:
    cur = conn.execute(sql, dict(params or {}))
    columns = [d[0] for d in cur.description] if cur.description else []
    rows = row_dicts(columns, cur.fetchall()) if columns else []
    return Result(rows=rows, rowcount=cur.rowcount, columns=columns)


class _SqliteConnection(Connection):
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    @contextmanager
    def _translated(self, message: str) -> Any:
        try:
            with self.db.translate(sqlite3.Error, message=message):
                yield
        except (OverflowError, UnicodeEncodeError) as exc:  # a value SQLite cannot store
            raise ValidationError(
                f"{self.db.context.resource}: a statement or bound value SQLite cannot take: {exc}"
            ) from None

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Result:
        conn = self.db.thread.connection()
        with self._translated("statement failed"):
            return await self.db.thread.run(lambda: _run(conn, sql, params))

    async def stream(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        check_batch_size(batch_size)
        conn = self.db.thread.connection()
        run = self.db.thread.run
        with self._translated("statement failed"):
            cur = await run(lambda: conn.execute(sql, dict(params or {})))
        try:
            columns = [d[0] for d in cur.description] if cur.description else []
            while columns:
                with self._translated("reading rows failed"):
                    rows = await run(lambda: cur.fetchmany(batch_size))
                if not rows:
                    break
                yield row_dicts(columns, rows)
        finally:
            await run(cur.close)  # ends the statement's read early when the caller stops


class SqliteDatabase(Database[SqliteDatabaseOptions]):
    """A SQLite database file."""

    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"transactions", "transactional_ddl", "locks", "streaming"}
    )
    dialect: ClassVar[str] = "sqlite"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        path = self.options.path
        self.thread = SqliteThread(path if path == ":memory:" else self.context.resolve(path))
        self._lock = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        self._tx_owner: asyncio.Task[Any] | None = None  # the task inside transaction(), if any

    @property
    def endpoint(self) -> str:
        return f"sqlite://{self.thread.path}"

    @property
    def native(self) -> sqlite3.Connection:
        """The ``sqlite3`` connection (use it only through ``self.thread.run``)."""
        return self.thread.connection()

    async def open(self) -> None:
        with self.translate(sqlite3.Error, OSError, message="cannot open database"):
            await self.thread.open()

    async def close(self) -> None:
        await self.thread.close()

    async def ping(self) -> None:
        await self.execute("SELECT 1")

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Result:
        self._not_inside_transaction()
        async with self._lock:
            return await _SqliteConnection(self).execute(sql, params)

    async def stream(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        check_batch_size(batch_size)
        self._not_inside_transaction()
        async with (
            self._lock,
            aclosing(_SqliteConnection(self).stream(sql, params, batch_size=batch_size)) as rows,
        ):
            async for batch in rows:
                yield batch

    def _not_inside_transaction(self) -> None:
        if self._tx_owner is not None and self._tx_owner is asyncio.current_task():
            # It would wait for its own transaction to end: a deadlock, refused instead.
            raise self.error("inside transaction(), run statements through its connection")

    @asynccontextmanager
    async def lock(self, name: str, *, timeout: float = 60.0) -> AsyncIterator[None]:
        if self.thread.path == ":memory:":  # one process can see this database: a local lock
            async with self._named_lock(name):
                yield
            return
        path = f"{self.thread.path}.{name}.lock"
        fd = await asyncio.to_thread(os.open, path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise self.error(
                            f"lock {name!r} still held by another process after {timeout:.0f}s"
                        ) from None
                    await asyncio.sleep(0.05)  # another process holds it: poll until free
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _named_lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._lock:
            conn = self.thread.connection()
            with self.translate(sqlite3.Error, message="cannot begin transaction"):
                await self.thread.run(lambda: conn.execute("BEGIN IMMEDIATE"))
            self._tx_owner = asyncio.current_task()
            try:
                yield _SqliteConnection(self)
            except BaseException:
                await self.thread.run(lambda: conn.execute("ROLLBACK"))
                raise
            finally:
                self._tx_owner = None
            with self.translate(sqlite3.Error, message="commit failed"):
                await self.thread.run(lambda: conn.execute("COMMIT"))
