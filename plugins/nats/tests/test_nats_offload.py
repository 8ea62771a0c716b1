"""Offload on NATS JetStream: a 5 MB event (NATS takes 1 MB) through a claim check.

The server's ``max_payload`` refuses the body itself; with ``offload`` on the broker resource it
goes to storage (builtin local, and S3 on a moto server), every group gets it whole, and the
stored body is removed once the last group that existed when it was sent acked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import nats
import pytest
from ductwork.errors import ProviderError
from ductwork.testing.offload import (
    big_message_through,
    keyed_through,
    offload_client,
    payload,
    stored_keys,
)
from ductwork.testing.servers import moto_server

SIZE = 5 << 20


def _provider(url: str, prefix: str) -> dict[str, object]:
    return {"provider": "nats", "servers": [url], "stream_prefix": prefix, "subject_prefix": prefix}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as server:
        yield server.url


def _s3(url: str) -> dict[str, object]:
    return {
        "provider": "s3",
        "bucket": f"dw-{uuid.uuid4().hex[:12]}",
        "endpoint_url": url,
        "region": "us-east-1",
        "access_key_id": "AKIATESTDUCTWORK",
        "secret_access_key": "s3-test-secret",
        "create_bucket": True,
        "addressing_style": "path",
    }


@pytest.mark.parametrize("store", ["local", "s3"])
async def test_a_5mb_event_reaches_each_group_whole_and_its_body_goes_after_the_acks(
    tmp_path, nats_url, prefix, cleanup, store, request
):
    storage = _s3(request.getfixturevalue("moto_url")) if store == "s3" else None
    topic = f"big-{uuid.uuid4().hex[:8]}"
    async with offload_client(tmp_path, _provider(nats_url, prefix), topic, storage=storage) as dw:
        key, _ = await big_message_through(dw, size=SIZE, groups=("billing", "audit"))
        assert key.startswith(f"events/acked/{topic}/")
        assert await stored_keys(dw) == []  # the body and the ack markers are gone


async def test_without_offload_nats_refuses_the_body(tmp_path, nats_url, prefix, cleanup):
    topic = f"big-{uuid.uuid4().hex[:8]}"
    async with offload_client(
        tmp_path, _provider(nats_url, prefix), topic, offloads=False
    ) as dw:
        with pytest.raises(ProviderError):
            await dw.events.publish("bus", "big", payload(SIZE))


async def test_the_reference_as_another_client_sees_it(tmp_path, nats_url, prefix, cleanup):
    topic = f"big-{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(nats_url)
    try:
        async with offload_client(tmp_path, _provider(nats_url, prefix), topic) as dw:
            await dw.events.publish("bus", "big", {"blob": "x" * 300_000})  # makes the stream
            js = nc.jetstream()
            psub = await js.pull_subscribe(f"{prefix}.{topic}", durable="raw")
            await dw.events.publish("bus", "big", {"blob": "y" * 300_000})
            [msg] = await psub.fetch(1, timeout=30)
            await msg.ack()
        assert len(msg.data) < 1000
        assert msg.headers["x-ductwork-offload"] == "1"
        assert msg.headers["content-type"] == "application/vnd.ductwork.offload+json"
        import json

        ref = json.loads(msg.data)
        assert ref["storage"] == "files"
        assert ref["content_type"] == "application/json"
        assert ref["size"] == len(b'{"blob":"') + 300_000 + 2
        assert ref["groups"] == ["raw"]
    finally:
        await nc.close()


async def test_a_step_idempotency_key_is_the_msg_id_so_nats_drops_the_repeat(
    tmp_path, nats_url, prefix, cleanup
):
    topic = f"ids-{uuid.uuid4().hex[:8]}"
    async with offload_client(tmp_path, _provider(nats_url, prefix), topic) as dw:
        one, two = ({"n": 1}, "run-1:announce"), ({"n": 2}, "run-2:announce")
        (first, again, _), got = await keyed_through(dw, [one, one, two], expect=2)
    assert again == first  # JetStream answered with the stored message's sequence
    assert [e.data for e in got] == [{"n": 1}, {"n": 2}]
    assert got[0].header("idempotency-key") == "run-1:announce"
