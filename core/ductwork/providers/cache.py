"""The ``Cache`` interface: bytes under keys, with a time to live.

Capabilities: none optional today; every cache has TTLs and atomic increments.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

from ductwork.providers.base import Provider

__all__ = ["Cache"]


class Cache(Provider):
    """Get, set with TTL, delete, exists, atomic increment."""

    kind: ClassVar[str] = "cache"

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
