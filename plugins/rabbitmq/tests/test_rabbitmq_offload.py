"""Offload on RabbitMQ, and a feature step's idempotency key as the AMQP ``message_id``.

AMQP cannot list the queues bound to an exchange (the management HTTP API can, but it is not
the broker connection), so offloaded bodies are kept under ``retained/`` and removed by
retention, as on Kafka.
"""

from __future__ import annotations

from ductwork.testing.offload import big_message_through, keyed_through, offload_client, stored

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
        one = ({"n": 1}, "run-1:announce")
        ids, got = await keyed_through(dw, [one, one], expect=2)
    assert ids == ["run-1:announce", "run-1:announce"]
    assert [e.id for e in got] == ids  # the consumer sees the same id twice
