"""The redis cache and broker over real TLS: private TLS-only redis-servers (redis 7).

Certificates come from a private CA made at test time (trustme). Checked: get/set and
publish/subscribe with ``ca_file`` (``ssl: true`` and ``rediss://``), a client certificate
(plain and encrypted key), redis-py's own ``ssl_*`` URL parameters still working, and the
failures: no or another CA, a certificate for another host, a refused client, unreadable files.
"""

from __future__ import annotations

import uuid

import pytest
from ductwork.errors import ConfigError, ConnectionFailedError
from ductwork.providers import ProviderContext
from ductwork_redis.broker import RedisBroker
from ductwork_redis.cache import RedisCache
from pydantic import ValidationError as PydanticValidationError

CONTEXT = ProviderContext(resource="caches.sessions", env="test", provider="redis")


def cache(address, context: ProviderContext = CONTEXT, **options) -> RedisCache:
    return RedisCache.from_options(
        context, **address, socket_connect_timeout=2, retries=0, **options
    )


async def _round_trip(provider: RedisCache) -> None:
    key = uuid.uuid4().hex
    await provider.set(key, b"over tls", ttl=30)
    assert await provider.get(key) == b"over tls"


async def test_cache_over_tls_with_the_private_ca(tls_redis, tls, password):
    async with cache(tls_redis, ssl=True, ca_file=str(tls.ca), password=password) as c:
        await _round_trip(c)
        assert c.endpoint == f"rediss://127.0.0.1:{tls_redis['port']}/0"


async def test_cache_over_a_rediss_url_with_the_private_ca(tls_redis, tls, password):
    url = f"rediss://:{password}@127.0.0.1:{tls_redis['port']}/0"
    async with RedisCache.from_options(CONTEXT, url=url, ca_file=str(tls.ca)) as c:
        await _round_trip(c)


async def test_a_relative_ca_file_resolves_against_the_config_folder(tls_redis, tls, password):
    context = ProviderContext(
        resource="caches.sessions", env="test", provider="redis", root=tls.folder
    )
    async with cache(tls_redis, context, ssl=True, ca_file="ca.pem", password=password) as c:
        await _round_trip(c)


async def test_the_urls_own_ssl_parameters_still_work(tls_redis, tls, password):
    url = f"rediss://:{password}@127.0.0.1:{tls_redis['port']}/0?ssl_ca_certs={tls.ca}"
    async with RedisCache.from_options(CONTEXT, url=url) as c:
        await _round_trip(c)


async def test_broker_publish_and_subscribe_over_tls(tls_redis, tls, password):
    # The broker reads on a connection of its own (reader_client): TLS must reach it too.
    broker = RedisBroker.from_options(
        CONTEXT, **tls_redis, ssl=True, ca_file=str(tls.ca), password=password
    )
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    async with broker, await broker.subscribe(topic, "g") as sub:
        await broker.publish(topic, b"over tls", key="k")
        delivery = await sub.receive(timeout=5)
        assert delivery is not None and delivery.message.body == b"over tls"
        await delivery.ack()


async def test_a_client_certificate(mutual_tls_redis, tls):
    options = {"cert_file": str(tls.client_cert), "key_file": str(tls.client_key)}
    async with cache(mutual_tls_redis, ssl=True, ca_file=str(tls.ca), **options) as c:
        await _round_trip(c)


async def test_an_encrypted_client_key_with_its_password(mutual_tls_redis, tls, tmp_path):
    key = tls.encrypted_client_key(tmp_path, b"k3y-pa55word")
    options = {"cert_file": str(tls.client_cert), "key_file": str(key)}
    c = cache(
        mutual_tls_redis, ssl=True, ca_file=str(tls.ca), key_password="k3y-pa55word", **options
    )
    async with c:
        await _round_trip(c)


def test_an_encrypted_client_key_without_or_with_a_wrong_password(tls, tmp_path):
    key = tls.encrypted_client_key(tmp_path, b"k3y-pa55word")
    options = {"ssl": True, "cert_file": str(tls.client_cert), "key_file": str(key)}
    with pytest.raises(ConfigError, match="is encrypted: set key_password"):
        RedisCache.from_options(CONTEXT, **options)
    with pytest.raises(ConfigError, match="wrong key_password") as info:
        RedisCache.from_options(CONTEXT, key_password="not-the-pa55word", **options)
    assert "not-the-pa55word" not in str(info.value) and "k3y-pa55word" not in str(info.value)
    assert "caches.sessions.test.cert_file" in str(info.value)


async def test_without_the_client_certificate_the_server_asks_for_it_fails(mutual_tls_redis, tls):
    c = cache(mutual_tls_redis, ssl=True, ca_file=str(tls.ca))
    with pytest.raises(ConnectionFailedError) as info:
        await c.open()
    await c.close()
    assert f":{mutual_tls_redis['port']}" in str(info.value)


@pytest.mark.parametrize("trust", ["system store", "another CA"])
async def test_an_untrusted_certificate_fails_clearly_without_the_password(
    trust, tls_redis, password, tmp_path_factory
):
    options = {}
    if trust == "another CA":
        from ductwork.testing.tls import tls_files

        options["ca_file"] = str(tls_files(tmp_path_factory.mktemp("stranger")).ca)
    c = cache(tls_redis, ssl=True, password=password, **options)
    with pytest.raises(ConnectionFailedError) as info:
        await c.open()
    await c.close()
    text = str(info.value)
    assert "certificate was not accepted" in text and "ca_file" in text
    assert password not in text and "caches.sessions" in text


async def test_a_certificate_for_another_host_fails_clearly(misnamed_tls_redis):
    address, files = misnamed_tls_redis
    c = cache(address, ssl=True, ca_file=str(files.ca))
    with pytest.raises(ConnectionFailedError, match="does not name the host"):
        await c.open()
    await c.close()


def test_a_missing_ca_file_is_a_config_error_before_connecting(closed_port, tmp_path):
    missing = tmp_path / "nope.pem"
    for provider in (RedisCache, RedisBroker):
        with pytest.raises(
            ConfigError, match=r"caches\.sessions\.test\.ca_file: cannot read"
        ) as info:
            provider.from_options(CONTEXT, port=closed_port, ssl=True, ca_file=str(missing))
        assert str(missing) in str(info.value)


def test_tls_options_are_refused_where_they_could_not_apply(tls):
    with pytest.raises(PydanticValidationError, match="TLS is off"):
        RedisCache.Options(ca_file="ca.pem")
    with pytest.raises(PydanticValidationError, match="TLS is off"):
        RedisCache.Options(url="redis://127.0.0.1:6379/0", ca_file="ca.pem")
    with pytest.raises(PydanticValidationError, match="not both"):
        RedisCache.Options(url="rediss://h:6380/0?ssl_ca_certs=/x.pem", ca_file="ca.pem")
    with pytest.raises(PydanticValidationError, match="need cert_file"):
        RedisCache.Options(ssl=True, key_password="x")
    options = RedisCache.Options(
        ssl=True, cert_file="c.pem", key_file="c.key", key_password="k3y-pa55"
    )
    assert "k3y-pa55" not in repr(options)
