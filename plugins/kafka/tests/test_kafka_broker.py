"""The kafka broker against a real Kafka-protocol broker (Tansu)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from ductwork.errors import (
    ConnectionFailedError,
    ProviderError,
    ValidationError,
)
from ductwork.plugins import get_registry
from ductwork.providers import ProviderContext
from ductwork.testing import BrokerSuite
from ductwork.testing.broker import Restartable
from ductwork.testing.servers import free_port, kafka_broker, persistent_kafka_broker
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

    @pytest.fixture
    async def restartable(self):
        # Tansu keeping its topics in a (moto) S3 bucket, so they outlive a kill -9.
        with persistent_kafka_broker() as server:
            async with KafkaBroker.from_options(
                CONTEXT, bootstrap_servers=server.address, delivery_timeout_ms=3000, **FAST
            ) as broker:
                yield Restartable(broker, server, publish_bound=3.0)


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


async def _receive(sub, count: int) -> list:
    """The next ``count`` deliveries of ``sub``, each acked."""
    got = []
    while len(got) < count:
        delivery = await sub.receive(timeout=10)
        assert delivery is not None, f"only {len(got)} of {count} arrived"
        got.append(delivery)
        await delivery.ack()
    return got


async def _started(tasks: list[asyncio.Task]) -> None:
    """Let every task run up to its first suspension (one pass of the loop: no timing)."""
    await asyncio.sleep(0)
    assert not any(t.done() for t in tasks)


async def test_close_waits_for_confirmations(kafka_server, broker):
    topic = topic_name()
    publisher = KafkaBroker.from_options(CONTEXT, bootstrap_servers=kafka_server, **FAST)
    await publisher.open()
    await publisher.publish(topic, b"first")  # creates the topic
    tasks = [asyncio.ensure_future(publisher.publish(topic, f"{i}".encode())) for i in range(50)]
    await _started(tasks)  # every publish made, none confirmed yet
    await publisher.close()
    assert all(t.done() for t in tasks)  # close() returned after their confirmations
    ids = [t.result() for t in tasks]
    assert all(ident is not None for ident in ids)
    assert len(set(ids)) == 50
    async with await broker.subscribe(topic, "g", offset_reset="earliest") as sub:
        got = await _receive(sub, 51)
    assert [d.message.body for d in got] == [b"first"] + [f"{i}".encode() for i in range(50)]
    assert [d.message.id for d in got[1:]] == ids
    with pytest.raises(ProviderError, match="not open"):
        await publisher.publish(topic, b"late")


async def test_close_fails_what_cannot_be_delivered():
    with kafka_broker() as server:
        publisher = KafkaBroker.from_options(
            CONTEXT, bootstrap_servers=server.address, delivery_timeout_ms=1500, **FAST
        )
        await publisher.open()
        topic = topic_name()
        await publisher.publish(topic, b"first")
    # the broker is gone: nothing can be confirmed any more
    tasks = [asyncio.ensure_future(publisher.publish(topic, b"x")) for _ in range(20)]
    await _started(tasks)
    await asyncio.wait_for(publisher.close(), 30)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, ProviderError) for r in results), results


async def test_concurrent_publishes_get_their_own_ids_in_publish_order(kafka_server):
    async with KafkaBroker.from_options(
        CONTEXT, bootstrap_servers=kafka_server, num_partitions=3, **FAST
    ) as broker:
        topic = topic_name()
        async with await broker.subscribe(topic, "g") as sub:
            keys = [f"k{i % 7}" for i in range(700)]
            ids = await asyncio.gather(
                *(broker.publish(topic, f"{i}".encode(), key=k) for i, k in enumerate(keys))
            )
            assert len(set(ids)) == 700
            per_key: dict[str, list[tuple[int, int]]] = {}
            for k, ident in zip(keys, ids, strict=True):
                partition, offset = ident.split(":")
                per_key.setdefault(k, []).append((int(partition), int(offset)))
            for k, places in per_key.items():
                assert len({p for p, _ in places}) == 1, k  # one key, one partition
                assert [o for _, o in places] == sorted(o for _, o in places), k
            got = await _receive(sub, 700)
        by_id = {d.message.id: d.message for d in got}
        assert set(by_id) == set(ids)
        for i, ident in enumerate(ids):
            assert by_id[ident].body == f"{i}".encode()
            assert by_id[ident].key == keys[i]
        seen: dict[str, list[int]] = {}
        for d in got:  # a partition is consumed in offset order: publish order per key
            assert d.message.key is not None
            seen.setdefault(d.message.key, []).append(int(d.message.body))
        assert all(numbers == sorted(numbers) for numbers in seen.values())


async def test_each_task_keeps_its_publish_order(broker):
    topic = topic_name()

    async def publish_in_order(name: str) -> list[str | None]:
        return [await broker.publish(topic, f"{name}:{i}".encode()) for i in range(40)]

    async with await broker.subscribe(topic, "g") as sub:
        names = [f"task{n}" for n in range(8)]
        ids = await asyncio.gather(*(publish_in_order(name) for name in names))
        got = await _receive(sub, 8 * 40)
    assert len({ident for task_ids in ids for ident in task_ids}) == 8 * 40
    seen: dict[str, list[int]] = {}
    for d in got:
        name, i = d.message.body.decode().split(":")
        seen.setdefault(name, []).append(int(i))
    assert seen == {name: list(range(40)) for name in names}


async def test_a_failing_message_fails_only_its_own_publish(kafka_server):
    async with KafkaBroker.from_options(
        CONTEXT, bootstrap_servers=kafka_server, producer_config={"message.max.bytes": 1000},
        **FAST,
    ) as broker:  # fmt: skip
        topic = topic_name()
        async with await broker.subscribe(topic, "g") as sub:
            bodies = [b"a", b"x" * 5000, b"b", b"c", b"y" * 5000, b"d"]
            results = await asyncio.gather(
                *(broker.publish(topic, body) for body in bodies), return_exceptions=True
            )
            for body, result in zip(bodies, results, strict=True):
                if len(body) > 1000:
                    assert isinstance(result, ProviderError), result
                    assert "too large" in str(result)
                    assert topic in str(result)
                else:
                    assert isinstance(result, str), result
            got = await _receive(sub, 4)
            assert [d.message.body for d in got] == [b"a", b"b", b"c", b"d"]
            assert await broker.publish(topic, b"e") is not None  # the producer carries on


async def test_cancelled_publishes_do_not_disturb_the_others(broker):
    topic = topic_name()
    await broker.publish(topic, b"first")  # creates the topic
    tasks = [asyncio.ensure_future(broker.publish(topic, f"{i}".encode())) for i in range(40)]
    await _started(tasks)  # all waiting for their confirmation
    for task in tasks[::2]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[::2])
    kept = results[1::2]
    assert all(isinstance(r, str) for r in kept) and len(set(kept)) == 20
    assert await broker.publish(topic, b"after") is not None


async def test_a_full_local_queue_only_slows_publishers_down(kafka_server):
    async with KafkaBroker.from_options(
        CONTEXT, bootstrap_servers=kafka_server,
        producer_config={"queue.buffering.max.messages": 10}, **FAST,
    ) as broker:  # fmt: skip
        topic = topic_name()
        async with await broker.subscribe(topic, "g") as sub:
            ids = await asyncio.gather(
                *(broker.publish(topic, f"{i}".encode()) for i in range(300))
            )
            assert len(set(ids)) == 300
            assert await broker.publish_many(topic, (b"m" for _ in range(300))) == 300
            got = await _receive(sub, 600)
        assert [d.message.body for d in got[:300]] == [f"{i}".encode() for i in range(300)]


async def test_single_publishes_made_before_a_batch_go_first(broker):
    topic = topic_name()
    await broker.publish(topic, b"first")  # creates the topic
    async with await broker.subscribe(topic, "g", offset_reset="earliest") as sub:
        single = asyncio.ensure_future(broker.publish(topic, b"single"))
        await _started([single])
        assert await broker.publish_many(topic, [b"m1", b"m2"]) == 2
        assert await single is not None
        got = await _receive(sub, 4)
    assert [d.message.body for d in got] == [b"first", b"single", b"m1", b"m2"]
