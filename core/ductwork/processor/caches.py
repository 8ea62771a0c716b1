"""``dw.caches``: JSON values in cache resources by tag, with the resource's default TTL.

Keys are namespaced as ``<product>:<cache tag>:<key>`` so products and caches can share one
backend without colliding. A value another client wrote there that is not JSON is refused by
:meth:`Caches.get` with :class:`~ductwork.errors.DecodeError` naming the cache and key.
"""

from __future__ import annotations

import json
from typing import Any

from ductwork.config.models import CacheResource
from ductwork.errors import DecodeError, ValidationError
from ductwork.processor._base import Namespace, to_json
from ductwork.providers.cache import Cache

__all__ = ["Caches"]

_DEFAULT: Any = object()


class Caches(Namespace):
    """The product's caches."""

    section = "caches"

    def _key(self, cache: str, key: str) -> str:
        if not isinstance(key, str) or not key:
            raise ValidationError("cache key must be a non-empty string")
        return f"{self._client.product}:{cache}:{key}"

    def _ttl(self, cache: str, ttl: float | Any | None) -> float | None:
        if ttl is not _DEFAULT:
            return ttl
        resource = self._client.config.resource(self.section, cache)
        assert isinstance(resource, CacheResource)
        return resource.ttl

    async def get(
        self, cache: str, key: str, *, default: Any = None, env: str | None = None
    ) -> Any:
        """The cached value, or ``default``."""
        full = self._key(cache, key)
        raw = await (await self._provider(cache, env, Cache)).get(full)
        if raw is None:
            return default
        try:
            return json.loads(raw)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise DecodeError(
                f"cache {cache!r} key {key!r} holds a value that is not JSON, so ductwork did not "
                f"write it ({type(exc).__name__}: {exc}); another client shares the key space "
                f"{self._client.product}:{cache}: — overwrite it with dw.caches.set or remove it "
                "with dw.caches.delete",
                resource=f"{self.section}.{cache}",
                key=key,
            ) from exc

    async def set(
        self, cache: str, key: str, value: Any, *, ttl: Any = _DEFAULT, env: str | None = None
    ) -> None:
        """Store ``value`` (JSON) for ``ttl`` seconds (default: the resource's ``ttl``)."""
        full = self._key(cache, key)
        raw = to_json(value, "cache value")
        await (await self._provider(cache, env, Cache)).set(full, raw, ttl=self._ttl(cache, ttl))

    async def delete(self, cache: str, key: str, *, env: str | None = None) -> bool:
        """Remove ``key``; ``True`` if it was there."""
        return await (await self._provider(cache, env, Cache)).delete(self._key(cache, key))

    async def exists(self, cache: str, key: str, *, env: str | None = None) -> bool:
        """Whether ``key`` holds a live value."""
        return await (await self._provider(cache, env, Cache)).exists(self._key(cache, key))

    async def incr(
        self, cache: str, key: str, amount: int = 1, *, ttl: Any = _DEFAULT, env: str | None = None
    ) -> int:
        """Atomically add ``amount``; ``ttl`` applies when the key is created."""
        provider = await self._provider(cache, env, Cache)
        return await provider.incr(self._key(cache, key), amount, ttl=self._ttl(cache, ttl))
