"""Confirmed publishes to RabbitMQ: ductwork's ``rabbitmq`` broker vs raw aio-pika.

Uses the machine's RabbitMQ (127.0.0.1:5672, guest/guest; ``rabbitmq-server -detached`` starts
it). Both sides publish persistent 100-byte messages with publisher confirms through one held
channel to the same topic exchange, routed to one durable quorum queue (a consumer group that
nobody reads; it is purged between rounds). Two workloads: serial (each publish awaits its
confirm) and 100 in flight (``asyncio.gather`` of 100 publishes at a time). Rounds alternate
A/B and B/A in short runs (the server's fsync latency drifts, and other work on the machine
shows up as noise); printed: median ops/s of each side and their ratio, the median of the
per-round ratios, and the client CPU time per publish (what ductwork adds, free of server noise).

    uv run python benchmarks/bench_rabbitmq.py [--rounds 20] [--serial 300] [--batches 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import aio_pika
from ductwork.providers import ProviderContext
from ductwork_rabbitmq.broker import RabbitMQBroker

BODY = b"x" * 100
URL = "amqp://guest:guest@127.0.0.1:5672/"

Publish = Callable[[], Awaitable[object]]


Run = tuple[float, float]  # (ops/s, client CPU µs per op)


async def serial(publish: Publish, n: int) -> Run:
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await publish()
    return n / (time.perf_counter() - start), (time.process_time() - cpu) / n * 1e6


async def in_flight(publish: Publish, batches: int, width: int = 100) -> Run:
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        await asyncio.gather(*(publish() for _ in range(width)))
    n = batches * width
    return n / (time.perf_counter() - start), (time.process_time() - cpu) / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--serial", type=int, default=300, help="publishes per serial run")
    parser.add_argument("--batches", type=int, default=5, help="batches of 100 per run")
    parser.add_argument("--verbose", action="store_true", help="print every round")
    args = parser.parse_args()

    exchange_name = f"dw-bench-{uuid.uuid4().hex[:8]}"
    topic = "bench.published"
    context = ProviderContext(resource="brokers.bench", env="bench", provider="rabbitmq")
    broker = RabbitMQBroker.from_options(context, host="127.0.0.1", exchange=exchange_name)
    await broker.open()
    group = await broker.subscribe(topic, "sink")  # binds the durable queue the messages land in
    await group.close()

    raw = await aio_pika.connect_robust(URL)
    channel = await raw.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(
        exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.get_queue(broker.queue_name(topic, "sink"))

    async def dw_publish() -> object:
        return await broker.publish(topic, BODY)

    async def raw_publish() -> object:
        message = aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        return await exchange.publish(message, topic, mandatory=False, timeout=10.0)

    sides = {"ductwork": dw_publish, "aio-pika": raw_publish}
    workloads: dict[str, Callable[[Publish], Awaitable[Run]]] = {
        "serial": lambda p: serial(p, args.serial),
        "100 in flight": lambda p: in_flight(p, args.batches),
    }
    results: dict[tuple[str, str], list[Run]] = {}
    try:
        for name, run in workloads.items():
            await run(raw_publish)  # warm-up, not counted
            for r in range(args.rounds):
                order = list(sides) if r % 2 == 0 else list(reversed(sides))
                for side in order:
                    await queue.purge()
                    results.setdefault((name, side), []).append(await run(sides[side]))
    finally:
        await queue.purge()
        await queue.delete(if_unused=False, if_empty=False)
        await channel.exchange_delete(exchange_name)
        await raw.close()
        await broker.close()

    print(f"RabbitMQ confirmed publish, 100 B persistent, {args.rounds} interleaved rounds")
    print(
        f"{'workload':<14} {'ductwork/s':>10} {'aio-pika/s':>10} {'ratio':>6}"
        f" {'pair-median':>11} {'dw CPU µs/op':>12} {'raw CPU µs/op':>13}"
    )
    for name in workloads:
        dw, base = results[(name, "ductwork")], results[(name, "aio-pika")]
        dw_rate = statistics.median(r for r, _ in dw)
        base_rate = statistics.median(r for r, _ in base)
        pairs = statistics.median(a[0] / b[0] for a, b in zip(dw, base, strict=True))
        print(
            f"{name:<14} {dw_rate:>10,.0f} {base_rate:>10,.0f} {dw_rate / base_rate:>6.3f}"
            f" {pairs:>11.3f} {statistics.median(c for _, c in dw):>12.1f}"
            f" {statistics.median(c for _, c in base):>13.1f}"
        )
        if args.verbose:
            for side in sides:
                rates = ", ".join(f"{r:,.0f}" for r, _ in results[(name, side)])
                print(f"  {side}: {rates}")


if __name__ == "__main__":
    asyncio.run(main())
