"""``dbm`` cache: values in a ``dbm`` file that outlives the process.

Features: TTLs (stored with each value), atomic increments and ``add`` within a process, values kept
across restarts. One process at a time may write the file (dbm has no cross-process locking):
use ``redis`` when several processes share a cache.

Configuration: ``path`` (default ``.ductwork/cache.dbm``, relative to the config's folder).
Errors: OS and dbm errors become :class:`ductwork.ProviderError`.
"""

from __future__ import annotations

import asyncio
import dbm
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from ductwork import ValidationError
from ductwork.providers import Cache, KeyPage, Options

__all__ = ["DbmCache"]

T = TypeVar("T")
_HEADER = struct.Struct(">d")  # expiry as UNIX time; 0.0 means never


class DbmOptions(Options):
    """Options of the ``dbm`` cache."""

    path: str = ".ductwork/cache.dbm"


class DbmCache(Cache[DbmOptions]):
    """A cache in a dbm file."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"scan", "add"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._db: Any = None

    @property
    def endpoint(self) -> str:
        return str(self.context.resolve(self.options.path))

    async def open(self) -> None:
        def work() -> None:
            path = self.context.resolve(self.endpoint)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = dbm.open(str(path), "c")  # noqa: SIM115 - held open until close()

        with self.translate(OSError, dbm.error[0], message="cannot open dbm file"):
            await asyncio.to_thread(work)

    async def close(self) -> None:
        if self._db is not None:
            await asyncio.to_thread(self._db.close)
            self._db = None

    async def _run(self, fn: Callable[[], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn()

        with self.translate(OSError, dbm.error[0], message="dbm operation failed"):
            return await asyncio.to_thread(locked)

    def _live(self, key: bytes) -> tuple[bytes, float] | None:
        raw = self._db.get(key)
        if raw is None:
            return None
        (expires,) = _HEADER.unpack_from(raw)
        if expires and expires <= time.time():
            del self._db[key]
            return None
        return raw[_HEADER.size :], expires

    async def get(self, key: str) -> bytes | None:
        found = await self._run(lambda: self._live(key.encode()))
        return None if found is None else found[0]

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        expires = 0.0 if ttl is None else time.time() + ttl

        def work() -> None:
            self._db[key.encode()] = _HEADER.pack(expires) + bytes(value)

        await self._run(work)

    async def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        expires = 0.0 if ttl is None else time.time() + ttl

        def work() -> bool:
            if self._live(key.encode()) is not None:
                return False
            self._db[key.encode()] = _HEADER.pack(expires) + bytes(value)
            return True

        return await self._run(work)

    async def delete(self, key: str) -> bool:
        def work() -> bool:
            present = self._live(key.encode()) is not None
            if present:
                del self._db[key.encode()]
            return present

        return await self._run(work)

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        def work() -> int:
            found = self._live(key.encode())
            if found is None:
                value, expires = amount, (0.0 if ttl is None else time.time() + ttl)
            else:
                try:
                    value, expires = int(found[0]) + amount, found[1]
                except ValueError:
                    raise ValidationError(f"cache key {key!r} does not hold an integer") from None
            self._db[key.encode()] = _HEADER.pack(expires) + str(value).encode()
            return value

        return await self._run(work)

    async def scan(self, prefix: str, *, cursor: str | None = None, limit: int = 100) -> KeyPage:
        start, after = prefix.encode(), (cursor or "").encode()

        def work() -> list[str]:
            every = list(self._db.keys())  # some dbm flavours cannot be iterated
            found = [k for k in every if k.startswith(start) and k > after]
            return sorted(k.decode() for k in found if self._live(k) is not None)

        keys = await self._run(work)
        page = keys[:limit]
        return KeyPage(page, page[-1] if len(keys) > limit else None)
