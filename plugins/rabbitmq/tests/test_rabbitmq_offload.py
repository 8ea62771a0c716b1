"""Offload on RabbitMQ, and a feature step's idempotency key as the AMQP ``message_id``.

AMQP cannot list the queues bound to an exchange (the management HTTP API can, but it is not
the broker connection), so offloaded bodies are kept under ``retained/`` and removed by
retention, as on Kafka.
"""

from __future__ import annotations

import asyncio

from ductwork.processor.events import Event
from ductwork.testing.offload import big_message_through, offload_client, stored

URL = "amqp://guest:guest@127.0.0.1:5672/"


def _provider(exchange: str) -> dict[str, object]:
    return {"provider": "rabbitmq", "url": URL, "exchange": exchange, "queue_expires": "120s"}


async def test_a_big_event_reaches_each_group_whole_and_is_kept_for_retention(
    tmp_path, exchange
):
    async with offload_client(tmp_path, _provider(exchange), "offload.big") as dw:
        key, _ = await big_message_through(dw, size=5 << 20, groups=("billing", "audit"))
        assert key.startswith("events/retained/offload.big/")
        assert await stored(dw, key)


async def test_a_step_idempotency_key_is_the_message_id(tmp_path, exchange):
    async with offload_client(tmp_path, _provider(exchange), "offload.ids") as dw:
        got: list[Event] = []
        ready = asyncio.Event()

        async def handler(event: Event) -> None:
            got.append(event)

        task = asyncio.create_task(
            dw.events.subscribe("bus", "big", handler, group="g", ready=ready, limit=2)
        )
        await asyncio.wait_for(ready.wait(), 30)
        sent = await dw.events.publish("bus", "big", {"n": 1}, idempotency_key="run-1:announce")
        again = await dw.events.publish("bus", "big", {"n": 1}, idempotency_key="run-1:announce")
        await asyncio.wait_for(task, 30)
        assert sent == again == "run-1:announce"
        assert [e.id for e in got] == ["run-1:announce", "run-1:announce"]  # the consumer knows
