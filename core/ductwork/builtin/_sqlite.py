"""A SQLite connection owned by one worker thread, so the event loop never blocks on disk."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from ductwork.builtin._thread import DedicatedThread

__all__ = ["SqliteThread"]

T = TypeVar("T")


class SqliteThread:
    """One connection, one thread: every call runs there, in order.

    The connection is in autocommit mode (``isolation_level=None``): callers open
    transactions explicitly with ``BEGIN`` / ``BEGIN IMMEDIATE``.
    """

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._thread = DedicatedThread("ductwork-sqlite")
        self.conn: sqlite3.Connection | None = None

    async def open(self, setup: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Create the thread and the connection (WAL, synchronous=FULL), then run ``setup``."""
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()

        def connect() -> None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            if self.path != ":memory:":
                _set_wal(conn, self.busy_timeout_ms / 1000)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self.conn = conn
            if setup is not None:
                setup(conn)

        await self.run(connect)

    def run(self, fn: Callable[[], T]) -> Coroutine[Any, Any, T]:
        """Run ``fn`` on the connection's thread (await the result)."""
        return self._thread.run(fn)

    def connection(self) -> sqlite3.Connection:
        """The connection (only to be used from inside :meth:`run`)."""
        if self.conn is None:
            raise RuntimeError("SqliteThread is not open")
        return self.conn

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        if not self._thread.running:
            return
        if self.conn is not None:
            await self.run(self.conn.close)
            self.conn = None
        self._thread.stop()

    def close_now(self) -> None:
        """Close from synchronous code (an engine's dispose hook): queued calls finish first."""
        self._thread.stop()  # waits for what is queued; then nothing else uses the connection
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _set_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL, retrying within ``timeout``.

    SQLite answers ``database is locked`` at once, without calling the busy handler, when
    another process is switching the same new file to WAL (or recovering its WAL): two
    processes opening a fresh database together must not fail on that.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)  # on the connection's own thread, never the event loop
        delay = min(delay * 2, 0.1)
