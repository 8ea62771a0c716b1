"""What a run of each kind does, through the client: one coroutine per kind.

A run's ``input`` is JSON; bytes travel as base64 (``data_b64``, ``message_b64``). Register
another kind with :func:`register_executor` (the ``noop`` kind is for benchmarks and probes).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ductwork.errors import NotFoundError

if TYPE_CHECKING:
    from ductwork.client import Ductwork

__all__ = ["EXECUTORS", "Executor", "executor_for", "register_executor", "split_target"]

Executor = Callable[["Ductwork", str, dict[str, Any], str], Awaitable[Any]]
EXECUTORS: dict[str, Executor] = {}


def register_executor(kind: str, fn: Executor) -> None:
    """Make runs of ``kind`` execute ``fn(client, target, input, env)``."""
    EXECUTORS[kind] = fn


def executor_for(kind: str) -> Executor:
    """The executor of ``kind``; :class:`NotFoundError` when none is registered."""
    try:
        return EXECUTORS[kind]
    except KeyError:
        raise NotFoundError(
            f"no executor for job kind {kind!r} (known: {', '.join(sorted(EXECUTORS))})"
        ) from None


def split_target(target: str) -> tuple[str, str]:
    """``"tag:name"`` as ``("tag", "name")``."""
    tag, _, name = target.partition(":")
    return tag, name


def plain(value: Any) -> Any:
    """A result as JSON-friendly data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    rows = getattr(value, "rows", None)
    if rows is not None and hasattr(value, "rowcount"):
        return {"rows": rows, "rowcount": value.rowcount}
    records = getattr(value, "records", None)
    if records is not None:
        return {"records": records}
    return value


async def _storage_save(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    payload = base64.b64decode(data["data_b64"])
    info = await dw.storage.save(
        target,
        data["key"],
        payload,
        content_type=data.get("content_type"),
        metadata=data.get("metadata"),
        env=env,
    )
    return plain(info)


async def _events_publish(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    broker, event = split_target(target)
    message = (
        base64.b64decode(data["message_b64"]) if "message_b64" in data else data.get("message")
    )
    return await dw.events.publish(
        broker,
        event,
        message,
        key=data.get("key"),
        headers=data.get("headers"),
        env=env,
        idempotency_key=data.get("idempotency_key"),
    )


async def _db_execute(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    return plain(await dw.databases.execute(target, data["sql"], data.get("params"), env=env))


async def _db_action(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    database, action = split_target(target)
    return plain(await dw.databases.action.execute(database, action, data.get("input"), env=env))


async def _graph_action(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    graph, action = split_target(target)
    return plain(await dw.graphs.action.execute(graph, action, data.get("input"), env=env))


async def _graph_query(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    return plain(await dw.graphs.query(target, data["cypher"], data.get("params"), env=env))


async def _notify(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    from ductwork.engine.steps import current_run

    notifier, message = split_target(target)
    # Each retry of the run is the same send: one delivery-log entry, one message id.
    run = current_run.get()
    key = data.get("idempotency_key") or (run.claimed.id if run is not None else None)
    receipt = await dw.notifications.send(
        notifier,
        message or None,
        to=data["to"],
        channel=data.get("channel"),
        data=data.get("data"),
        subject=data.get("subject"),
        body=data.get("body"),
        html=data.get("html"),
        idempotency_key=key,
        env=env,
    )
    return plain(receipt)


async def _noop(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    return None


for _kind, _fn in {
    "storage.save": _storage_save,
    "events.publish": _events_publish,
    "databases.execute": _db_execute,
    "databases.action": _db_action,
    "graphs.action": _graph_action,
    "graphs.query": _graph_query,
    "notifications.send": _notify,
    "noop": _noop,
}.items():
    register_executor(_kind, _fn)
