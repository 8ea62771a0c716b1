"""Cached calls that do not stampede: single-flight, an optional lock, stale-while-revalidate.

Every ``cache=`` (``actions.run``, feature steps) goes through :func:`through_cache`:

- **Single-flight in a process.** Concurrent misses on one key share one fill task; the others
  await it (shielded: a cancelled caller does not cancel the fill others wait for). The fill
  reads the cache once more before calling upstream, so a caller that missed just before the
  value was stored finds it instead of calling again.
- **A lock across processes** (``lock: true``). The fill takes ``<key>:lock`` with
  :meth:`Cache.add` (set-if-absent with a TTL of ``lock_timeout``: a crashed holder's lock
  expires); the other processes poll the cache for the value (10 ms doubling to 200 ms) and take
  the lock themselves if it goes without a value. A fill slower than ``lock_timeout`` may let a
  second caller in: at worst two calls, never a wrong value.
- **Stale-while-revalidate** (``stale: 30s``). The value is stored with the time it stops
  being fresh, for ``ttl + stale``. A stale hit is returned at once and one background task
  refreshes it; ``Ductwork.close()`` waits for those tasks.

Errors of the upstream call reach every caller sharing it; nothing is stored then.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import pydantic
from pydantic import BaseModel, ConfigDict

from ductwork.config.durations import Duration
from ductwork.config.models import CacheResource
from ductwork.errors import ValidationError

if TYPE_CHECKING:
    from ductwork.client import Ductwork

__all__ = ["CachePolicy", "Flights", "cache_policy", "call_key", "through_cache"]

log = logging.getLogger("ductwork.caches")

Compute = Callable[[], Awaitable[Any]]
Fill = Callable[[], Coroutine[Any, Any, tuple[Any, bool]]]


class CachePolicy(BaseModel):
    """What ``cache=`` takes: a cache's tag, or this mapping (unset fields: the resource's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tag: str
    ttl: Duration | None = None
    lock: bool | None = None
    stale: Duration | None = None


def cache_policy(value: str | Mapping[str, Any] | CachePolicy | None) -> CachePolicy | None:
    """``cache=`` as a policy: ``"hot"`` or ``{"tag": "hot", "lock": True, "stale": "30s"}``."""
    if value is None or isinstance(value, CachePolicy):
        return value
    if isinstance(value, str):
        return CachePolicy(tag=value)
    try:
        return CachePolicy.model_validate(value)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'cache'}: {e['msg']}" for e in exc.errors()
        )
        raise ValidationError(
            f"cache= takes a cache's tag or {{tag, ttl, lock, stale}}: {problems}"
        ) from None


def call_key(*names: str, data: Mapping[str, Any]) -> str:
    """The cache key of a call: its names and a digest of its input (bytes by their digest)."""
    import hashlib
    import json

    def default(value: Any) -> Any:
        if isinstance(value, bytes | bytearray):
            return "sha256:" + hashlib.sha256(value).hexdigest()
        return repr(value)

    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=default)
    return ":".join([*names, hashlib.sha256(text.encode()).hexdigest()[:32]])


class Flights:
    """A client's fills in progress, by (cache, env, key), and its background refreshes."""

    def __init__(self) -> None:
        self.running: dict[tuple[str, str, str], asyncio.Task[tuple[Any, bool]]] = {}
        self.refreshing: set[asyncio.Task[Any]] = set()

    def start(self, key: tuple[str, str, str], fill: Fill) -> asyncio.Task[tuple[Any, bool]]:
        task = self.running.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(fill())
            self.running[key] = task
            task.add_done_callback(lambda _: self.running.pop(key, None))
        return task

    def refresh(self, key: tuple[str, str, str], fill: Fill) -> None:
        if key in self.running:
            return
        task = self.start(key, fill)
        self.refreshing.add(task)
        task.add_done_callback(self._refreshed)

    def _refreshed(self, task: asyncio.Task[Any]) -> None:
        self.refreshing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background cache refresh failed: %s", task.exception())

    async def drain(self) -> None:
        """Wait for the background refreshes (``Ductwork.close`` does, before closing caches)."""
        while self.refreshing:
            await asyncio.gather(*self.refreshing, return_exceptions=True)


async def through_cache(
    dw: Ductwork, policy: CachePolicy, key: str, env: str, compute: Compute
) -> tuple[Any, bool]:
    """The cached value of ``key``, else ``compute()``'s (stored); and whether it was cached.

    ``compute`` returns JSON data. Concurrent misses on one key share one ``compute()``.
    """
    resource = dw.config.resource("caches", policy.tag)
    assert isinstance(resource, CacheResource)
    ttl = policy.ttl if policy.ttl is not None else resource.ttl
    stale = policy.stale if policy.stale is not None else resource.stale
    lock = policy.lock if policy.lock is not None else resource.lock
    if ttl is None:
        stale = None  # a value that never expires is never stale
    caches, tag = dw.caches, policy.tag
    if stale is not None:
        key = f"{key}:swr"  # an envelope {value, fresh_until}, never mixed with plain values

    async def read() -> tuple[bool, Any, bool]:
        """(found, value, fresh)."""
        found = await caches.get(tag, key, default=_MISSING, env=env)
        if found is _MISSING:
            return False, None, False
        if stale is None:
            return True, found, True
        return True, found["value"], found["fresh_until"] > time.time()

    async def store(value: Any) -> None:
        if stale is None:
            await caches.set(tag, key, value, ttl=ttl, env=env)
        else:
            assert ttl is not None
            envelope = {"value": value, "fresh_until": time.time() + ttl}
            await caches.set(tag, key, envelope, ttl=ttl + stale, env=env)

    async def fill() -> tuple[Any, bool]:
        found, value, fresh = await read()
        if found and fresh:
            return value, True
        if lock:
            return await _fill_locked(dw, tag, key, env, resource, read, store, compute)
        value = await compute()
        await store(value)
        return value, False

    found, value, fresh = await read()
    flight = (tag, env, key)
    if found:
        if not fresh:
            dw._flights.refresh(flight, fill)
        return value, True
    return await asyncio.shield(dw._flights.start(flight, fill))


async def _fill_locked(
    dw: Ductwork,
    tag: str,
    key: str,
    env: str,
    resource: CacheResource,
    read: Callable[[], Awaitable[tuple[bool, Any, bool]]],
    store: Callable[[Any], Awaitable[None]],
    compute: Compute,
) -> tuple[Any, bool]:
    caches, lock_key, token = dw.caches, f"{key}:lock", uuid.uuid4().hex
    delay = 0.01
    while True:
        if await caches.add(tag, lock_key, token, ttl=resource.lock_timeout, env=env):
            try:
                found, value, fresh = await read()  # filled between our miss and the lock?
                if found and fresh:
                    return value, True
                value = await compute()
                await store(value)
                return value, False
            finally:
                await caches.delete(tag, lock_key, env=env)
        found, value, fresh = await read()
        if found and fresh:
            return value, True
        await asyncio.sleep(delay)  # another process holds the lock: poll for its value
        delay = min(delay * 2, 0.2)


_MISSING: Any = object()
