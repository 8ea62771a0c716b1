"""The wire format as another service sees it: raw confluent-kafka, then ductwork, and back.

Checks the Kafka row of the table in docs/events.md on a Tansu broker.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from ductwork.testing.wire import EVENT, WAIT, dead_letter_one, handled, wire_client

FAST = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}


def _provider(server: str) -> dict[str, object]:
    return {"provider": "kafka", "bootstrap_servers": server, **FAST}


@pytest.fixture
def topic() -> str:
    return f"wire-{uuid.uuid4().hex[:10]}"


def _produce(server: str, topic: str, messages: list[dict[str, Any]]) -> list[str]:
    """Produce with a plain Producer, as another service would; the ids it was given."""
    producer = Producer({"bootstrap.servers": server})
    ids: list[str] = []

    def report(err: Any, msg: Any) -> None:
        assert err is None, err
        ids.append(f"{msg.partition()}:{msg.offset()}")

    for message in messages:
        producer.produce(topic, on_delivery=report, **message)
        producer.flush(WAIT)  # one at a time: ids in publish order
    assert len(ids) == len(messages)
    return ids


def _consume_one(server: str, topic: str) -> Any:
    """The first message of ``topic``, read by a Consumer of a fresh group from the start."""
    consumer = Consumer(
        {
            "bootstrap.servers": server,
            "group.id": f"raw-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                return msg
        raise AssertionError(f"nothing arrived on {topic}")
    finally:
        consumer.close()


async def test_messages_produced_by_another_client_reach_the_handler(tmp_path, kafka_server, topic):
    produced: list[str] = []
    messages = [
        {
            "value": b'{"id": 1}',
            "key": b"customer-7",
            "headers": [("Content-Type", b"application/json"), ("trace", b"abc")],
        },
        {"value": b"\x00raw", "headers": [("content-type", b"application/octet-stream")]},
    ]
    async with wire_client(tmp_path, _provider(kafka_server), topic) as dw:

        async def publish() -> None:
            produced.extend(await asyncio.to_thread(_produce, kafka_server, topic, messages))

        first, raw = await handled(dw, publish, count=2)
    assert first.data == {"id": 1}
    assert first.key == "customer-7"
    assert first.id == produced[0]  # "partition:offset"
    assert first.header("trace") == "abc"
    assert raw.data == b"\x00raw"
    assert raw.key is None
    assert raw.id == produced[1]


async def test_ductwork_messages_read_by_another_client(tmp_path, kafka_server, topic):
    async with wire_client(tmp_path, _provider(kafka_server), topic) as dw:
        sent_id = await dw.events.publish(
            "bus", EVENT, {"id": 3}, key="customer-9", headers={"trace": "xyz"}
        )
    msg = await asyncio.to_thread(_consume_one, kafka_server, topic)
    assert json.loads(msg.value()) == {"id": 3}
    assert msg.key() == b"customer-9"
    assert f"{msg.partition()}:{msg.offset()}" == sent_id
    headers = dict(msg.headers())
    assert headers == {"content-type": b"application/json", "trace": b"xyz"}


async def test_dead_letters_are_readable_by_another_client(tmp_path, kafka_server, topic):
    async with wire_client(tmp_path, _provider(kafka_server), topic, max_deliveries=1) as dw:
        await dead_letter_one(dw, {"id": 4}, key="customer-4")
    letter = await asyncio.to_thread(_consume_one, kafka_server, f"{topic}.dead-letter")
    assert json.loads(letter.value()) == {"id": 4}
    assert letter.key() == b"customer-4"
    headers = dict(letter.headers())
    assert headers["content-type"] == b"application/json"
    assert headers["x-ductwork-dead-letter-from"] == topic.encode()
    assert headers["x-ductwork-deliveries"] == b"1"
    assert headers["x-ductwork-error"] == b"RuntimeError: refused by the test"
