"""``memory`` cache: values in this process, with TTLs, atomic increments and ``add``.

Caches with the same ``namespace`` share their values within a process. Expired values are
dropped when read and swept when the cache grows past ``max_entries``.

Configuration: ``namespace`` (default ``default``), ``max_entries`` (default 100,000; the least
recently written go first).
"""

from __future__ import annotations

import threading
import time
from typing import ClassVar

from pydantic import Field

from ductwork.errors import ValidationError
from ductwork.providers.base import Options
from ductwork.providers.cache import Cache, KeyPage

__all__ = ["MemoryCache"]


class MemoryCacheOptions(Options):
    """Options of the ``memory`` cache."""

    namespace: str = "default"
    max_entries: int = Field(100_000, ge=1)


class _Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data: dict[str, tuple[bytes, float | None]] = {}


_stores: dict[str, _Store] = {}
_stores_lock = threading.Lock()


class MemoryCache(Cache[MemoryCacheOptions]):
    """A dict with expiry times."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"scan", "add"})

    @property
    def store(self) -> _Store:
        """The namespace's shared values."""
        with _stores_lock:
            return _stores.setdefault(self.options.namespace, _Store())

    @property
    def endpoint(self) -> str:
        return f"memory://{self.options.namespace}"

    def _live(self, store: _Store, key: str, now: float) -> bytes | None:
        item = store.data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= now:
            del store.data[key]
            return None
        return value

    def _put(self, store: _Store, key: str, value: bytes, ttl: float | None, now: float) -> None:
        store.data.pop(key, None)  # re-inserting keeps dict order = write order
        store.data[key] = (value, None if ttl is None else now + ttl)
        if len(store.data) > self.options.max_entries:
            for k in [k for k, (_, e) in store.data.items() if e is not None and e <= now]:
                del store.data[k]
            while len(store.data) > self.options.max_entries:
                del store.data[next(iter(store.data))]

    async def get(self, key: str) -> bytes | None:
        store = self.store
        with store.lock:
            return self._live(store, key, time.monotonic())

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        store = self.store
        with store.lock:
            self._put(store, key, bytes(value), ttl, time.monotonic())

    async def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        store = self.store
        with store.lock:
            now = time.monotonic()
            if self._live(store, key, now) is not None:
                return False
            self._put(store, key, bytes(value), ttl, now)
            return True

    async def delete(self, key: str) -> bool:
        store = self.store
        with store.lock:
            present = self._live(store, key, time.monotonic()) is not None
            store.data.pop(key, None)
            return present

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        store = self.store
        with store.lock:
            now = time.monotonic()
            current = self._live(store, key, now)
            if current is None:
                value = amount
                self._put(store, key, str(value).encode(), ttl, now)
                return value
            try:
                value = int(current) + amount
            except ValueError:
                raise ValidationError(f"cache key {key!r} does not hold an integer") from None
            expires = store.data[key][1]
            store.data[key] = (str(value).encode(), expires)
            return value

    async def scan(self, prefix: str, *, cursor: str | None = None, limit: int = 100) -> KeyPage:
        store = self.store
        with store.lock:
            now = time.monotonic()
            keys = sorted(
                k
                for k, (_, expires) in store.data.items()
                if k.startswith(prefix) and (cursor is None or k > cursor)
                if expires is None or expires > now
            )
        page = keys[:limit]
        return KeyPage(page, page[-1] if len(keys) > limit else None)
