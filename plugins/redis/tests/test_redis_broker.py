"""The redis broker passes the broker conformance suite; Streams specifics in detail."""

from __future__ import annotations

import asyncio
import time
import uuid

import pydantic
import pytest
from ductwork.errors import AuthenticationError, ConnectionFailedError, ValidationError
from ductwork.plugins import get_registry
from ductwork.providers import Broker, ProviderContext
from ductwork.providers.broker import DEAD_GROUP
from ductwork.testing import BrokerSuite
from ductwork.testing.broker import Restartable
from ductwork.testing.system_servers import redis_server as private_redis
from ductwork_redis.broker import RedisBroker

CONTEXT = ProviderContext(resource="brokers.events", env="test", provider="redis")
WAIT = 10.0


class TestRedisBroker(BrokerSuite):
    @pytest.fixture
    async def provider(self, redis_server, key_prefix):
        async with RedisBroker.from_options(CONTEXT, **redis_server, key_prefix=key_prefix) as b:
            yield b

    @pytest.fixture
    async def restartable(self):
        # A private server that persists every write (AOF, fsync always), as in production.
        with private_redis("--appendonly", "yes", "--appendfsync", "always") as server:
            async with RedisBroker.from_options(
                CONTEXT, port=server.port, claim_idle=1000, socket_timeout=2
            ) as broker:
                yield Restartable(broker, server, publish_bound=5.0)


@pytest.fixture
def topic() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def broker(redis_server, key_prefix):
    async with RedisBroker.from_options(
        CONTEXT, **redis_server, key_prefix=key_prefix, claim_idle=400, claim_interval=0.1
    ) as b:
        yield b


def test_registered_through_the_entry_point():
    entry = get_registry().entries[("broker", "redis")]
    assert entry.distribution == "ductwork-redis"
    assert get_registry().get("broker", "redis") is RedisBroker
    assert issubclass(RedisBroker, Broker)
    assert RedisBroker.capabilities == {"dead_letter", "delayed_nack", "ordering"}


async def test_message_is_stored_as_stream_fields(broker, topic, key_prefix):
    async with await broker.subscribe(topic, "g") as sub:
        message_id = await broker.publish(topic, b"\x00b", key="k", headers={"a": "1"})
        entries = await broker.native.xrange(key_prefix + topic)
        assert entries == [(message_id.encode(), {b"body": b"\x00b", b"key": b"k", b"h:a": b"1"})]
        delivery = await sub.receive(timeout=WAIT)
        assert delivery.message.id == message_id
        await delivery.ack()
        pending = await broker.native.xpending(key_prefix + topic, "g")
        assert pending["pending"] == 0


async def test_group_joined_later_sees_only_later_messages(broker, topic):
    await broker.publish(topic, b"before")
    async with await broker.subscribe(topic, "late") as sub:
        await broker.publish(topic, b"after")
        delivery = await sub.receive(timeout=WAIT)
        assert delivery.message.body == b"after"
        await delivery.ack()
        assert await sub.receive(timeout=0.2) is None


async def test_entry_of_a_dead_consumer_is_claimed_after_claim_idle(broker, topic, key_prefix):
    async with await broker.subscribe(topic, "g") as sub:
        await broker.publish(topic, b"orphan")
        # a consumer that reads and dies without acking or closing
        await broker.native.xreadgroup("g", "crashed", {key_prefix + topic: ">"}, count=1)
        started = time.monotonic()
        delivery = await sub.receive(timeout=WAIT)
        assert delivery.message.body == b"orphan"
        assert delivery.attempt == 2
        assert time.monotonic() - started >= 0.3  # not before claim_idle (400 ms)
        await delivery.ack()
        assert await sub.receive(timeout=0.3) is None


async def test_consumer_that_died_max_deliveries_times_is_dead_lettered(broker, topic, key_prefix):
    dead = await broker.subscribe(broker.dead_letter_topic(topic), DEAD_GROUP)
    try:
        async with await broker.subscribe(topic, "g", max_deliveries=1) as sub:
            await broker.publish(topic, b"crashes")
            await broker.native.xreadgroup("g", "crashed", {key_prefix + topic: ">"}, count=1)
            assert await sub.receive(timeout=1.0) is None
            letter = await dead.receive(timeout=WAIT)
            assert letter.message.body == b"crashes"
            assert letter.message.headers["x-ductwork-dead-letter-from"] == topic
            assert letter.message.headers["x-ductwork-deliveries"] == "1"
            await letter.ack()
            assert (await broker.native.xpending(key_prefix + topic, "g"))["pending"] == 0
    finally:
        await dead.close()


