"""Helpers for wire-format tests: another service's raw client on one side, ductwork on the other.

A plugin's wire test publishes with the backend's own client and consumes with
``dw.events.subscribe`` (and the reverse), so what docs/events.md says about where the payload,
key, id, content type and marks live is checked against the real server::

    async with wire_client(tmp_path, {"provider": "redis", "port": 6379}, topic) as dw:
        [event] = await handled(dw, lambda: raw_publish(...))
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.processor.events import Event

__all__ = ["EVENT", "WAIT", "dead_letter_one", "handled", "wire_client"]

EVENT = "order_placed"  # the event tag the helpers' product maps to the test's topic
BROKER = "bus"
WAIT = 30.0  # generous upper bound for a delivery on a loaded CI machine; never slept


@asynccontextmanager
async def wire_client(
    root: Path, provider: dict[str, Any], topic: str, *, max_deliveries: int = 3
) -> AsyncIterator[Ductwork]:
    """A client whose broker ``bus`` is ``provider``, with event ``order_placed`` on ``topic``."""
    data = {
        "product": "wire",
        "default_env": "dev",
        "environments": ["dev"],
        "brokers": {
            BROKER: {
                "dev": provider,
                "topics": {EVENT: topic},
                "max_deliveries": max_deliveries,
                "retry_delay": 0.01,
                "retry_delay_max": 0.02,
            }
        },
    }
    async with Ductwork(Config.from_dict(data, root=root), env="dev") as dw:
        yield dw


async def handled(
    dw: Ductwork, publish: Callable[[], Awaitable[object]], count: int = 1, group: str = "wire"
) -> list[Event]:
    """Join ``group``, run ``publish`` (another service's), return the first ``count`` events."""
    got: list[Event] = []
    ready = asyncio.Event()

    async def handler(event: Event) -> None:
        got.append(event)

    task = asyncio.create_task(
        dw.events.subscribe(BROKER, EVENT, handler, group=group, limit=count, ready=ready)
    )
    try:
        await asyncio.wait_for(ready.wait(), WAIT)
        await publish()
        await asyncio.wait_for(task, WAIT)
    finally:
        task.cancel()
    return got


async def dead_letter_one(dw: Ductwork, message: Any, *, key: str | None = None) -> None:
    """Publish ``message`` to a handler that always fails, until ductwork dead-letters it.

    With ``max_deliveries: 1`` in the client, the first failure moves it.
    """

    async def failing(event: Event) -> None:
        raise RuntimeError("refused by the test")

    ready = asyncio.Event()
    task = asyncio.create_task(
        dw.events.subscribe(BROKER, EVENT, failing, group="wire-dead", limit=1, ready=ready)
    )
    try:
        await asyncio.wait_for(ready.wait(), WAIT)
        await dw.events.publish(BROKER, EVENT, message, key=key)
        await asyncio.wait_for(task, WAIT)
    finally:
        task.cancel()
