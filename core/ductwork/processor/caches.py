"""``dw.caches``: JSON values in cache resources by tag, with the resource's default TTL.

Keys are namespaced as ``<product>:<cache tag>:<key>`` so products and caches can share one
backend without colliding; :meth:`Caches.list` and :meth:`Caches.clear` see only that namespace.
A value another client wrote there that is not JSON is refused by :meth:`Caches.get` with
:class:`~ductwork.errors.DecodeError` naming the cache and key.
"""

from __future__ import annotations

import json
from typing import Any

from ductwork.config.models import CacheResource
from ductwork.errors import DecodeError, ValidationError
from ductwork.processor._base import Namespace, to_json
from ductwork.providers.cache import Cache, KeyPage

__all__ = ["Caches"]

_DEFAULT: Any = object()


class Caches(Namespace):
    """The product's caches."""

    section = "caches"

    def _key(self, cache: str, key: str) -> str:
        if not isinstance(key, str) or not key:
            raise ValidationError("cache key must be a non-empty string")
        return f"{self._root(cache)}{key}"

    def _root(self, cache: str) -> str:
        return f"{self._client.product}:{cache}:"

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

    async def add(
        self, cache: str, key: str, value: Any, *, ttl: Any = _DEFAULT, env: str | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` is absent (atomically); ``True`` if this call did.

        The provider must support ``add`` (memory, redis, dbm do).
        """
        full = self._key(cache, key)
        provider = await self._provider(cache, env, Cache)
        provider.require("add")
        return await provider.add(full, to_json(value, "cache value"), ttl=self._ttl(cache, ttl))

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

    async def list(
        self,
        cache: str,
        prefix: str = "",
        *,
        cursor: str | None = None,
        limit: int = 100,
        env: str | None = None,
    ) -> KeyPage:
        """A page of the cache's live keys starting with ``prefix``; pass ``cursor`` on for more.

        Keys are the product's own (as given to :meth:`set`), never another product's or
        cache's. The provider must support ``scan`` (memory, redis do).
        """
        if not isinstance(prefix, str):
            raise ValidationError("cache key prefix must be a string")
        if limit < 1:
            raise ValidationError(f"limit must be at least 1, not {limit}")
        provider = await self._provider(cache, env, Cache)
        provider.require("scan")
        root = self._root(cache)
        page = await provider.scan(root + prefix, cursor=cursor, limit=limit)
        return KeyPage([key[len(root) :] for key in page.keys], page.cursor)

    async def clear(self, cache: str, prefix: str = "", *, env: str | None = None) -> int:
        """Delete the cache's keys starting with ``prefix`` (all of them by default).

        Returns how many were deleted. Keys written while it runs may survive it.
        """
        provider = await self._provider(cache, env, Cache)
        provider.require("scan")
        root, cursor, deleted = self._root(cache), None, 0
        while True:
            page = await provider.scan(root + prefix, cursor=cursor, limit=500)
            for key in page.keys:
                deleted += await provider.delete(key)
            if page.cursor is None:
                return deleted
            cursor = page.cursor
