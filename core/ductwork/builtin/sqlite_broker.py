"""``sqlite`` broker: durable topics in one SQLite file, shared by processes on one machine.

Features: publish confirmed once committed (``synchronous=FULL``); consumer groups (one row per
message per group); ack/nack with redelivery; delayed nack; dead-lettering after
``max_deliveries``; a consumer that dies leaves its delivery to be redelivered once its lease
(``visibility_timeout``) expires. Receivers poll every ``poll_interval``.

Configuration: ``path`` (default ``.ductwork/events.db``), ``poll_interval`` (0.05 s),
``visibility_timeout`` (30 s). Errors: SQLite errors become :class:`ProviderError`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from ductwork.builtin._sqlite import SqliteThread
from ductwork.config.durations import Duration
from ductwork.providers.base import Options
from ductwork.providers.broker import (
    DEAD_GROUP,
    Broker,
    Delivery,
    Message,
    Subscription,
    dead_letter_marks,
    refuse_options,
)

__all__ = ["SqliteBroker"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dw_message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key TEXT,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    published_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dw_group (
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    max_deliveries INTEGER,
    PRIMARY KEY (topic, grp)
);
CREATE TABLE IF NOT EXISTS dw_delivery (
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    message_id INTEGER NOT NULL REFERENCES dw_message(id),
    attempt INTEGER NOT NULL DEFAULT 0,
    visible_at REAL NOT NULL,
    lease_token TEXT,
    lease_until REAL,
    PRIMARY KEY (topic, grp, message_id)
);
CREATE INDEX IF NOT EXISTS dw_delivery_due ON dw_delivery (topic, grp, visible_at);
"""


class SqliteBrokerOptions(Options):
    """Options of the ``sqlite`` broker."""

    path: str = ".ductwork/events.db"
    poll_interval: Duration = Field(0.05, gt=0)
    visibility_timeout: Duration = Field(30.0, gt=0)


class _SqliteDelivery(Delivery):
    def __init__(
        self, sub: _SqliteSubscription, message: Message, attempt: int, token: str
    ) -> None:
        super().__init__(message, attempt)
        self._sub = sub
        self._token = token

    async def _ack(self) -> None:
        await self._sub.settle(self, self._token, None)

    async def _nack(self, delay: float) -> None:
        await self._sub.settle(self, self._token, delay)


class _SqliteSubscription(Subscription):
    def __init__(
        self, broker: SqliteBroker, topic: str, group: str, max_deliveries: int | None
    ) -> None:
        self.broker = broker
        self.topic = topic
        self.group = group
        self.max_deliveries = max_deliveries
        self.held: dict[str, int] = {}

    async def receive(self, timeout: float | None = None) -> Delivery | None:
        opts = self.broker.options
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.closed:
            with self.broker.translate(sqlite3.Error, message="cannot receive"):
                got = await self.broker.db.run(self._claim)
            if got is not None:
                message, attempt, token = got
                self.held[token] = int(message.id or 0)
                return _SqliteDelivery(self, message, attempt, token)
            if deadline is not None and time.monotonic() >= deadline:
                return None
            pause = opts.poll_interval
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(pause)  # polling is how other processes' publishes arrive
        return None

    def _claim(self) -> tuple[Message, int, str] | None:
        conn = self.broker.db.connection()
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            while True:
                row = conn.execute(
                    "SELECT d.message_id, d.attempt, m.key, m.headers, m.body FROM dw_delivery d "
                    "JOIN dw_message m ON m.id = d.message_id "
                    "WHERE d.topic = ? AND d.grp = ? AND d.visible_at <= ? "
                    "AND (d.lease_until IS NULL OR d.lease_until <= ?) "
                    "ORDER BY d.visible_at, d.message_id LIMIT 1",
                    (self.topic, self.group, now, now),
                ).fetchone()
                if row is None:
                    conn.execute("COMMIT")
                    return None
                message_id, attempt, key, headers, body = row
                message = Message(
                    self.topic, bytes(body), key, json.loads(headers), str(message_id)
                )
                if self.max_deliveries is not None and attempt >= self.max_deliveries:
                    # a consumer died holding it as many times as it may be tried
                    self.broker.move_to_dead_letter(conn, self, message_id, message, attempt)
                    continue
                token = uuid.uuid4().hex
                conn.execute(
                    "UPDATE dw_delivery SET attempt = attempt + 1, lease_token = ?, "
                    "lease_until = ? WHERE topic = ? AND grp = ? AND message_id = ?",
                    (
                        token,
                        now + self.broker.options.visibility_timeout,
                        self.topic,
                        self.group,
                        message_id,
                    ),
                )
                conn.execute("COMMIT")
                return message, attempt + 1, token
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def settle(self, delivery: Delivery, token: str, delay: float | None) -> None:
        message_id = self.held.pop(token, None)
        if message_id is None:
            return

        def work() -> None:
            conn = self.broker.db.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if delay is None:
                    conn.execute(
                        "DELETE FROM dw_delivery WHERE topic = ? AND grp = ? AND message_id = ? "
                        "AND lease_token = ?",
                        (self.topic, self.group, message_id, token),
                    )
                    _collect(conn, message_id)
                elif self.max_deliveries is not None and delivery.attempt >= self.max_deliveries:
                    self.broker.move_to_dead_letter(
                        conn, self, message_id, delivery.message, delivery.attempt
                    )
                else:
                    conn.execute(
                        "UPDATE dw_delivery SET lease_token = NULL, lease_until = NULL, "
                        "visible_at = ? WHERE topic = ? AND grp = ? AND message_id = ? "
                        "AND lease_token = ?",
                        (time.time() + delay, self.topic, self.group, message_id, token),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        with self.broker.translate(sqlite3.Error, message="cannot settle delivery"):
            await self.broker.db.run(work)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        tokens = list(self.held)
        if not tokens or self.broker.db.conn is None:
            return

        def release() -> None:
            conn = self.broker.db.connection()
            conn.executemany(
                "UPDATE dw_delivery SET lease_token = NULL, lease_until = NULL "
                "WHERE lease_token = ?",
                [(t,) for t in tokens],
            )

        self.held.clear()
        with self.broker.translate(sqlite3.Error, message="cannot release deliveries"):
            await self.broker.db.run(release)


def _create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)


