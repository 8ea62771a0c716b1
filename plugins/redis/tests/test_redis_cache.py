"""The redis cache passes the cache conformance suite; options, errors and TTLs in detail."""

from __future__ import annotations

import asyncio
import uuid

import pydantic
import pytest
import redis.asyncio as aredis
from ductwork import DecodeError, Ductwork
from ductwork.config.loader import Config
from ductwork.errors import AuthenticationError, ConnectionFailedError, ValidationError
from ductwork.plugins import get_registry
from ductwork.providers import Cache, ProviderContext
from ductwork.testing import CacheSuite
from ductwork_redis.cache import RedisCache

CONTEXT = ProviderContext(resource="caches.sessions", env="test", provider="redis")


class TestRedisCache(CacheSuite):
    @pytest.fixture
    async def provider(self, redis_server, key_prefix):
        async with RedisCache.from_options(CONTEXT, **redis_server, key_prefix=key_prefix) as c:
            yield c


@pytest.fixture
async def cache(redis_server, key_prefix):
    async with RedisCache.from_options(CONTEXT, **redis_server, key_prefix=key_prefix) as c:
        yield c


def fresh() -> str:
    return uuid.uuid4().hex


def test_registered_through_the_entry_point():
    entry = get_registry().entries[("cache", "redis")]
    assert entry.distribution == "ductwork-redis"
    assert get_registry().get("cache", "redis") is RedisCache
    assert issubclass(RedisCache, Cache)


async def test_keys_carry_the_prefix(cache, key_prefix):
    key = fresh()
    await cache.set(key, b"v")
    assert await cache.native.get(key_prefix + key) == b"v"
    assert await cache.native.exists(key) == 0


async def test_ttl_becomes_milliseconds(cache, key_prefix):
    key = fresh()
    await cache.set(key, b"v", ttl=2.5)
    assert 2000 < await cache.native.pttl(key_prefix + key) <= 2500
    await cache.set(key, b"v")
    assert await cache.native.pttl(key_prefix + key) == -1


@pytest.mark.parametrize("ttl", [0, -1, float("nan")])
async def test_non_positive_ttl_is_refused_before_writing(cache, ttl):
    key = fresh()
    with pytest.raises(ValidationError):
        await cache.set(key, b"v", ttl=ttl)
    with pytest.raises(ValidationError):
        await cache.incr(key, ttl=ttl)
    assert await cache.get(key) is None


async def test_incr_sets_the_ttl_only_when_it_creates_the_key(cache, key_prefix):
    key = fresh()
    await cache.set(key, b"10")
    assert await cache.incr(key, 2, ttl=5) == 12
    assert await cache.native.pttl(key_prefix + key) == -1  # existed: ttl untouched
    other = fresh()
    assert await cache.incr(other, -3, ttl=5) == -3
    assert 4000 < await cache.native.pttl(key_prefix + other) <= 5000


async def test_incr_overflow_and_wrong_type_are_validation_errors(cache, key_prefix):
    key = fresh()
    await cache.set(key, str(2**63 - 1).encode())
    with pytest.raises(ValidationError):
        await cache.incr(key)
    await cache.native.rpush(key_prefix + key + "l", b"x")
    with pytest.raises(ValidationError):
        await cache.incr(key + "l", ttl=3)


async def test_url_option_with_credentials(auth_server, password):
    url = f"redis://:{password}@{auth_server['host']}:{auth_server['port']}/0"
    async with RedisCache.from_options(CONTEXT, url=url, key_prefix="u:") as c:
        assert password not in c.endpoint
        assert c.endpoint == f"redis://{auth_server['host']}:{auth_server['port']}/0"
        await c.set("k", b"v")
        assert await c.get("k") == b"v"
    assert password not in repr(RedisCache.Options(url=url))


async def test_connection_refused_names_where_and_hides_the_password(closed_port, password):
    port = closed_port
    cache = RedisCache.from_options(
        CONTEXT, host="127.0.0.1", port=port, password=password, socket_connect_timeout=1
    )
    with pytest.raises(ConnectionFailedError) as info:
        await cache.open()
    message = str(info.value)
    for part in ("caches.sessions", "env=test", "provider=redis", f"127.0.0.1:{port}"):
        assert part in message
    assert password not in message
    with pytest.raises(ConnectionFailedError):
        await cache.get("k")
    await cache.close()