async def test_dead_letter_group_exists_before_anyone_reads_it(broker, topic):
    async with await broker.subscribe(topic, "g", max_deliveries=1) as sub:
        await broker.publish(topic, b"poison", key="p", headers={"h": "v"})
        delivery = await sub.receive(timeout=WAIT)
        await delivery.nack()
    # DEAD_GROUP was created from the start of the dead-letter stream: nothing was missed
    async with await broker.subscribe(broker.dead_letter_topic(topic), DEAD_GROUP) as dead:
        letter = await dead.receive(timeout=WAIT)
        assert (letter.message.body, letter.message.key) == (b"poison", "p")
        assert letter.message.headers["h"] == "v"
        await letter.ack()


async def test_delay_longer_than_claim_idle_is_capped(broker, topic):
    async with await broker.subscribe(topic, "g") as sub:
        await broker.publish(topic, b"x")
        first = await sub.receive(timeout=WAIT)
        started = time.monotonic()
        await first.nack(delay=60)
        second = await sub.receive(timeout=WAIT)
        assert second.attempt == 2
        assert 0.3 <= time.monotonic() - started < 5
        await second.ack()


async def test_close_keeps_a_delayed_nack_delayed(broker, topic):
    leaving = await broker.subscribe(topic, "g")
    staying = await broker.subscribe(topic, "g")
    try:
        await broker.publish(topic, b"later")
        delivery = await leaving.receive(timeout=WAIT)
        await delivery.nack(delay=0.35)
        await leaving.close()
        assert await staying.receive(timeout=0.15) is None
        again = await staying.receive(timeout=WAIT)
        assert again.message.body == b"later"
        await again.ack()
    finally:
        await staying.close()


async def test_a_read_cut_by_close_while_connecting_ends_receive(broker, topic):
    # close() tearing down the reader's connection while it is still connecting makes
    # redis-py raise from its half-torn connection (AttributeError on a writer set to None):
    # receive ends as for any read that close() cut.
    sub = await broker.subscribe(topic, "g")
    reader = sub._reader

    async def connecting(*args, **kwargs):
        await sub.close()
        raise AttributeError("'NoneType' object has no attribute 'writelines'")

    reader.xreadgroup = connecting
    sub._next_claim = float("inf")  # straight to the read
    assert await sub.receive(timeout=5) is None
    assert sub.closed


async def test_close_deletes_the_consumer_and_parks_its_entries(broker, topic, key_prefix):
    sub = await broker.subscribe(topic, "g")
    await broker.publish(topic, b"a")
    await broker.publish(topic, b"b")
    assert (await sub.receive(timeout=WAIT)).message.body == b"a"  # b stays prefetched
    await sub.close()
    consumers = await broker.native.xinfo_consumers(key_prefix + topic, "g")
    assert [c["name"] for c in consumers] == [b"ductwork:returned"]
    assert consumers[0]["pending"] == 2
    async with await broker.subscribe(topic, "g") as other:
        got = {(await other.receive(timeout=WAIT)).message.body for _ in range(2)}
        assert got == {b"a", b"b"}


async def test_broker_close_returns_what_open_subscriptions_hold(redis_server, key_prefix, topic):
    async with RedisBroker.from_options(**redis_server, key_prefix=key_prefix) as one:
        sub = await one.subscribe(topic, "g")
        await one.publish(topic, b"held")
        assert (await sub.receive(timeout=WAIT)) is not None
    async with (
        RedisBroker.from_options(**redis_server, key_prefix=key_prefix) as two,
        await two.subscribe(topic, "g") as sub,
    ):
        delivery = await sub.receive(timeout=WAIT)
        assert delivery.message.body == b"held"
        await delivery.ack()


async def test_maxlen_trims_the_stream(redis_server, key_prefix, topic):
    async with RedisBroker.from_options(**redis_server, key_prefix=key_prefix, maxlen=10) as b:
        for i in range(500):
            await b.publish(topic, str(i).encode())
        assert await b.native.xlen(key_prefix + topic) < 500


async def test_subscribe_refuses_bad_arguments(broker, topic):
    with pytest.raises(ValidationError):
        await broker.subscribe(topic, "")
    with pytest.raises(ValidationError):
        await broker.subscribe(topic, "g", max_deliveries=0)


