"""The notification delivery log: one row per send in the engine's store, and its attempts.

A send is recorded when it starts (``pending``) and updated after each attempt: ``sent`` with
the provider's message id (the receipt's id), or its error — still ``pending`` while the caller
retries, ``failed`` when it gives up. A send with an idempotency key (a dispatched send's, or a
feature step's ``<run_id>:<step_key>``) that comes again — the job's or the step's next attempt —
updates the same row, so its ``attempts`` count every try.

What is kept: the message reference (``notifier:message``, or none for an ad hoc send), the
channel, the provider, the recipients, the template data with secrets redacted (every value a
``${secret:…}``/``${env:…}`` reference resolved to, URL passwords, and the values of keys named
like secrets: ``password``, ``token``, ``secret``, ``api_key`` …), the status and timing. Not the
rendered subject or body: the message reference and the data re-render it, and a body is the
part most likely to hold what should not sit in a log.

Reads are cheap at any size: ids are time-ordered (``ntf_`` + creation milliseconds + random),
so newest-first, ``since``/``until`` and retention read the primary key in order, and each
filter (status, notifier, message, recipient) has an index ending in the id.
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from ductwork._redact import MASK, get_logger, redact
from ductwork.engine.records import new_id, now_ms
from ductwork.engine.schema import notification, notification_to

if TYPE_CHECKING:
    import sqlite3

    from ductwork.engine.store import Store
    from ductwork.providers.notifier import Receipt

__all__ = [
    "STATUSES",
    "NotificationRecord",
    "Pending",
    "prune",
    "query",
    "recipient_key",
    "redacted",
    "start",
]

Status = Literal["pending", "sent", "failed"]
STATUSES: tuple[Status, ...] = ("pending", "sent", "failed")
_PREFIX = "ntf"
_ERROR_CHARS = 2000
_SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|auth(orization)?|credential|private[_-]?key)",
    re.IGNORECASE,
)
_ANGLE = re.compile(r"<([^<>]*)>\s*$")
log = get_logger("ductwork.notifications")


@dataclass(frozen=True)
class NotificationRecord:
    """One send as the log holds it (see :meth:`Notifications.log`)."""

    id: str
    notification: str
    message: str | None
    env: str
    channel: str
    provider: str
    to: list[str]
    data: dict[str, Any]
    status: Status
    attempts: int
    error: str | None
    provider_message_id: str | None
    idempotency_key: str | None
    created_at: datetime
    finished_at: datetime | None
    duration: float | None

    def to_dict(self) -> dict[str, Any]:
        """As JSON-friendly data (times in ISO 8601)."""
        out = asdict(self)
        for name in ("created_at", "finished_at"):
            value = out[name]
            out[name] = value.isoformat() if value is not None else None
        return out


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _record(row: Any) -> NotificationRecord:
    created = _dt(row.created_at)
    assert created is not None
    return NotificationRecord(
        id=row.id,
        notification=row.notifier,
        message=row.message,
        env=row.env,
        channel=row.channel,
        provider=row.provider,
        to=json.loads(row.recipients),
        data=json.loads(row.data),
        status=row.status,
        attempts=row.attempts,
        error=row.last_error,
        provider_message_id=row.provider_message_id,
        idempotency_key=row.idempotency_key,
        created_at=created,
        finished_at=_dt(row.finished_at),
        duration=None if row.duration_ms is None else row.duration_ms / 1000,
    )


def recipient_key(recipient: str) -> str:
    """How a recipient is indexed: an email address bare and lowercased, anything else as is.

    ``"Ada <Ada@Example.com>"`` and ``"ada@example.com"`` are the same recipient.
    """
    text = recipient.strip()
    inner = _ANGLE.search(text)
    if inner is not None:
        text = inner[1].strip()
    return text.lower() if "@" in text and "://" not in text else text


def redacted(value: Any) -> Any:
    """``value`` with secrets masked: registered secret values, URL passwords, secret-named keys."""
    if isinstance(value, Mapping):
        return {
            str(k): MASK if _SECRET_KEY.search(str(k)) else redacted(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def _error_text(error: BaseException) -> str:
    return redact(f"{type(error).__name__}: {error}")[:_ERROR_CHARS]


def _bound(ms: int) -> str:
    """The smallest id created at ``ms`` (ids start with their creation time)."""
    return f"{_PREFIX}_{max(ms, 0):012x}"


@dataclass
class Pending:
    """A send being made: call :meth:`attempt` after each try (the retry loop's hook).

    Once an attempt ends the send (sent, or failed without ``retrying``), later calls are
    ignored, so a retry loop's hook and the caller's own ``except`` may both report the last
    failure without counting it twice.

    The pending row is committed before the provider is called (so a send cut short by a
    crash stays visible as ``pending``); the attempts are written *behind* the send, in order,
    so a send does not wait for a second commit. The store settles them before any read of
    the log in this process (:func:`query`, :func:`prune`) and before it closes; another
    process may see ``pending`` for the milliseconds in between.
    """

    store: Store
    id: str
    key: str | None = None  # the idempotency key: a later send of it waits for these writes
    done: bool = False
    _last: asyncio.Task[None] | None = field(default=None, repr=False)

    async def attempt(
        self,
        *,
        receipt: Receipt | None = None,
        error: BaseException | None = None,
        retrying: bool = False,
    ) -> None:
        """Record one try: sent with ``receipt``, or ``error`` (``retrying``: not the last).

        The write is queued behind this send's earlier ones and not awaited. A failure to
        write the log is logged, never raised: the message may be out already, and raising
        would make a job retry it.
        """
        if self.done:
            return
        self.done = receipt is not None or not retrying
        # what changes besides attempts + 1 (and duration_ms, computed from finished_at)
        values: dict[str, Any] = {}
        if error is not None:
            values["last_error"] = _error_text(error)
        if receipt is not None:
            values.update(status="sent", provider_message_id=str(receipt.id)[:300])
        elif not retrying:
            values["status"] = "failed"
        if "status" in values:
            values["finished_at"] = now_ms()
        self._last = self.store.behind(self._write(values, self._last))
        if self.key is not None:
            keyed = _KEYED.setdefault(self.store, {})
            keyed[self.key] = self._last
            key = self.key
            self._last.add_done_callback(
                lambda task: keyed.pop(key) if keyed.get(key) is task else None
            )

    async def _write(self, values: dict[str, Any], after: asyncio.Task[None] | None) -> None:
        if after is not None:
            await asyncio.wait([after])  # this send's writes land in order
        try:
            if self.store.dialect == "sqlite":  # a group commit on the store's own thread
                from ductwork.engine import direct

                statement, params = _sqlite_update(self.id, values)
                await direct.batched(self.store, lambda conn: conn.execute(statement, params))
                return
            changes: dict[str, Any] = {**values, "attempts": notification.c.attempts + 1}
            if "finished_at" in values:
                changes["duration_ms"] = values["finished_at"] - notification.c.created_at
            async with self.store.tx() as conn:
                await conn.execute(
                    update(notification).where(notification.c.id == self.id).values(changes)
                )
        except Exception as exc:
            log.warning("could not record an attempt of %s in the delivery log: %s", self.id, exc)


async def start(
    store: Store,
    *,
    notifier: str,
    message: str | None,
    env: str,
    channel: str,
    provider: str,
    to: Sequence[str],
    data: Mapping[str, Any],
    idempotency_key: str | None = None,
) -> Pending:
    """Record a send as ``pending`` (or, for a key seen before, set its row pending again)."""
    now = now_ms()
    row = {
        "id": new_id(_PREFIX),
        "notifier": notifier,
        "message": f"{notifier}:{message}" if message else None,
        "env": env,
        "channel": channel,
        "provider": provider,
        "recipients": json.dumps([redact(r) for r in to]),
        "data": json.dumps(redacted(data), default=str),
        "status": "pending",
        "attempts": 0,
        "idempotency_key": idempotency_key,
        "created_at": now,
    }
    keys = sorted({recipient_key(redact(r))[:320] for r in to})
    earlier = None if idempotency_key is None else _KEYED.get(store, {}).pop(idempotency_key, None)
    if earlier is not None:  # the same send's last attempt, still being written: first
        await asyncio.wait([earlier])
    if store.dialect == "sqlite":  # one group commit on the store's own thread
        from ductwork.engine import direct

        made = await direct.batched(store, lambda conn: _sqlite_start(conn, row, keys))
        return Pending(store, made, idempotency_key)
    if idempotency_key is not None:
        found = await _again(store, idempotency_key)
        if found is not None:
            return Pending(store, found, idempotency_key)
    try:
        async with store.tx() as conn:
            await conn.execute(notification.insert().values(row))
            if keys:
                await conn.execute(
                    notification_to.insert(),
                    [{"notification_id": row["id"], "recipient": k} for k in keys],
                )
    except IntegrityError:
        if idempotency_key is None:
            raise
        found = await _again(store, idempotency_key)  # a concurrent send of the same key won
        if found is None:
            raise
        return Pending(store, found, idempotency_key)
    return Pending(store, str(row["id"]), idempotency_key)


# per store, the last write behind each idempotency key's send (start() of the key awaits it)
_KEYED: weakref.WeakKeyDictionary[Store, dict[str, asyncio.Task[None]]] = (
    weakref.WeakKeyDictionary()
)

_SQLITE_AGAIN = (
    f"UPDATE {notification.name} SET status = 'pending', finished_at = NULL, duration_ms = NULL"
    " WHERE idempotency_key = ? RETURNING id"
)
_SQLITE_INSERT = f"INSERT INTO {notification.name} ({{columns}}) VALUES ({{marks}})"
_SQLITE_TO = f"INSERT INTO {notification_to.name} (notification_id, recipient) VALUES (?, ?)"


def _sqlite_start(conn: sqlite3.Connection, row: dict[str, Any], keys: list[str]) -> str:
    """Inside a group commit: the send's row (or an earlier send's with its key, again pending)."""
    key = row["idempotency_key"]
    if key is not None:
        again = conn.execute(_SQLITE_AGAIN, (key,)).fetchone()
        if again is not None:
            return str(again[0])
    columns = list(row)
    insert = _SQLITE_INSERT.format(columns=", ".join(columns), marks=", ".join("?" * len(row)))
    conn.execute(insert, [row[c] for c in columns])
    conn.executemany(_SQLITE_TO, [(row["id"], k) for k in keys])
    return str(row["id"])


def _sqlite_update(entry: str, values: dict[str, Any]) -> tuple[str, list[Any]]:
    """An attempt's update as SQLite SQL: ``values`` set, attempts + 1, the duration if ended."""
    sets = ["attempts = attempts + 1", *(f"{column} = ?" for column in values)]
    params = list(values.values())
    if "finished_at" in values:
        sets.append("duration_ms = ? - created_at")
        params.append(values["finished_at"])
    params.append(entry)
    return f"UPDATE {notification.name} SET {', '.join(sets)} WHERE id = ?", params


