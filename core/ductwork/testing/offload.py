"""The offload (claim-check) case, run by each broker plugin's tests on its real server.

Offloading is the processor's (``dw.events``), not the provider's, so it is not a
:class:`~ductwork.testing.BrokerSuite` case: what a provider adds is whether it can list a topic's
groups (:meth:`Broker.groups`), and the case checks what follows from that::

    async with offload_client(tmp_path, {"provider": "nats", ...}, topic) as dw:
        key, events = await big_message_through(dw, size=5 << 20, groups=("a", "b"))
        assert not await stored(dw, key)          # every group acked: removed
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.processor.events import Event
from ductwork.providers.storage import Storage

__all__ = [
    "STORAGE",
    "big_message_through",
    "keyed_through",
    "offload_client",
    "stored",
    "stored_keys",
]

EVENT = "big"
BROKER = "bus"
STORAGE = "files"  # the storage resource holding offloaded bodies
WAIT = 60.0  # upper bound for a 5 MB round trip on a loaded CI machine; never slept


@asynccontextmanager
async def offload_client(
    root: Path,
    broker: dict[str, Any],
    topic: str,
    *,
    storage: dict[str, Any] | None = None,
    offload: dict[str, Any] | None = None,
    max_deliveries: int = 2,
    offloads: bool = True,
) -> AsyncIterator[Ductwork]:
    """A client whose broker ``bus`` offloads event ``big`` (on ``topic``) to storage ``files``.

    ``storage`` defaults to the builtin local provider under ``root``; ``offload`` overrides
    the offload settings (default ``{storage: files, over: 256KB, prefix: events/}``);
    ``offloads=False`` leaves ``offload`` out (the broker as it is).
    """
    data = {
        "product": "offload",
        "default_env": "dev",
        "environments": ["dev"],
        "storage": {STORAGE: {"dev": storage or {"provider": "local", "path": "files"}}},
        "brokers": {
            BROKER: {
                "dev": broker,
                "topics": {EVENT: topic},
                "max_deliveries": max_deliveries,
                "retry_delay": 0.01,
                "retry_delay_max": 0.02,
            }
        },
    }
    if offloads:
        settings = {"storage": STORAGE, "over": "256KB", "prefix": "events/"} | (offload or {})
        data["brokers"][BROKER]["offload"] = settings  # type: ignore[index]
    async with Ductwork(Config.from_dict(data, root=root), env="dev") as dw:
        yield dw


async def _files(dw: Ductwork) -> Storage:
    provider = await dw.provider("storage", STORAGE, None)
    assert isinstance(provider, Storage)
    return provider


async def stored_keys(dw: Ductwork, prefix: str = "events/") -> list[str]:
    """Every object key under ``prefix`` in storage ``files`` (ack markers included)."""
    storage = await _files(dw)
    return [item.key async for item in storage.iter_all(prefix)]


async def stored(dw: Ductwork, key: str) -> bool:
    """Whether ``key`` is in storage ``files``."""
    return await (await _files(dw)).exists(key)


def payload(size: int) -> bytes:
    """``size`` bytes that are not all alike (a truncation or a mix-up shows)."""
    block = hashlib.sha256(b"ductwork").digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


async def big_message_through(
    dw: Ductwork, *, size: int, groups: tuple[str, ...] = ("a", "b")
) -> tuple[str, dict[str, Event]]:
    """Publish ``size`` bytes to event ``big`` with ``groups`` subscribed; each must get it whole.

    Returns the stored body's key (read from storage before anything was consumed) and the
    event each group's handler got. Every handler has returned (acked) when this returns.
    """
    got: dict[str, Event] = {}
    readies = {g: asyncio.Event() for g in groups}
    gate = asyncio.Event()  # handlers wait for it: the key is read before any ack

    def handler_for(group: str) -> Any:
        async def handler(event: Event) -> None:
            await gate.wait()
            got[group] = event

        return handler

    tasks = [
        asyncio.create_task(
            dw.events.subscribe(BROKER, EVENT, handler_for(g), group=g, limit=1, ready=readies[g])
        )
        for g in groups
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies.values())), WAIT)
        body = payload(size)
        await dw.events.publish(BROKER, EVENT, body, headers={"trace": "t-1"})
        [key] = [k for k in await stored_keys(dw) if ".acks/" not in k]
        gate.set()
        assert await asyncio.wait_for(asyncio.gather(*tasks), WAIT) == [1] * len(groups)
    finally:
        for task in tasks:
            task.cancel()
    for group in groups:
        event = got[group]
        assert event.body == body, f"group {group} got {len(event.body)} bytes, not {size}"
        assert event.header("x-ductwork-offload") is None
        assert event.header("trace") == "t-1"
        assert event.content_type is None
    return key, got


async def keyed_through(
    dw: Ductwork, messages: list[tuple[Any, str]], *, expect: int
) -> tuple[list[str | None], list[Event]]:
    """Publish each ``(message, idempotency_key)`` to event ``big``; the ids and ``expect`` events.

    A group joins first; returns what each ``publish`` returned and the first ``expect`` events
    the group got (a broker that drops repeats delivers fewer than were published).
    """
    got: list[Event] = []
    ready = asyncio.Event()

    async def handler(event: Event) -> None:
        got.append(event)

    task = asyncio.create_task(
        dw.events.subscribe(BROKER, EVENT, handler, group="keyed", ready=ready, limit=expect)
    )
    try:
        await asyncio.wait_for(ready.wait(), WAIT)
        ids = [
            await dw.events.publish(BROKER, EVENT, message, idempotency_key=key)
            for message, key in messages
        ]
        await asyncio.wait_for(task, WAIT)
    finally:
        task.cancel()
    return ids, got