async def test_wrong_password_is_an_authentication_error(auth_server):
    cache = RedisCache.from_options(CONTEXT, **auth_server, password="wrong-password")
    with pytest.raises(AuthenticationError) as info:
        await cache.open()
    assert "wrong-password" not in str(info.value)
    assert "provider=redis" in str(info.value)
    await cache.close()


async def test_no_password_where_one_is_required_is_an_authentication_error(auth_server):
    cache = RedisCache.from_options(CONTEXT, **auth_server)
    with pytest.raises(AuthenticationError):
        await cache.open()
    await cache.close()


async def test_unknown_user_is_an_authentication_error(redis_server):
    cache = RedisCache.from_options(
        CONTEXT, **redis_server, username=f"nobody-{fresh()}", password="whatever-pw"
    )
    with pytest.raises(AuthenticationError) as info:
        await cache.open()
    assert "whatever-pw" not in str(info.value)
    await cache.close()


def test_options_refuse_unknown_keys_and_mixed_addresses():
    with pytest.raises(pydantic.ValidationError, match="extra"):
        RedisCache.Options(hostname="x")
    with pytest.raises(pydantic.ValidationError, match="not both"):
        RedisCache.Options(url="redis://h:6379/0", host="other")
    with pytest.raises(pydantic.ValidationError, match="url must start"):
        RedisCache.Options(url="http://h:6379/0")
    opts = RedisCache.Options(password="pw-value")
    assert "pw-value" not in repr(opts)


def test_endpoint_of_parts_and_tls():
    assert RedisCache.from_options(port=6380, db=3).endpoint == "redis://127.0.0.1:6380/3"
    assert RedisCache.from_options(ssl=True).endpoint == "rediss://127.0.0.1:6379/0"
    tls = RedisCache.from_options(url="rediss://user:pw@cache.example:6390/2")
    assert tls.endpoint == "rediss://cache.example:6390/2"


async def test_a_full_pool_waits_for_a_free_connection(redis_server, key_prefix):
    async with RedisCache.from_options(
        **redis_server, key_prefix=key_prefix, max_connections=2
    ) as c:
        key = fresh()
        results = await asyncio.gather(*(c.incr(key) for _ in range(40)))
        assert sorted(results) == list(range(1, 41))


async def test_no_free_connection_within_pool_timeout_fails_cleanly(redis_server, key_prefix):
    async with RedisCache.from_options(
        CONTEXT, **redis_server, key_prefix=key_prefix, max_connections=1, pool_timeout=0.2
    ) as c:
        blocked = asyncio.ensure_future(c.native.blpop([key_prefix + fresh()], timeout=1))
        await asyncio.sleep(0)  # let it take the only connection
        with pytest.raises(ConnectionFailedError, match="no free connection"):
            await c.get(fresh())
        assert await blocked is None
        assert await c.get(fresh()) is None  # released: usable again


@pytest.mark.parametrize("raw", [b"hello", b"\xff\xfe not utf-8", b"{'single': 'quotes'}", b""])
async def test_a_value_another_client_wrote_that_is_not_json_is_a_decode_error(
    tmp_path, redis_server, key_prefix, raw
):
    """``redis-cli SET k hello`` under the cache's key space: ``dw.caches.get`` names it."""
    prefix = f"{key_prefix}{fresh()}:"
    config = Config.from_dict(
        {
            "product": "shop",
            "environments": ["dev"],
            "caches": {
                "sessions": {"dev": {"provider": "redis", **redis_server, "key_prefix": prefix}}
            },
        },
        root=tmp_path,
    )
    raw_client = aredis.Redis(host=redis_server["host"], port=redis_server["port"])
    async with Ductwork(config, env="dev") as dw:
        await dw.caches.set("sessions", "ok", {"n": 1})
        await raw_client.set(f"{prefix}shop:sessions:k", raw)  # what another client would do
        with pytest.raises(DecodeError, match=r"cache 'sessions' key 'k' .* not JSON") as info:
            await dw.caches.get("sessions", "k")
        assert info.value.resource == "caches.sessions" and info.value.key == "k"
        assert "dw.caches.delete" in str(info.value)
        assert isinstance(info.value.__cause__, ValueError)
        assert raw.decode(errors="replace") not in str(info.value) or not raw
        # Nothing was changed, the other keys read as before, and delete clears it.
        assert await raw_client.get(f"{prefix}shop:sessions:k") == raw
        assert await dw.caches.get("sessions", "ok") == {"n": 1}
        assert await dw.caches.delete("sessions", "k")
        assert await dw.caches.get("sessions", "k", default="gone") == "gone"
    await raw_client.aclose()