async def test_connection_refused_names_where_and_hides_the_password(closed_port, password):
    broker = RedisBroker.from_options(
        CONTEXT, port=closed_port, password=password, socket_connect_timeout=1
    )
    with pytest.raises(ConnectionFailedError) as info:
        await broker.publish("t", b"x")
    message = str(info.value)
    for part in ("brokers.events", "env=test", "provider=redis", f"127.0.0.1:{closed_port}"):
        assert part in message
    assert password not in message
    with pytest.raises(ConnectionFailedError):
        await broker.open()
    await broker.close()


async def test_wrong_password_is_an_authentication_error(auth_server):
    broker = RedisBroker.from_options(CONTEXT, **auth_server, password="not-the-password")
    with pytest.raises(AuthenticationError) as info:
        await broker.open()
    assert "not-the-password" not in str(info.value)
    await broker.close()


def test_options_refuse_unknown_keys():
    with pytest.raises(pydantic.ValidationError, match="extra"):
        RedisBroker.Options(max_len=3)
    with pytest.raises(pydantic.ValidationError):
        RedisBroker.Options(claim_idle=0)


async def test_nack_after_close_returns_the_entry_to_the_group(broker, topic, key_prefix):
    sub = await broker.subscribe(topic, "g")
    await broker.publish(topic, b"late nack")
    delivery = await sub.receive(timeout=WAIT)
    await sub.close()
    await delivery.nack()
    consumers = await broker.native.xinfo_consumers(key_prefix + topic, "g")
    assert [c["name"] for c in consumers] == [b"ductwork:returned"]
    async with await broker.subscribe(topic, "g") as other:
        again = await other.receive(timeout=WAIT)
        assert again.message.body == b"late nack"
        await again.ack()


async def test_events_retry_then_dead_letter_and_replay_through_the_client(
    tmp_path, redis_server, key_prefix, topic
):
    from ductwork import Ductwork

    (tmp_path / "ductwork.yaml").write_text(
        f"""
product: rtest
default_env: prd
environments: [prd]
brokers:
  bus:
    prd: {{provider: redis, port: {redis_server["port"]}, key_prefix: "{key_prefix}"}}
    max_deliveries: 2
    retry_delay: 0.05
    retry_delay_max: 0.1
    topics: {{failing: "{topic}"}}
"""
    )
    attempts: list[int] = []

    async def handler(event):
        attempts.append(event.attempt)
        raise RuntimeError("always fails")

    async with Ductwork.from_config(tmp_path / "ductwork.yaml") as dw:
        ready = asyncio.Event()
        task = asyncio.create_task(
            dw.events.subscribe("bus", "failing", handler, group="g", limit=1, ready=ready)
        )
        await ready.wait()
        await dw.events.publish("bus", "failing", {"n": 1}, key="k")
        assert await asyncio.wait_for(task, WAIT) == 1
        assert attempts == [1, 2]
        [letter] = await dw.events.dead_letters("bus", "failing")
        assert letter.data == {"n": 1}
        assert letter.headers["x-ductwork-error"] == "RuntimeError: always fails"
        assert len(await dw.events.dead_letters("bus", "failing")) == 1  # listing keeps them
        assert await dw.events.replay_dead_letters("bus", "failing") == 1
        assert await dw.events.dead_letters("bus", "failing") == []


async def test_subscribe_gives_up_after_reconnect_timeout_naming_the_first_failure(topic):
    from ductwork.config.models import BrokerResource
    from ductwork.processor._consume import consume

    async def handler(event):
        raise AssertionError("nothing is published")

    with private_redis() as server:
        async with RedisBroker.from_options(CONTEXT, port=server.port, socket_timeout=2) as b:
            ready = asyncio.Event()
            task = asyncio.ensure_future(
                consume(b, BrokerResource(reconnect_timeout=1), topic, "g", handler, ready=ready)
            )
            await asyncio.wait_for(ready.wait(), WAIT)
            await asyncio.to_thread(server.kill)
            with pytest.raises(ConnectionFailedError) as caught:
                await asyncio.wait_for(task, WAIT)
    message = str(caught.value)
    assert "reconnect_timeout (1s)" in message
    # the failure that started it (a blocked read, or the claim round), not the cleanup after
    assert "XREADGROUP" in message or "XAUTOCLAIM" in message
    assert "closing consumer" not in message
    assert message.count(f"endpoint=redis://127.0.0.1:{server.port}/0") == 1
