"""The dbm cache passes ductwork's cache conformance suite, and its values outlive a restart."""

from __future__ import annotations

import pytest
from ductwork.plugins import get_registry
from ductwork.providers import ProviderContext
from ductwork.testing import CacheSuite
from ductwork_dbm.cache import DbmCache


class TestDbmCache(CacheSuite):
    @pytest.fixture
    async def provider(self, tmp_path):
        context = ProviderContext(resource="caches.t", env="test", provider="dbm", root=tmp_path)
        async with DbmCache.from_options(context, path="c.dbm") as cache:
            yield cache


async def test_values_survive_reopening(tmp_path):
    context = ProviderContext(resource="caches.t", env="test", provider="dbm", root=tmp_path)
    async with DbmCache.from_options(context, path="c.dbm") as cache:
        await cache.set("k", b"kept")
    async with DbmCache.from_options(context, path="c.dbm") as cache:
        assert await cache.get("k") == b"kept"


def test_registered_through_the_entry_point():
    entry = get_registry().entries[("cache", "dbm")]
    assert entry.distribution == "ductwork-dbm"
    assert get_registry().get("cache", "dbm") is DbmCache
