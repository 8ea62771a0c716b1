"""The wire format as another service sees it: raw redis-py on one side, ductwork on the other.

Checks the Redis row of the table in docs/events.md on the machine's Redis.
"""

from __future__ import annotations

import json
import uuid

import pytest
import redis.asyncio as redis
from ductwork.testing.wire import EVENT, dead_letter_one, handled, wire_client


def _provider(server: dict[str, object], prefix: str) -> dict[str, object]:
    return {"provider": "redis", "port": server["port"], "key_prefix": prefix}


@pytest.fixture
def topic() -> str:
    return f"wire-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def raw(redis_server):
    client = redis.Redis(host="127.0.0.1", port=redis_server["port"])
    yield client
    await client.aclose()


async def test_entries_added_by_another_client_reach_the_handler(
    tmp_path, redis_server, key_prefix, topic, raw
):
    ids: list[bytes] = []
    async with wire_client(tmp_path, _provider(redis_server, key_prefix), topic) as dw:

        async def publish() -> None:
            stream = f"{key_prefix}{topic}"
            fields = {
                "body": b'{"id": 1}',
                "key": "customer-7",
                "h:Content-Type": "application/json",
                "h:trace": "abc",
            }
            ids.append(await raw.xadd(stream, fields))
            ids.append(await raw.xadd(stream, {"body": b"\x00raw"}))

        first, plain = await handled(dw, publish, count=2)
    assert first.data == {"id": 1}
    assert first.key == "customer-7"
    assert first.id == ids[0].decode()  # the entry id
    assert first.headers == {"Content-Type": "application/json", "trace": "abc"}
    assert plain.data == b"\x00raw"
    assert plain.headers == {}
    assert plain.id == ids[1].decode()


async def test_ductwork_entries_read_by_another_client(
    tmp_path, redis_server, key_prefix, topic, raw
):
    async with wire_client(tmp_path, _provider(redis_server, key_prefix), topic) as dw:
        sent_id = await dw.events.publish(
            "bus", EVENT, {"id": 3}, key="customer-9", headers={"trace": "xyz"}
        )
    [(entry_id, fields)] = await raw.xrange(f"{key_prefix}{topic}")
    assert entry_id.decode() == sent_id
    assert json.loads(fields[b"body"]) == {"id": 3}
    assert fields == {
        b"body": fields[b"body"],
        b"key": b"customer-9",
        b"h:content-type": b"application/json",
        b"h:trace": b"xyz",
    }


async def test_dead_letters_are_readable_by_another_client(
    tmp_path, redis_server, key_prefix, topic, raw
):
    provider = _provider(redis_server, key_prefix)
    async with wire_client(tmp_path, provider, topic, max_deliveries=1) as dw:
        await dead_letter_one(dw, {"id": 4}, key="customer-4")
    [(_, fields)] = await raw.xrange(f"{key_prefix}{topic}.dead-letter")
    assert json.loads(fields[b"body"]) == {"id": 4}
    assert fields[b"key"] == b"customer-4"
    assert fields[b"h:content-type"] == b"application/json"
    assert fields[b"h:x-ductwork-dead-letter-from"] == topic.encode()
    assert fields[b"h:x-ductwork-deliveries"] == b"1"
    assert fields[b"h:x-ductwork-error"] == b"RuntimeError: refused by the test"
