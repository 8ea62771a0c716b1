"""The wire format as another service sees it: raw nats-py on one side, ductwork on the other.

Checks the NATS row of the table in docs/events.md on the machine's NATS JetStream.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import nats
import pytest
from ductwork.processor.events import Event
from ductwork.testing.wire import EVENT, WAIT, dead_letter_one, handled, wire_client


def _provider(url: str, prefix: str) -> dict[str, object]:
    return {"provider": "nats", "servers": [url], "stream_prefix": prefix, "subject_prefix": prefix}


@pytest.fixture
def topic() -> str:
    return f"wire-{uuid.uuid4().hex[:10]}"


async def test_messages_published_by_another_client_reach_the_handler(
    tmp_path, nats_url, prefix, cleanup, topic
):
    seqs: list[int] = []
    async with wire_client(tmp_path, _provider(nats_url, prefix), topic) as dw:

        async def publish() -> None:
            nc = await nats.connect(nats_url)
            try:
                js = nc.jetstream()
                first = {
                    "Content-Type": "application/json",
                    "X-Ductwork-Key": "customer-7",
                    "Nats-Msg-Id": "order-1",
                    "trace": "abc",
                }
                for data, headers in (
                    (b'{"id": 1}', first),
                    (b"\x00raw", {"content-type": "application/octet-stream"}),
                ):
                    ack = await js.publish(f"{prefix}.{topic}", data, headers=headers)
                    seqs.append(ack.seq)
            finally:
                await nc.close()

        first, raw = await handled(dw, publish, count=2)
    assert first.data == {"id": 1}
    assert first.key == "customer-7"
    assert first.id == str(seqs[0])  # the stream sequence, not Nats-Msg-Id
    assert first.header("nats-msg-id") is None  # JetStream's, not passed on (see below)
    assert first.header("trace") == "abc"
    assert not any(name.lower() == "x-ductwork-key" for name in first.headers)
    assert raw.data == b"\x00raw"
    assert raw.id == str(seqs[1])


async def test_ductwork_messages_read_by_another_client(tmp_path, nats_url, prefix, cleanup, topic):
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        async with wire_client(tmp_path, _provider(nats_url, prefix), topic) as dw:
            # ductwork makes the stream on first use; another service then joins with its own
            # durable consumer (with interest retention, nothing is kept for nobody)
            await dw.events.publish("bus", EVENT, {"id": 0})
            stream = await js.find_stream_name_by_subject(f"{prefix}.{topic}")
            assert stream == f"{prefix}_{topic}"
            raw = await js.pull_subscribe(f"{prefix}.{topic}", durable="raw", stream=stream)
            sent_id = await dw.events.publish(
                "bus", EVENT, {"id": 3}, key="customer-9", headers={"trace": "xyz"}
            )
        [msg] = await raw.fetch(1, timeout=WAIT)
        await msg.ack()
    finally:
        await nc.close()
    assert json.loads(msg.data) == {"id": 3}
    assert msg.subject == f"{prefix}.{topic}"
    assert str(msg.metadata.sequence.stream) == sent_id
    assert msg.headers == {
        "content-type": "application/json",
        "trace": "xyz",
        "x-ductwork-key": "customer-9",
    }


async def test_dead_letters_are_readable_by_another_client(
    tmp_path, nats_url, prefix, cleanup, topic
):
    async with wire_client(tmp_path, _provider(nats_url, prefix), topic, max_deliveries=1) as dw:
        await dead_letter_one(dw, {"id": 4}, key="customer-4")
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        subject = f"{prefix}.{topic}.dead-letter"
        letter = await js.get_last_msg(await js.find_stream_name_by_subject(subject), subject)
    finally:
        await nc.close()
    assert json.loads(letter.data) == {"id": 4}
    headers = letter.headers or {}
    assert headers["content-type"] == "application/json"
    assert headers["x-ductwork-key"] == "customer-4"
    assert headers["x-ductwork-dead-letter-from"] == topic
    assert headers["x-ductwork-deliveries"] == "1"
    assert headers["x-ductwork-error"] == "RuntimeError: refused by the test"


async def test_a_dead_letter_with_a_msg_id_is_replayed(tmp_path, nats_url, prefix, cleanup, topic):
    # Nats-Msg-Id is an instruction to JetStream for one publish (drop a duplicate within the
    # stream's window); ductwork's re-publishes must not repeat it, or the replay is dropped.
    async with wire_client(tmp_path, _provider(nats_url, prefix), topic, max_deliveries=1) as dw:
        failing = asyncio.Event()

        async def publish() -> None:
            nc = await nats.connect(nats_url)
            try:
                headers = {"Nats-Msg-Id": "order-5", "content-type": "application/json"}
                await nc.jetstream().publish(f"{prefix}.{topic}", b'{"id": 5}', headers=headers)
            finally:
                await nc.close()

        async def fail(event: Event) -> None:
            failing.set()
            raise RuntimeError("refused")

        ready = asyncio.Event()
        task = asyncio.create_task(
            dw.events.subscribe("bus", EVENT, fail, group="g", limit=1, ready=ready)
        )
        await asyncio.wait_for(ready.wait(), WAIT)
        await publish()
        assert await asyncio.wait_for(task, WAIT) == 1
        assert await dw.events.replay_dead_letters("bus", EVENT) == 1
        [again] = await handled(dw, _nothing, group="g")
    assert again.data == {"id": 5}


async def _nothing() -> None:
    pass
