"""events.subscribe: ack on success, retry with backoff, dead letters with the error, replay."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import yaml
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.processor.events import Event


def fast_config(product_dir, provider="memory"):
    data = yaml.safe_load((product_dir / "ductwork.yaml").read_text())
    bus = data["brokers"]["bus"]
    bus["dev"] = (
        {"provider": "memory", "namespace": str(product_dir)}
        if provider == "memory"
        else {"provider": "sqlite", "path": ".ductwork/events.db", "poll_interval": 0.01}
    )
    bus.update(max_deliveries=3, retry_delay=0.01, retry_delay_max=0.02)
    return Config.from_dict(data, root=product_dir)


async def test_handler_success_acks_once(product_dir):
    async with Ductwork(fast_config(product_dir), env="dev") as dw:
        got: list[Event] = []
        ready = asyncio.Event()

        async def handler(event: Event) -> None:
            got.append(event)

        task = asyncio.create_task(
            dw.events.subscribe("bus", "user_created", handler, group="g", limit=2, ready=ready)
        )
        await ready.wait()
        await dw.events.publish("bus", "user_created", {"id": 1})
        await dw.events.publish("bus", "user_created", b"raw bytes", key="k")
        assert await asyncio.wait_for(task, 10) == 2
        assert [e.data for e in got] == [{"id": 1}, b"raw bytes"]
        assert got[0].topic == "user.created"
        assert all(e.attempt == 1 for e in got)


async def test_failing_handler_is_retried_then_dead_lettered_and_replayed(product_dir):
    for provider in ("memory", "sqlite"):
        async with Ductwork(fast_config(product_dir, provider), env="dev") as dw:
            attempts: list[int] = []
            ready = asyncio.Event()

            async def failing(event: Event, attempts=attempts) -> None:
                attempts.append(event.attempt)
                raise ValueError(f"cannot handle {event.data}")

            task = asyncio.create_task(
                dw.events.subscribe("bus", "user_created", failing, group="g", limit=1, ready=ready)
            )
            await ready.wait()
            await dw.events.publish("bus", "user_created", {"id": 7})
            assert await asyncio.wait_for(task, 10) == 1
            assert attempts == [1, 2, 3]

            [letter] = await dw.events.dead_letters("bus", "user_created")
            assert json.loads(letter.body) == {"id": 7}
            assert letter.headers["x-ductwork-deliveries"] == "3"
            assert "ValueError: cannot handle {'id': 7}" in letter.headers["x-ductwork-error"]
            # listing keeps them
            assert len(await dw.events.dead_letters("bus", "user_created")) == 1

            handled: list[Event] = []
            ready2 = asyncio.Event()

            async def fixed(event: Event, handled=handled) -> None:
                handled.append(event)

            task = asyncio.create_task(
                dw.events.subscribe("bus", "user_created", fixed, group="g", limit=1, ready=ready2)
            )
            await ready2.wait()
            assert await dw.events.replay_dead_letters("bus", "user_created") == 1
            assert await asyncio.wait_for(task, 10) == 1
            assert handled[0].data == {"id": 7}
            assert await dw.events.dead_letters("bus", "user_created") == []


async def test_cancelled_subscriber_returns_its_message(product_dir):
    async with Ductwork(fast_config(product_dir, "sqlite"), env="dev") as dw:
        started = asyncio.Event()
        ready = asyncio.Event()

        async def slow(event: Event) -> None:
            started.set()
            await asyncio.Event().wait()  # never finishes: we stop the subscriber mid-message

        task = asyncio.create_task(
            dw.events.subscribe("bus", "user_created", slow, group="g", ready=ready)
        )
        await ready.wait()
        await dw.events.publish("bus", "user_created", {"id": 3})
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

        got: list[Event] = []

        async def handler(event: Event) -> None:
            got.append(event)

        await asyncio.wait_for(
            dw.events.subscribe("bus", "user_created", handler, group="g", limit=1), 10
        )
        assert got[0].data == {"id": 3}
        assert got[0].attempt == 2


async def test_two_processes_exchange_events_through_the_sqlite_broker(product_dir):
    config = product_dir / "ductwork.yaml"
    consumer = textwrap.dedent(f"""
        import asyncio, json, sys
        from ductwork import Ductwork
        async def main():
            async with Ductwork.from_config({str(config)!r}, env="dev") as dw:
                async def handler(event):
                    print(json.dumps(event.data), flush=True)
                ready = asyncio.Event()
                task = asyncio.create_task(dw.events.subscribe(
                    "bus", "user_created", handler, group="other-process", limit=1, ready=ready))
                await ready.wait()
                print("ready", flush=True)
                await task
        asyncio.run(main())
    """)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", consumer, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"ready"
        async with Ductwork(Config.load(config), env="dev") as dw:
            await dw.events.publish("bus", "user_created", {"from": "parent"})
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert json.loads(line) == {"from": "parent"}
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_publish_many_confirms_every_message(product_dir):
    async with Ductwork(fast_config(product_dir, "sqlite"), env="dev") as dw:
        got: list[Event] = []
        ready = asyncio.Event()

        async def handler(event: Event) -> None:
            got.append(event)

        task = asyncio.create_task(
            dw.events.subscribe("bus", "user_created", handler, group="g", limit=20, ready=ready)
        )
        await ready.wait()
        assert (
            await dw.events.publish_many("bus", "user_created", [{"n": i} for i in range(20)]) == 20
        )
        assert await asyncio.wait_for(task, 10) == 20
        assert sorted(e.data["n"] for e in got) == list(range(20))


async def test_leaving_the_client_ends_a_running_subscribe(product_dir):
    for provider in ("memory", "sqlite"):
        ready = asyncio.Event()

        async def handler(event: Event) -> None:
            raise AssertionError("no event is published")

        async with Ductwork(fast_config(product_dir, provider), env="dev") as dw:
            task = asyncio.create_task(
                dw.events.subscribe("bus", "user_created", handler, group="g", ready=ready)
            )
            await asyncio.wait_for(ready.wait(), 10)
        assert await asyncio.wait_for(task, 5) == 0


def test_reconnect_timeout_is_a_duration(product_dir):
    data = yaml.safe_load((product_dir / "ductwork.yaml").read_text())
    data["brokers"]["bus"]["reconnect_timeout"] = "2m"
    resource = Config.from_dict(data, root=product_dir).resource("brokers", "bus")
    assert resource.reconnect_timeout == 120.0
    assert fast_config(product_dir).resource("brokers", "bus").reconnect_timeout is None
