"""``dw.caches.list`` and ``clear``: paged, and only ever the product's own cache's keys."""

from __future__ import annotations

import uuid

import pytest
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.errors import UnsupportedError, ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CONFIG = """
product: {product}
environments: [dev, prd]
default_env: dev
caches:
  hot:
    dev: {{provider: memory, namespace: {space}}}
    prd: {{provider: redis, url: "redis://127.0.0.1:6379/0"}}
  cold:
    dev: {{provider: memory, namespace: {space}}}
    prd: {{provider: redis, url: "redis://127.0.0.1:6379/0"}}
"""


def _client(product: str, env: str, space: str) -> Ductwork:
    config = Config.from_text(CONFIG.format(product=product, space=space))
    return Ductwork(config, env=env)


async def _all(dw: Ductwork, cache: str, prefix: str = "") -> list[str]:
    keys: list[str] = []
    page = await dw.caches.list(cache, prefix, limit=3)
    keys.extend(page.keys)
    for _ in range(1000):
        if page.cursor is None:
            break
        page = await dw.caches.list(cache, prefix, cursor=page.cursor, limit=3)
        keys.extend(page.keys)
    assert page.cursor is None
    return sorted(set(keys))


@pytest.mark.parametrize("env", ["dev", "prd"])
async def test_list_and_clear_stay_in_the_product_and_cache(env):
    space, run = uuid.uuid4().hex, uuid.uuid4().hex[:8]
    async with (
        _client(f"shop{run}", env, space) as shop,
        _client(f"shop{run}x", env, space) as other,
    ):
        for i in range(7):
            await shop.caches.set("hot", f"user:{i}", i)
        await shop.caches.set("hot", "session:1", 1)
        await shop.caches.set("cold", "user:9", 9)  # another cache of the same product
        await other.caches.set("hot", "user:8", 8)  # another product whose name extends it
        assert await _all(shop, "hot", "user:") == [f"user:{i}" for i in range(7)]
        assert await _all(shop, "hot") == sorted([f"user:{i}" for i in range(7)] + ["session:1"])
        assert await shop.caches.clear("hot", "user:") == 7
        assert await _all(shop, "hot") == ["session:1"]
        assert await shop.caches.get("cold", "user:9") == 9
        assert await other.caches.get("hot", "user:8") == 8
        assert await shop.caches.clear("hot") == 1
        assert await _all(other, "hot") == ["user:8"]
        await other.caches.clear("hot")
        await shop.caches.clear("cold")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.text(min_size=1, max_size=12))
async def test_any_prefix_lists_only_keys_that_start_with_it(prefix):
    space = uuid.uuid4().hex
    async with _client(f"p{space[:8]}", "prd", space) as dw:
        await dw.caches.set("hot", f"{prefix}a", 1)
        # the same length, its last character off by one bit: never starts with the prefix
        await dw.caches.set("hot", f"{prefix[:-1]}{chr(ord(prefix[-1]) ^ 1)}", 2)
        assert await _all(dw, "hot", prefix) == [f"{prefix}a"]
        assert await dw.caches.clear("hot") == 2


async def test_bad_arguments_are_refused():
    async with _client("p", "dev", uuid.uuid4().hex) as dw:
        with pytest.raises(ValidationError, match="limit"):
            await dw.caches.list("hot", limit=0)


async def test_a_cache_without_scan_says_so():
    from ductwork.providers.cache import Cache

    class Plain(Cache):  # an outside plugin written before scan existed
        async def get(self, key: str) -> bytes | None:
            return None

        async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
            return None

        async def delete(self, key: str) -> bool:
            return False

        async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
            return amount

    with pytest.raises(UnsupportedError, match="scan"):
        await Plain().scan("x")