async def _again(store: Store, key: str) -> str | None:
    """The row of an earlier send with ``key``, set pending again; None if there is none."""
    async with store.tx() as conn:
        found = (
            await conn.execute(
                update(notification)
                .where(notification.c.idempotency_key == key)
                .values(status="pending", finished_at=None, duration_ms=None)
                .returning(notification.c.id)
            )
        ).scalar()
    return None if found is None else str(found)


async def query(
    store: Store,
    *,
    status: str | None = None,
    message: str | None = None,
    recipient: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[NotificationRecord]:
    """Sends newest first; ``message`` is ``notifier:message`` or a notifier's tag (all of it).

    Attempts still being written behind their sends in this process are settled first.

    Raises:
        ValidationError: an unknown status, a limit below 1, a naive datetime.
    """
    from ductwork.errors import ValidationError

    if status is not None and status not in STATUSES:
        raise ValidationError(
            f"status {status!r} is not a delivery status (one of {', '.join(STATUSES)})"
        )
    if limit < 1:
        raise ValidationError("limit must be at least 1")
    for name, when in (("since", since), ("until", until)):
        if when is not None and when.tzinfo is None:
            raise ValidationError(f"{name} must be a timezone-aware datetime (UTC: tzinfo=UTC)")
    # the id the results are ordered by: the recipient index's when filtering by recipient
    if recipient is not None:
        order = notification_to.c.notification_id
        rows = (
            select(notification)
            .join(notification_to, notification_to.c.notification_id == notification.c.id)
            .where(notification_to.c.recipient == recipient_key(recipient))
        )
    else:
        order = notification.c.id
        rows = select(notification)
    if since is not None:
        rows = rows.where(order >= _bound(int(since.timestamp() * 1000)))
    if until is not None:
        rows = rows.where(order < _bound(int(until.timestamp() * 1000)))
    if status is not None:
        rows = rows.where(notification.c.status == status)
    if message is not None:
        column = notification.c.message if ":" in message else notification.c.notifier
        rows = rows.where(column == message)
    rows = rows.order_by(order.desc()).limit(limit)
    await store.settle()
    async with store.engine.connect() as conn:
        return [_record(r) for r in (await conn.execute(rows)).all()]


async def prune(
    store: Store, age: float, *, batch: int = 500, now: int | None = None, dry_run: bool = False
) -> int:
    """Remove sends created more than ``age`` seconds ago, oldest first, ``batch`` at a time.

    Returns how many were removed (with ``dry_run``, how many would be).
    """
    cutoff = _bound((now_ms() if now is None else now) - int(age * 1000))
    await store.settle()
    if dry_run:
        async with store.engine.connect() as conn:
            counted = select(func.count()).where(notification.c.id < cutoff)
            return int((await conn.execute(counted)).scalar_one())
    removed = 0
    while True:
        async with store.tx() as conn:
            ids = list(
                (
                    await conn.execute(
                        select(notification.c.id)
                        .where(notification.c.id < cutoff)
                        .order_by(notification.c.id)
                        .limit(batch)
                    )
                ).scalars()
            )
            if ids:
                await conn.execute(
                    delete(notification_to).where(notification_to.c.notification_id.in_(ids))
                )
                await conn.execute(delete(notification).where(notification.c.id.in_(ids)))
        removed += len(ids)
        if len(ids) < batch:
            return removed
