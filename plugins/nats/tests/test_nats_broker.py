"""The nats broker against a real NATS JetStream server: conformance, errors, topology."""

from __future__ import annotations

import asyncio

import nats
import nats.errors
import pytest
from ductwork.errors import (
    AuthenticationError,
    ConnectionFailedError,
    ProviderError,
    ValidationError,
)
from ductwork.plugins import get_registry
from ductwork.providers import ProviderContext
from ductwork.providers.broker import DEAD_GROUP
from ductwork.testing import BrokerSuite
from ductwork.testing.broker import Restartable
from ductwork.testing.system_servers import nats_server
from ductwork_nats.broker import NATSBroker
from pydantic import ValidationError as PydanticValidationError

CONTEXT = ProviderContext(resource="brokers.bus", env="test", provider="nats")


def make(servers, prefix="dwt", **options) -> NATSBroker:
    return NATSBroker.from_options(
        CONTEXT, servers=servers, stream_prefix=prefix, subject_prefix=prefix, **options
    )


@pytest.fixture
async def broker(nats_url, prefix, cleanup):
    async with make([nats_url], prefix) as provider:
        yield provider


class TestNATSBroker(BrokerSuite):
    @pytest.fixture
    async def provider(self, nats_url, prefix, cleanup):
        async with make([nats_url], prefix) as provider:
            yield provider

    @pytest.fixture
    async def restartable(self):
        # A private server with JetStream file storage, restarted on the same folder.
        with nats_server() as server:
            async with make([server.url], request_timeout=2.0) as provider:
                yield Restartable(provider, server, publish_bound=2.0)


def _value(field):
    return getattr(field, "value", field)  # nats-py gives enums or plain strings


async def _streams(url: str, prefix: str) -> dict[str, object]:
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        infos = await nc.jetstream().streams_info()
        return {i.config.name: i for i in infos if i.config.name.startswith(prefix)}
    finally:
        await nc.close()


async def test_a_stream_per_topic_bound_to_its_subject(broker, nats_url, prefix):
    await broker.publish("orders.created", b"x")
    await broker.publish("orders_created", b"y")
    streams = await _streams(nats_url, prefix)
    assert len(streams) == 2  # distinct topics never share a stream, even when names clash
    subjects = sorted(s for info in streams.values() for s in info.config.subjects)
    assert subjects == [f"{prefix}.orders.created", f"{prefix}.orders_created"]
    assert all(_value(info.config.storage) == "file" for info in streams.values())


async def test_a_message_published_before_any_group_joined_is_not_delivered(broker):
    await broker.publish("early", b"before")
    async with await broker.subscribe("early", "late") as sub:
        await broker.publish("early", b"after")
        delivery = await sub.receive(timeout=5)
        assert delivery is not None and delivery.message.body == b"after"
        await delivery.ack()
        assert await sub.receive(timeout=0.3) is None


async def test_a_group_that_rejoins_gets_what_was_published_while_away(broker):
    sub = await broker.subscribe("rejoin", "g")
    await sub.close()
    await broker.publish("rejoin", b"while away")
    async with await broker.subscribe("rejoin", "g") as again:
        delivery = await again.receive(timeout=5)
        assert delivery is not None and delivery.message.body == b"while away"
        await delivery.ack()


async def test_message_ids_are_stream_sequences(broker):
    async with await broker.subscribe("ids", "g") as sub:
        first = await broker.publish("ids", b"1")
        second = await broker.publish("ids", b"2")
        assert first is not None and second is not None and int(second) == int(first) + 1
        delivery = await sub.receive(timeout=5)
        assert delivery is not None and delivery.message.id == first
        assert delivery.message.key is None and dict(delivery.message.headers) == {}
        await delivery.ack()


async def test_dead_letters_carry_their_origin_and_are_kept_without_a_reader(broker):
    async with await broker.subscribe("dl", "g", max_deliveries=1) as sub:
        await broker.publish("dl", b"bad", key="k", headers={"h": "v"})
        delivery = await sub.receive(timeout=5)
        assert delivery is not None
        await delivery.nack()
    # nobody read the dead-letter topic before: the group is made when the letter is moved
    async with await broker.subscribe(broker.dead_letter_topic("dl"), DEAD_GROUP) as dead:
        letter = await dead.receive(timeout=5)
        assert letter is not None and letter.message.body == b"bad"
        assert letter.message.key == "k"
        assert letter.message.headers["h"] == "v"
        assert letter.message.headers["x-ductwork-dead-letter-from"] == "dl"
        assert letter.message.headers["x-ductwork-deliveries"] == "1"
        await letter.ack()