def _collect(conn: sqlite3.Connection, message_id: int) -> None:
    conn.execute(
        "DELETE FROM dw_message WHERE id = ? AND NOT EXISTS "
        "(SELECT 1 FROM dw_delivery WHERE message_id = ?)",
        (message_id, message_id),
    )


class SqliteBroker(Broker[SqliteBrokerOptions]):
    """Durable topics in a SQLite file, for processes on one machine."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"dead_letter", "delayed_nack", "ordering"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.db = SqliteThread(self.context.resolve(self.options.path))

    @property
    def endpoint(self) -> str:
        return f"sqlite://{self.db.path}"

    async def open(self) -> None:
        with self.translate(sqlite3.Error, OSError, message="cannot open the broker database"):
            await self.db.open(_create_schema)

    async def close(self) -> None:
        await self.close_subscriptions()
        await self.db.close()

    async def ping(self) -> None:
        with self.translate(sqlite3.Error, message="broker database unusable"):
            await self.db.run(lambda: self.db.connection().execute("SELECT 1").fetchone())

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str | None:
        message = Message(topic, bytes(body), key, dict(headers or {}))

        def work() -> str:
            conn = self.db.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                mid = self._insert(conn, message)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return str(mid)

        with self.translate(sqlite3.Error, message=f"cannot publish to {topic!r}"):
            return await self.db.run(work)

    @staticmethod
    def _insert(conn: sqlite3.Connection, message: Message) -> int:
        now = time.time()
        cur = conn.execute(
            "INSERT INTO dw_message (topic, key, headers, body, published_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (message.topic, message.key, json.dumps(dict(message.headers)), message.body, now),
        )
        mid = int(cur.lastrowid or 0)
        conn.execute(
            "INSERT INTO dw_delivery (topic, grp, message_id, visible_at) "
            "SELECT topic, grp, ?, ? FROM dw_group WHERE topic = ?",
            (mid, now, message.topic),
        )
        _collect(conn, mid)  # no group listens: nothing to keep
        return mid

    def move_to_dead_letter(
        self,
        conn: sqlite3.Connection,
        sub: _SqliteSubscription,
        message_id: int,
        message: Message,
        attempts: int,
    ) -> None:
        """Inside an open transaction: publish to the dead-letter topic, drop the delivery."""
        headers = {**message.headers, **dead_letter_marks(message.topic, attempts)}
        dead_topic = self.dead_letter_topic(message.topic)
        conn.execute(
            "INSERT OR IGNORE INTO dw_group (topic, grp) VALUES (?, ?)", (dead_topic, DEAD_GROUP)
        )
        self._insert(conn, Message(dead_topic, message.body, message.key, headers))
        conn.execute(
            "DELETE FROM dw_delivery WHERE topic = ? AND grp = ? AND message_id = ?",
            (sub.topic, sub.group, message_id),
        )
        _collect(conn, message_id)

    async def groups(self, topic: str) -> frozenset[str] | None:
        def work() -> frozenset[str]:
            rows = self.db.connection().execute(
                "SELECT grp FROM dw_group WHERE topic = ?", (topic,)
            ).fetchall()
            return frozenset(row[0] for row in rows)

        with self.translate(sqlite3.Error, message=f"cannot list the groups of {topic!r}"):
            return await self.db.run(work)

    async def subscribe(
        self, topic: str, group: str, *, max_deliveries: int | None = None, **options: Any
    ) -> Subscription:
        refuse_options("sqlite", options)

        def work() -> None:
            self.db.connection().execute(
                "INSERT INTO dw_group (topic, grp, max_deliveries) VALUES (?, ?, ?) "
                "ON CONFLICT (topic, grp) DO UPDATE SET max_deliveries = excluded.max_deliveries",
                (topic, group, max_deliveries),
            )

        with self.translate(sqlite3.Error, message=f"cannot subscribe to {topic!r}"):
            await self.db.run(work)
        return self.track(_SqliteSubscription(self, topic, group, max_deliveries))
