"""Offload on Redis Streams: the stream's consumer groups (XINFO GROUPS) are the groups that owe
an ack, so the stored body goes once the last of them acked."""

from __future__ import annotations

import uuid

from ductwork.testing.offload import big_message_through, offload_client, stored_keys


async def test_a_big_event_reaches_each_group_whole_and_its_body_goes_after_the_acks(
    tmp_path, redis_server, key_prefix
):
    topic = f"big-{uuid.uuid4().hex[:8]}"
    broker = {"provider": "redis", "port": redis_server["port"], "key_prefix": key_prefix}
    async with offload_client(tmp_path, broker, topic) as dw:
        key, _ = await big_message_through(dw, size=5 << 20, groups=("billing", "audit"))
        assert key.startswith(f"events/acked/{topic}/")
        assert await stored_keys(dw) == []
