"""``CacheSuite``: what every :class:`~ductwork.providers.Cache` must do."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import ClassVar

import pytest

from ductwork.errors import DuctworkError, UnsupportedError
from ductwork.providers.cache import Cache

__all__ = ["CacheSuite"]


async def _expires(cache: Cache, key: str, within: float) -> bool:
    """Whether ``key`` disappears within ``within`` seconds (polled; expiry is the behaviour)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await cache.get(key) is None:
            return True
        await asyncio.sleep(0.05)
    return False


class CacheSuite:
    """Subclass with a ``provider`` fixture yielding an opened Cache."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    @pytest.fixture
    def key(self) -> str:
        """A fresh key per test."""
        return f"t:{uuid.uuid4().hex}"

    async def test_set_then_get_returns_the_bytes(self, provider: Cache, key: str) -> None:
        await provider.set(key, b"\x00value\xff")
        assert await provider.get(key) == b"\x00value\xff"
        assert await provider.exists(key) is True

    async def test_missing_key_is_none(self, provider: Cache, key: str) -> None:
        assert await provider.get(key) is None
        assert await provider.exists(key) is False

    async def test_set_replaces(self, provider: Cache, key: str) -> None:
        await provider.set(key, b"one")
        await provider.set(key, b"two")
        assert await provider.get(key) == b"two"

    async def test_delete_reports_whether_the_key_was_there(
        self, provider: Cache, key: str
    ) -> None:
        await provider.set(key, b"v")
        assert await provider.delete(key) is True
        assert await provider.get(key) is None
        assert await provider.delete(key) is False

    async def test_ttl_expires_the_value(self, provider: Cache, key: str) -> None:
        await provider.set(key, b"short", ttl=1.0)
        await provider.set(f"{key}:keep", b"long", ttl=60)
        assert await provider.get(key) == b"short"
        assert await _expires(provider, key, within=5.0)
        assert await provider.get(f"{key}:keep") == b"long"

    async def test_incr_starts_at_zero_and_is_atomic(self, provider: Cache, key: str) -> None:
        assert await provider.incr(key) == 1
        assert await provider.incr(key, 5) == 6
        results = await asyncio.gather(*(provider.incr(key) for _ in range(50)))
        assert sorted(results) == list(range(7, 57))
        assert int(await provider.get(key) or b"0") == 56

    async def test_incr_ttl_applies_when_the_key_is_created(
        self, provider: Cache, key: str
    ) -> None:
        assert await provider.incr(key, ttl=1.0) == 1
        assert await provider.incr(key, ttl=1000) == 2
        assert await _expires(provider, key, within=5.0)

    async def test_incr_on_a_non_integer_is_refused(self, provider: Cache, key: str) -> None:
        await provider.set(key, b"not a number")
        with pytest.raises(DuctworkError):
            await provider.incr(key)
        assert await provider.get(key) == b"not a number"

    async def test_add_stores_only_when_absent_and_once_under_contention(
        self, provider: Cache, key: str
    ) -> None:
        if not provider.supports("add"):
            with pytest.raises(UnsupportedError):
                await provider.add(key, b"v")
            return
        assert await provider.add(key, b"first", ttl=60) is True
        assert await provider.add(key, b"second", ttl=60) is False
        assert await provider.get(key) == b"first"
        won = await asyncio.gather(*(provider.add(f"{key}:race", b"%d" % i) for i in range(20)))
        assert won.count(True) == 1
        assert await provider.get(f"{key}:race") == b"%d" % won.index(True)
        await provider.delete(key)
        assert await provider.add(key, b"again", ttl=1.0) is True
        assert await _expires(provider, key, within=5.0)
        assert await provider.add(key, b"after expiry") is True

    async def test_scan_pages_through_the_prefix_only(self, provider: Cache, key: str) -> None:
        # glob and regex characters in the prefix are taken literally
        prefix = f"{key}:*?[a]-^\\:"
        mine = {f"{prefix}{i:02d}" for i in range(23)}
        for k in mine:
            await provider.set(k, b"v")
        await provider.set(f"{key}:other", b"v")  # shares the key, not the prefix
        await provider.set(f"{key}:x{prefix[len(key) + 1 :]}", b"v")  # what a glob would match
        await provider.set(f"{prefix}gone", b"v", ttl=60)
        await provider.delete(f"{prefix}gone")
        if not provider.supports("scan"):
            with pytest.raises(UnsupportedError):
                await provider.scan(prefix)
            return
        seen: list[str] = []
        page = await provider.scan(prefix, limit=5)
        seen.extend(page.keys)
        for _ in range(100):  # bounded: a cursor that never ends is a failure
            if page.cursor is None:
                break
            page = await provider.scan(prefix, cursor=page.cursor, limit=5)
            seen.extend(page.keys)
        assert page.cursor is None
        assert set(seen) == mine
