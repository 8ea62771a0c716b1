"""The kafka broker against a real Kafka-protocol broker (Tansu)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from ductwork.errors import (
    AuthenticationError,
    ConnectionFailedError,
    ProviderError,
    ValidationError,
)
from ductwork.plugins import get_registry
from ductwork.providers import ProviderContext
from ductwork.testing import BrokerSuite
from ductwork.testing.servers import free_port
from ductwork_kafka.broker import KafkaBroker
from pydantic import ValidationError as PydanticValidationError

# Tansu waits half the session timeout before completing a join: keep joins ~1 s here.
FAST = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}
CONTEXT = ProviderContext(resource="brokers.bus", env="test", provider="kafka")


class TestKafkaBroker(BrokerSuite):
    @pytest.fixture
    async def provider(self, kafka_server):
        async with KafkaBroker.from_options(CONTEXT, bootstrap_servers=kafka_server, **FAST) as b:
            yield b


def topic_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def broker(kafka_server):
    async with KafkaBroker.from_options(CONTEXT, bootstrap_servers=kafka_server, **FAST) as b:
        yield b


async def test_connection_refused_names_where_and_hides_the_password():
    port = free_port()  # nothing listens there
    broker = KafkaBroker.from_options(
        CONTEXT,
        bootstrap_servers=f"127.0.0.1:{port}",
        sasl_username="alice",
        sasl_password="s3cret-pw",
        connect_timeout=1,
    )
    with pytest.raises(ConnectionFailedError) as info:
        await broker.open()
    text = str(info.value)
    for part in ("brokers.bus", "test", "kafka", f"kafka://127.0.0.1:{port}"):
        assert part in text
    assert "s3cret-pw" not in text
    assert "s3cret-pw" not in repr(broker.options)


async def test_bad_credentials_raise_authentication_error(secured_kafka_server):
    broker = KafkaBroker.from_options(
        CONTEXT,
        bootstrap_servers=secured_kafka_server,
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="mallory",
        sasl_password="wrong-pw",
        connect_timeout=2,
    )
    with pytest.raises(AuthenticationError) as info:
        await broker.open()
    assert "wrong-pw" not in str(info.value)
    assert "brokers.bus" in str(info.value)


def test_options_reject_unknown_keys():
    with pytest.raises(PydanticValidationError):
        KafkaBroker.Options(bootstrap_servers="x:1", bootstrap="x:1")


def test_sasl_username_needs_a_password():
    with pytest.raises(PydanticValidationError):
        KafkaBroker.Options(sasl_username="alice")


def test_registered_through_the_entry_point():
    entry = get_registry().entries[("broker", "kafka")]
    assert entry.distribution == "ductwork-kafka"
    assert get_registry().get("broker", "kafka") is KafkaBroker


async def test_publish_before_open_is_refused(kafka_server):
    broker = KafkaBroker.from_options(CONTEXT, bootstrap_servers=kafka_server)
    with pytest.raises(ProviderError, match="not open"):
        await broker.publish("t", b"x")


async def test_invalid_topic_name_is_refused_before_any_call(broker):
    with pytest.raises(ValidationError):
        await broker.publish("no spaces allowed", b"x")


async def test_publish_returns_partition_and_offset_as_the_delivered_id(broker):
    topic = topic_name()
    async with await broker.subscribe(topic, "g") as sub:
        ident = await broker.publish(topic, b"a")
        delivery = await sub.receive(timeout=10)
        assert delivery is not None
        assert delivery.message.id == ident == "0:0"
        await delivery.ack()


async def test_publish_many_confirms_every_message(broker):
    topic = topic_name()
    async with await broker.subscribe(topic, "g") as sub:
        assert await broker.publish_many(topic, (f"{i}".encode() for i in range(300))) == 300
        got = []
        while len(got) < 300:
            delivery = await sub.receive(timeout=10)
            assert delivery is not None
            got.append(int(delivery.message.body))
            await delivery.ack()
        assert got == list(range(300))


async def test_acked_offsets_are_committed_and_the_rest_come_back(broker):
    topic = topic_name()
    sub = await broker.subscribe(topic, "g")
    for i in range(4):
        await broker.publish(topic, f"{i}".encode())
    deliveries = [await sub.receive(timeout=10) for _ in range(4)]
    assert all(d is not None for d in deliveries)
    # ack 0, 1 and 3: only 0 and 1 are contiguous, so 2 and 3 come back to the group
    for d in (deliveries[0], deliveries[1], deliveries[3]):
        assert d is not None
        await d.ack()
    await sub.close()
    async with await broker.subscribe(topic, "g") as again:
        bodies = []
        while (d := await again.receive(timeout=1.5)) is not None:
            bodies.append(d.message.body)
            await d.ack()
        assert bodies == [b"2", b"3"]


async def test_a_new_group_starts_at_the_end_and_earliest_reads_everything(broker):
    topic = topic_name()
    await broker.publish(topic, b"old")
    async with await broker.subscribe(topic, "late") as late:
        assert await late.receive(timeout=0.5) is None
    async with await broker.subscribe(topic, "replay", offset_reset="earliest") as replay:
        d = await replay.receive(timeout=10)
        assert d is not None and d.message.body == b"old"
        await d.ack()


async def test_unknown_subscribe_option_is_refused(broker):
    with pytest.raises(ValidationError):
        await broker.subscribe(topic_name(), "g", prefetch=3)


async def test_same_key_keeps_order_across_partitions(kafka_server):
    async with KafkaBroker.from_options(
        CONTEXT, bootstrap_servers=kafka_server, num_partitions=3, **FAST
    ) as broker:
        topic = topic_name()
        async with await broker.subscribe(topic, "g") as sub:
            for i in range(30):
                await broker.publish(topic, f"{i % 3}:{i}".encode(), key=f"k{i % 3}")
            seen: dict[str, list[int]] = {}
            for _ in range(30):
                d = await sub.receive(timeout=10)
                assert d is not None
                k, n = d.message.body.decode().split(":")
                seen.setdefault(k, []).append(int(n))
                await d.ack()
            for k, numbers in seen.items():
                assert numbers == sorted(numbers), k
            assert sum(len(v) for v in seen.values()) == 30


async def test_close_waits_for_confirmations(kafka_server):
    broker = KafkaBroker.from_options(CONTEXT, bootstrap_servers=kafka_server, **FAST)
    await broker.open()
    topic = topic_name()
    tasks = [asyncio.ensure_future(broker.publish(topic, b"x")) for _ in range(20)]
    await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    await broker.close()
    assert all(t.result() is not None for t in tasks)
