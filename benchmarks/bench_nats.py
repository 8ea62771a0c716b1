"""NATS JetStream publish: ductwork's ``nats`` broker vs raw nats-py, on the machine's server.

Uses the NATS server at ``nats://127.0.0.1:4222`` (JetStream on; ``$DUCTWORK_BENCH_NATS_URL``
overrides). Makes two streams with the same config (file storage, interest retention, one
durable consumer each so messages are kept), then alternates rounds of:

* ductwork: ``NATSBroker.publish(topic, 100 B, key=…)``, awaited one at a time (confirmed by the
  stream's PubAck);
* raw nats-py: ``JetStreamContext.publish(subject, 100 B, headers={key})`` on one connection,
  awaited one at a time.

Prints ops/s per round and the ratio ductwork/raw of the medians, then deletes both streams.

Run: ``uv run python benchmarks/bench_nats.py [--rounds 20] [--ops 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import nats
from ductwork.providers import ProviderContext
from ductwork_nats.broker import NATSBroker
from nats.js.api import ConsumerConfig, DeliverPolicy, RetentionPolicy, StreamConfig

URL = os.environ.get("DUCTWORK_BENCH_NATS_URL", "nats://127.0.0.1:4222")
BODY = b"x" * 100


async def timed(ops: int, publish: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
    """Ops per wall second, and this process's CPU microseconds per op."""
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(ops):
        await publish(i)
    return ops / (time.perf_counter() - start), (time.process_time() - cpu) / ops * 1e6


async def main(rounds: int, ops: int) -> None:
    prefix = f"dwbench{uuid.uuid4().hex[:8]}"
    context = ProviderContext(resource="brokers.bench", env="bench", provider="nats")
    broker = NATSBroker.from_options(
        context, servers=[URL], stream_prefix=prefix, subject_prefix=prefix
    )
    await broker.open()
    nc = await nats.connect(URL)
    js = nc.jetstream()
    raw_stream, raw_subject = f"{prefix}_raw", f"{prefix}.raw"
    try:
        sub = await broker.subscribe("dw", "keeper")  # a group, so messages are kept
        await js.add_stream(
            StreamConfig(
                name=raw_stream, subjects=[raw_subject], retention=RetentionPolicy.INTEREST
            )
        )
        await js.add_consumer(
            raw_stream, ConsumerConfig(durable_name="keeper", deliver_policy=DeliverPolicy.NEW)
        )

        async def ductwork_publish(i: int) -> object:
            return await broker.publish("dw", BODY, key=f"k{i % 16}")

        async def raw_publish(i: int) -> object:
            return await js.publish(raw_subject, BODY, headers={"x-ductwork-key": f"k{i % 16}"})

        await timed(200, ductwork_publish)  # warm up both paths
        await timed(200, raw_publish)
        rates: dict[str, list[float]] = {"ductwork": [], "raw": []}
        cpu: dict[str, list[float]] = {"ductwork": [], "raw": []}
        for r in range(rounds):
            order = [("ductwork", ductwork_publish), ("raw", raw_publish)]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                rate, per_op = await timed(ops, fn)
                rates[name].append(rate)
                cpu[name].append(per_op)
            print(
                f"round {r + 1:2}: ductwork {rates['ductwork'][-1]:6.0f} ops/s "
                f"({cpu['ductwork'][-1]:5.0f} us CPU/op)   raw nats-py {rates['raw'][-1]:6.0f} "
                f"ops/s ({cpu['raw'][-1]:5.0f} us CPU/op)"
            )
        dw, raw = statistics.median(rates["ductwork"]), statistics.median(rates["raw"])
        dw_cpu, raw_cpu = statistics.median(cpu["ductwork"]), statistics.median(cpu["raw"])
        print(f"median: ductwork {dw:.0f} ops/s, raw nats-py {raw:.0f} ops/s")
        print(f"ratio ductwork/raw: {dw / raw:.3f}")
        print(
            f"client CPU per publish: ductwork {dw_cpu:.0f} us, raw {raw_cpu:.0f} us "
            f"(ratio raw/ductwork {raw_cpu / dw_cpu:.3f})"
        )
        await sub.close()
    finally:
        for name in (raw_stream, broker.stream_name("dw")):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
        await nc.close()
        await broker.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--ops", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.ops))
