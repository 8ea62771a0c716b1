"""The wire format as another service sees it: raw aio-pika on one side, ductwork on the other.

Checks the RabbitMQ row of the table in docs/events.md on the machine's RabbitMQ.
"""

from __future__ import annotations

import json
import time
import uuid

import aio_pika
import pytest
from ductwork.testing.wire import EVENT, dead_letter_one, handled, wire_client
from pamqp.commands import Basic

Properties = Basic.Properties
URL = "amqp://guest:guest@127.0.0.1:5672/"


def _provider(exchange: str) -> dict[str, object]:
    return {"provider": "rabbitmq", "url": URL, "exchange": exchange, "queue_expires": "120s"}


@pytest.fixture
def topic() -> str:
    return f"wire.{uuid.uuid4().hex[:10]}"


async def test_messages_published_by_another_client_reach_the_handler(tmp_path, exchange, topic):
    async with wire_client(tmp_path, _provider(exchange), topic) as dw:

        async def publish() -> None:
            async with await aio_pika.connect(URL) as connection:
                channel = await connection.channel(publisher_confirms=True)
                ex = await channel.get_exchange(exchange)
                await ex.publish(
                    aio_pika.Message(
                        b'{"id": 1}',
                        content_type="application/json; charset=utf-8",
                        message_id="order-1",
                        headers={"X-Ductwork-Key": "customer-7", "trace": "abc"},
                    ),
                    routing_key=topic,
                )
                # aiormq's bare basic.publish, the content type as older ductwork sent it: a
                # header alone
                amqp = await channel.get_underlay_channel()
                old = Properties(headers={"content-type": "application/json"})
                await amqp.basic_publish(
                    b'{"id": 2}', exchange=exchange, routing_key=topic, properties=old
                )
                await ex.publish(
                    aio_pika.Message(b"\x00raw", content_type="application/octet-stream"), topic
                )

        first, old, raw = await handled(dw, publish, count=3)
    assert first.data == {"id": 1}
    assert first.id == "order-1"
    assert first.key == "customer-7"
    assert first.header("Trace") == "abc"
    assert first.content_type == "application/json; charset=utf-8"
    assert not any(name.lower().startswith("x-ductwork-") for name in first.headers)
    assert old.data == {"id": 2}
    assert old.id  # the publisher's message_id (aiormq makes one up when none is given)
    assert raw.data == b"\x00raw"
    assert raw.content_type == "application/octet-stream"


async def test_ductwork_messages_carry_amqp_properties(tmp_path, exchange, topic):
    async with (
        wire_client(tmp_path, _provider(exchange), topic) as dw,
        await aio_pika.connect(URL) as connection,
    ):
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, topic)
        before = int(time.time())
        sent_id = await dw.events.publish(
            "bus", EVENT, {"id": 3}, key="customer-9", headers={"trace": "xyz"}
        )
        message = await queue.get(no_ack=True)  # confirmed means queued: no wait needed
    assert json.loads(message.body) == {"id": 3}
    assert message.content_type == "application/json"
    assert message.message_id == sent_id
    assert message.app_id == "ductwork"
    assert message.timestamp is not None
    assert before - 1 <= message.timestamp.timestamp() <= time.time() + 1
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.routing_key == topic
    headers = message.headers
    assert headers["x-ductwork-key"] == "customer-9"
    assert headers["trace"] == "xyz"
    assert headers["content-type"] == "application/json"  # still read by older ductwork


async def test_dead_letters_are_readable_by_another_client(tmp_path, exchange, topic):
    async with wire_client(tmp_path, _provider(exchange), topic, max_deliveries=1) as dw:
        await dead_letter_one(dw, {"id": 4}, key="customer-4")
    async with await aio_pika.connect(URL) as connection:
        channel = await connection.channel()
        name = f"{exchange}:{topic}.dead-letter:ductwork-dead-letters"
        queue = await channel.declare_queue(name, passive=True)
        letter = await queue.get(no_ack=True)
    assert json.loads(letter.body) == {"id": 4}
    assert letter.content_type == "application/json"
    assert letter.routing_key == f"{topic}.dead-letter"
    headers = letter.headers
    assert headers["x-ductwork-key"] == "customer-4"
    assert headers["x-ductwork-dead-letter-from"] == topic
    assert headers["x-ductwork-deliveries"] == "1"
    assert headers["x-ductwork-error"] == "RuntimeError: refused by the test"