async def test_closing_the_broker_returns_held_deliveries(nats_url, prefix, cleanup):
    async with make([nats_url], prefix) as first:
        sub = await first.subscribe("held", "g")
        await first.publish("held", b"m")
        assert await sub.receive(timeout=5) is not None
    async with make([nats_url], prefix) as second, await second.subscribe("held", "g") as sub:
        again = await sub.receive(timeout=5)  # well before ack_wait (30 s)
        assert again is not None and again.message.body == b"m" and again.attempt == 2
        await again.ack()


async def test_memory_storage_and_limits_retention(nats_url, prefix, cleanup):
    async with make([nats_url], prefix, storage="memory", retention="limits", max_age="1h") as b:
        await b.publish("mem", b"x")
    info = (await _streams(nats_url, prefix))[f"{prefix}_mem"]
    assert _value(info.config.storage) == "memory"
    assert _value(info.config.retention) == "limits"
    assert info.config.max_age == 3600
    assert info.state.messages == 1


async def test_invalid_topics_are_refused(broker):
    for topic in ("", "a..b", "a b", "a.*", "a.>", ".a"):
        with pytest.raises(ValidationError):
            await broker.publish(topic, b"x")


async def test_concurrent_first_use_creates_one_stream(broker, nats_url, prefix):
    await asyncio.gather(*(broker.publish("race", b"x") for _ in range(20)))
    assert list(await _streams(nats_url, prefix)) == [f"{prefix}_race"]


async def test_connection_refused_names_where_and_hides_credentials(closed_port):
    broker = make([f"nats://app:pa55word-x@127.0.0.1:{closed_port}"], connect_timeout=2)
    with pytest.raises(ConnectionFailedError) as info:
        await broker.open()
    text = str(info.value)
    for part in ("brokers.bus", "env=test", "provider=nats", f"nats://127.0.0.1:{closed_port}"):
        assert part in text
    assert "pa55word-x" not in text


async def test_wrong_password_is_an_authentication_error(auth_nats):
    wrong = "wr0ng-pa55word"
    # a generous connect timeout: on a loaded machine the refusal can take more than 2 s
    broker = make([auth_nats.url], user=auth_nats.user, password=wrong, connect_timeout=20)
    with pytest.raises(AuthenticationError) as info:
        await broker.open()
    text = str(info.value)
    assert wrong not in text and auth_nats.password not in text
    assert "brokers.bus" in text and auth_nats.user in text


def test_a_refusal_reported_as_a_reset_is_still_an_authentication_error():
    # nats-py closes the socket after the server's -ERR; the reset it then raises carries the
    # refusal only as __context__ (seen on a loaded machine).
    reset = ConnectionResetError(104, "Connection reset by peer")
    reset.__context__ = nats.errors.Error("nats: 'Authorization Violation'")
    error = make(["nats://127.0.0.1:1"], user="app")._open_error([reset])
    assert isinstance(error, AuthenticationError) and "user 'app'" in str(error)


async def test_right_password_connects_and_publishes(auth_nats):
    broker = make([auth_nats.url], user=auth_nats.user, password=auth_nats.password)
    async with broker:
        await broker.ping()
        async with await broker.subscribe("auth", "g") as sub:
            await broker.publish("auth", b"ok")
            delivery = await sub.receive(timeout=5)
            assert delivery is not None
            await delivery.ack()


async def test_publish_after_close_is_a_provider_error(nats_url, prefix, cleanup):
    broker = make([nats_url], prefix)
    await broker.open()
    await broker.publish("closed", b"x")
    await broker.native.close()
    with pytest.raises(ConnectionFailedError):
        await broker.publish("closed", b"y")
    await broker.close()


def test_options_reject_unknown_keys_and_hide_secrets():
    with pytest.raises(PydanticValidationError):
        NATSBroker.Options(server="nats://x")
    with pytest.raises(PydanticValidationError):
        NATSBroker.Options(storage="disk")
    with pytest.raises(PydanticValidationError):
        NATSBroker.Options(stream_prefix="a.b")
    options = NATSBroker.Options(servers="nats://a:4222, nats://b:4222", token="t0ken-xyz")
    assert options.servers == ["nats://a:4222", "nats://b:4222"]
    assert "t0ken-xyz" not in repr(options)
    broker = NATSBroker(NATSBroker.Options(servers=["nats://u:p4ss@h:4222", "tok@h2"]))
    assert broker.endpoint == "nats://h:4222,nats://h2"


def test_registered_through_the_entry_point():
    entry = get_registry().entries[("broker", "nats")]
    assert entry.distribution == "ductwork-nats"
    assert get_registry().get("broker", "nats") is NATSBroker


async def test_a_server_without_jetstream_is_a_provider_error(plain_nats):
    broker = make([plain_nats], request_timeout=1)
    with pytest.raises(ProviderError) as info:
        await broker.open()
    assert "JetStream" in str(info.value)
    assert broker._nc is None  # the connection was closed again
