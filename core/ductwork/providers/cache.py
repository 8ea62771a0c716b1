"""The ``Cache`` interface: bytes under keys, with a time to live.

Every cache has TTLs and atomic increments. Capabilities:
    ``scan``: :meth:`Cache.scan` lists live keys by prefix, a page at a time (``dw.caches.list``
        and ``clear`` need it).
    ``add``: :meth:`Cache.add` stores a value only if the key is absent, atomically for every
        client of the backend (the cross-process lock of ``cache: {lock: true}`` needs it).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from ductwork.providers.base import OptionsT, Provider

__all__ = ["Cache", "KeyPage"]


@dataclass(frozen=True)
class KeyPage:
    """A page of keys and the cursor of the next page (``None``: this was the last)."""

    keys: list[str]
    cursor: str | None = None


class Cache(Provider[OptionsT]):
    """Get, set with TTL, delete, exists, atomic increment."""

    kind: ClassVar[str] = "cache"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"scan", "add"})

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value, or ``None`` when missing or expired."""

    @abstractmethod
    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value``; it expires after ``ttl`` seconds (never when ``None``)."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove the key; ``True`` if it was there."""

    async def exists(self, key: str) -> bool:
        """Whether the key holds a live value."""
        return await self.get(key) is not None

    @abstractmethod
    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Atomically add ``amount`` to the integer at ``key`` (0 when missing) and return it.

        ``ttl`` applies only when the key is created by this call.
        """

    async def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` holds no live value; ``True`` if this call stored it.

        Atomic across every client of the backend (Redis ``SET NX``), so it can serve as a lock
        with a TTL. Needs the ``add`` capability.
        """
        self.require("add")
        raise NotImplementedError  # pragma: no cover - a provider declaring add overrides this

    async def scan(self, prefix: str, *, cursor: str | None = None, limit: int = 100) -> KeyPage:
        """Up to about ``limit`` live keys starting with ``prefix``, from ``cursor`` on.

        Pass the returned cursor back for the next page; ``None`` means the scan is complete.
        A key that lives from the first page to the last is listed at least once (a backend
        that scans by hash, like Redis, may list it twice); keys written or removed meanwhile
        may or may not appear. Needs the ``scan`` capability.
        """
        self.require("scan")
        raise NotImplementedError  # pragma: no cover - a provider declaring scan overrides this
