"""Offload on Kafka (Tansu): a 5 MB event (the producer takes 1 MB) through a claim check.

Kafka cannot say which consumer groups a topic has in a way that holds for a message (groups
come and go, offsets are per group), so the stored body is kept under ``retained/`` after the
acks and removed ``offload.retention`` after it was stored, by the pruner every subscription
of the broker runs. The test moves the pruner's clock, not the machine's.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from ductwork.errors import ProviderError, ValidationError
from ductwork.processor import _offload
from ductwork.testing.offload import (
    STORAGE,
    big_message_through,
    offload_client,
    payload,
    stored,
    stored_keys,
)

FAST = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}
SIZE = 5 << 20
WAIT = 60.0


def _provider(server: str) -> dict[str, object]:
    return {"provider": "kafka", "bootstrap_servers": server, **FAST}


async def test_a_5mb_event_reaches_each_group_whole_and_is_kept_for_its_retention(
    tmp_path, kafka_server, monkeypatch
):
    topic = f"big-{uuid.uuid4().hex[:10]}"
    retention = {"retention": "2d", "prune_every": "1h"}
    async with offload_client(tmp_path, _provider(kafka_server), topic, offload=retention) as dw:
        key, _ = await big_message_through(dw, size=SIZE, groups=("billing", "audit"))
        assert key.startswith(f"events/retained/{topic}/")
        assert await stored(dw, key)  # acked by both, but Kafka cannot say they were all

        files = await dw.provider("storage", STORAGE, None)
        stored_at = (await files.stat(key)).modified.timestamp()
        monkeypatch.setattr(_offload, "now", lambda: stored_at + 2 * 86400 + 5)
        stop = asyncio.Event()
        ready = asyncio.Event()
        task = asyncio.create_task(
            dw.events.subscribe(
                "bus", "big", lambda e: asyncio.sleep(0), group="billing", stop=stop, ready=ready
            )
        )
        try:
            await asyncio.wait_for(ready.wait(), WAIT)
            deadline = asyncio.get_running_loop().time() + WAIT
            while await stored(dw, key):  # the pruner runs beside the loop: watch its effect
                assert asyncio.get_running_loop().time() < deadline, "not pruned"
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(task, WAIT)


async def test_without_offload_kafka_refuses_the_body(tmp_path, kafka_server):
    topic = f"big-{uuid.uuid4().hex[:10]}"
    async with offload_client(
        tmp_path, _provider(kafka_server), topic, offloads=False
    ) as dw:
        with pytest.raises(ProviderError):
            await dw.events.publish("bus", "big", payload(SIZE))


async def test_over_at_or_past_the_producers_limit_is_refused(tmp_path, kafka_server):
    topic = f"big-{uuid.uuid4().hex[:10]}"
    async with offload_client(
        tmp_path, _provider(kafka_server), topic, offload={"over": "2MB"}
    ) as dw:
        for message in (payload(SIZE), {"small": True}):  # refused either way, nothing sent
            with pytest.raises(ValidationError, match=r"offload\.over .* limit of 1000000 bytes"):
                await dw.events.publish("bus", "big", message)
        assert await stored_keys(dw) == []
