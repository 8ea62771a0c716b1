"""Offload (claim check) on the embedded brokers with local storage: see docs/events.md.

The real brokers run the same case in their plugin tests (``ductwork.testing.offload``).
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
import uuid

import pytest
from ductwork.builtin.memory_broker import MemoryBroker
from ductwork.config.loader import Config
from ductwork.config.sizes import parse_size
from ductwork.errors import ConfigError, ValidationError
from ductwork.processor import _offload
from ductwork.processor.events import Event
from ductwork.testing.offload import (
    big_message_through,
    offload_client,
    payload,
    stored,
    stored_keys,
)
from hypothesis import given
from hypothesis import strategies as st

BROKERS = {
    "memory": lambda root: {"provider": "memory", "namespace": f"{root}-{uuid.uuid4().hex}"},
    "sqlite": lambda root: {"provider": "sqlite", "path": "events.db", "poll_interval": 0.01},
}
WAIT = 30.0


@pytest.fixture(params=sorted(BROKERS))
def broker(request, tmp_path):
    return BROKERS[request.param](tmp_path)


async def _subscribe(dw, handler, group, **kw):
    ready = asyncio.Event()
    task = asyncio.create_task(
        dw.events.subscribe("bus", "big", handler, group=group, ready=ready, **kw)
    )
    await asyncio.wait_for(ready.wait(), WAIT)
    return task


async def test_a_big_message_reaches_every_group_whole_and_its_body_goes_after_the_last_ack(
    tmp_path, broker
):
    async with offload_client(tmp_path, broker, "big.topic") as dw:
        key, _ = await big_message_through(dw, size=2 << 20, groups=("a", "b"))
        assert key.startswith("events/acked/big.topic/")
        assert not await stored(dw, key)
        assert await stored_keys(dw) == []  # ack markers gone too


async def test_the_body_stays_until_every_group_that_existed_acked(tmp_path, broker):
    async with offload_client(tmp_path, broker, "t") as dw:
        # group "late" exists (joined once) but is not running when the message is sent
        late = await _subscribe(dw, lambda e: asyncio.sleep(0), "late", limit=0)
        await asyncio.wait_for(late, WAIT)
        key, _ = await big_message_through(dw, size=300_000, groups=("a",))
        assert await stored(dw, key)  # "late" still owes its ack
        got: list[Event] = []

        async def handler(event: Event) -> None:
            got.append(event)

        task = await _subscribe(dw, handler, "late", limit=1)
        assert await asyncio.wait_for(task, WAIT) == 1
        assert got[0].body == payload(300_000)
        assert not await stored(dw, key)


async def test_small_messages_are_untouched(tmp_path, broker):
    async with offload_client(tmp_path, broker, "t") as dw:
        got: list[Event] = []

        async def handler(event: Event) -> None:
            got.append(event)

        task = await _subscribe(dw, handler, "g", limit=1)
        await dw.events.publish("bus", "big", {"n": 1})
        await asyncio.wait_for(task, WAIT)
        assert got[0].data == {"n": 1}
        assert got[0].content_type == "application/json"
        assert await stored_keys(dw) == []


async def test_json_keeps_its_content_type_and_publish_many_offloads_each_big_one(tmp_path):
    async with offload_client(tmp_path, BROKERS["memory"](tmp_path), "t") as dw:
        got: list[Event] = []

        async def handler(event: Event) -> None:
            got.append(event)

        task = await _subscribe(dw, handler, "g", limit=3)
        big = {"blob": "x" * 400_000}
        assert await dw.events.publish_many("bus", "big", [big, {"n": 1}, big]) == 3
        await asyncio.wait_for(task, WAIT)
        assert sorted(json.dumps(e.data) for e in got) == sorted(
            json.dumps(m) for m in (big, {"n": 1}, big)
        )
        assert all(e.content_type == "application/json" for e in got)
        assert await stored_keys(dw) == []


async def test_a_missing_body_is_retried_then_dead_lettered_never_handled(tmp_path, broker):
    async with offload_client(tmp_path, broker, "t", max_deliveries=2) as dw:
        called: list[Event] = []

        async def handler(event: Event) -> None:
            called.append(event)

        files = await dw.provider("storage", "files", None)
        await asyncio.wait_for(await _subscribe(dw, handler, "g", limit=0), WAIT)  # "g" exists
        await dw.events.publish("bus", "big", payload(300_000))
        [key] = await stored_keys(dw)
        await files.delete(key)  # before "g" reads it
        task = await _subscribe(dw, handler, "g", limit=1)
        assert await asyncio.wait_for(task, WAIT) == 1
        assert called == []
        [letter] = await dw.events.dead_letters("bus", "big")
        assert "NotFoundError" in letter.headers["x-ductwork-error"]
        assert key in letter.headers["x-ductwork-error"]
        assert letter.headers["x-ductwork-offload"] == "1"  # the reference is kept


async def test_a_dead_letter_keeps_its_body_and_replay_delivers_it_whole(tmp_path, broker):
    async with offload_client(tmp_path, broker, "t", max_deliveries=1) as dw:
        body = payload(500_000)

        async def failing(event: Event) -> None:
            assert event.body == body
            raise RuntimeError("refused")

        bad = await _subscribe(dw, failing, "bad", limit=1)
        ok = await _subscribe(dw, lambda e: asyncio.sleep(0), "ok", limit=1)
        await dw.events.publish("bus", "big", body)
        [key] = await stored_keys(dw)
        assert await asyncio.wait_for(asyncio.gather(bad, ok), WAIT) == [1, 1]
        assert await stored(dw, key)  # "ok" acked, "bad" dead-lettered: kept for the letter
        [letter] = await dw.events.dead_letters("bus", "big")
        assert letter.headers["x-ductwork-offload-group"] == "bad"

        got: list[Event] = []

        async def fixed(event: Event) -> None:
            got.append(event)

        bad = await _subscribe(dw, fixed, "bad", limit=1)
        ok = await _subscribe(dw, fixed, "ok", limit=1)
        assert await dw.events.replay_dead_letters("bus", "big") == 1
        assert await asyncio.wait_for(asyncio.gather(bad, ok), WAIT) == [1, 1]
        assert [e.body == body for e in got] == [True, True]
        assert await stored_keys(dw) == []  # the old body and the replayed one are both gone


async def test_retained_bodies_are_pruned_by_subscribers_after_retention(tmp_path, monkeypatch):
    async def unknown(self, topic):
        return None  # as kafka and rabbitmq: the groups cannot be listed

    monkeypatch.setattr(MemoryBroker, "groups", unknown)
    settings = {"retention": "1h", "prune_every": "1h"}
    async with offload_client(tmp_path, BROKERS["memory"](tmp_path), "t", offload=settings) as dw:
        key, _ = await big_message_through(dw, size=300_000, groups=("a",))
        assert key.startswith("events/retained/t/")
        assert await stored(dw, key)  # acked, kept: nobody knows which groups there are
        files = await dw.provider("storage", "files", None)
        modified = (await files.stat(key)).modified.timestamp()
        # the clock the pruner reads: just before the retention ends, nothing goes
        monkeypatch.setattr(_offload, "now", lambda: modified + 3600 - 5)
        resource = dw.config.resource("brokers", "bus")
        provider = await dw.provider("brokers", "bus", None)
        pruner = _offload.Offload(dw, "bus", resource.offload, provider, None)
        assert await pruner.prune() == 0
        assert await stored(dw, key)
        # past it, a running subscription's pruner (its first round is at start) removes it
        monkeypatch.setattr(_offload, "now", lambda: modified + 3600 + 5)
        stop = asyncio.Event()
        task = await _subscribe(dw, lambda e: asyncio.sleep(0), "a", stop=stop)
        deadline = asyncio.get_running_loop().time() + WAIT
        while await stored(dw, key):  # the pruner runs beside the loop: watch its effect
            assert asyncio.get_running_loop().time() < deadline, "not pruned"
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, WAIT)


async def test_over_must_be_below_the_brokers_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(MemoryBroker, "max_body", property(lambda self: 100_000))
    async with offload_client(tmp_path, BROKERS["memory"](tmp_path), "t") as dw:
        with pytest.raises(ValidationError, match=r"offload.over .* broker's limit of 100000"):
            await dw.events.publish("bus", "big", payload(300_000))
        assert await stored_keys(dw) == []


def _config(tmp_path, offload):
    return Config.from_dict(
        {
            "product": "p",
            "environments": ["dev"],
            "storage": {"files": {"dev": {"provider": "local", "path": "f"}}},
            "brokers": {"bus": {"dev": {"provider": "memory"}, "offload": offload}},
        },
        root=tmp_path,
    )


def test_offload_config_is_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"offload\.storage: no storage resource 'blobs'"):
        _config(tmp_path, {"storage": "blobs"})
    with pytest.raises(ConfigError, match="not a size"):
        _config(tmp_path, {"storage": "files", "over": "big"})
    with pytest.raises(ConfigError, match="prefix"):
        _config(tmp_path, {"storage": "files", "prefix": "/abs"})
    offload = _config(tmp_path, {"storage": "files", "over": "1MB"}).product.brokers["bus"].offload
    assert offload is not None
    assert offload.over == 1 << 20
    assert offload.prefix == "events/"


@given(st.integers(0, 10**6), st.sampled_from(["", "B", "KB", "kb", "KiB", "MB", "MiB", "GB"]))
def test_sizes_parse(n, unit):
    factor = {"": 1, "b": 1, "kb": 1024, "kib": 1024, "mb": 1 << 20, "mib": 1 << 20, "gb": 1 << 30}
    assert parse_size(f"{n}{unit}") == n * factor[unit.lower()]
    assert parse_size(f" {n} {unit} ") == n * factor[unit.lower()]


def test_sizes_refuse_what_is_none():
    for bad in ("-1", "1TB", "KB", "1.5.2MB", True, -3, 1.5):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)


async def test_memory_stays_near_one_body_on_each_side(tmp_path):
    """Publishing stores the caller's bytes as they are; the subscriber reads the body once."""
    size = 20 << 20
    async with offload_client(tmp_path, BROKERS["memory"](tmp_path), "t") as dw:
        got: list[int] = []

        async def handler(event: Event) -> None:
            got.append(len(event.body))

        task = await _subscribe(dw, handler, "g", limit=1)
        body = payload(size)
        tracemalloc.start()
        try:
            await dw.events.publish("bus", "big", body)
            _, publish_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            await asyncio.wait_for(task, WAIT)
            _, consume_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert got == [size]
        assert publish_peak < 0.1 * size, publish_peak  # no copy of the body
        assert consume_peak < 1.5 * size, consume_peak  # the body read, once


async def test_a_feature_steps_publish_carries_its_idempotency_key(dw):
    """``<run_id>:<step_key>``: the message id where the broker has one (docs/events.md)."""
    got: list[Event] = []
    ready = asyncio.Event()

    async def handler(event: Event) -> None:
        got.append(event)

    task = asyncio.create_task(
        dw.events.subscribe("bus", "user_created", handler, group="g", limit=1, ready=ready)
    )
    await asyncio.wait_for(ready.wait(), WAIT)
    await dw.features.run("signup", {"id": 1, "name": "Ada", "email": "ada@example.com"})
    run_id = (await dw.features.list("signup"))[0].job_id
    await asyncio.wait_for(task, WAIT)
    assert got[0].data == {"id": 1, "name": "Ada"}
    assert got[0].header("idempotency-key") == f"{run_id}:announce/publish"
