"""Offloaded events: memory held per body, and time against the storage round trip alone.

For a body of ``--size`` MB through broker ``memory`` with ``offload`` to storage ``local`` and
``s3`` (a moto server on loopback), measures with tracemalloc:

* publish peak: what ``dw.events.publish`` allocates beyond the caller's body (the stored body
  is written from the caller's bytes, S3 parts made one at a time);
* consume peak: what receiving it allocates (the body, read once), as a multiple of its size.

And alternates rounds of ``publish`` + a group's handling (restore, ack, removal of the stored
body) against the raw floor: ``save`` + ``read`` + ``delete`` of the same bytes on the same
storage provider. Prints medians and the ratio.

Run: ``uv run python benchmarks/bench_offload.py [--size 20] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

from ductwork.processor.events import Event
from ductwork.providers.storage import Storage
from ductwork.testing.offload import offload_client, payload
from ductwork.testing.servers import moto_server


async def _one(dw: Any, body: bytes) -> tuple[int, int]:
    got: list[int] = []
    ready = asyncio.Event()

    async def handler(event: Event) -> None:
        got.append(len(event.body))

    task = asyncio.create_task(
        dw.events.subscribe("bus", "big", handler, group="g", limit=1, ready=ready)
    )
    await ready.wait()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    await dw.events.publish("bus", "big", body)
    publish_peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    await task
    consume_peak = tracemalloc.get_traced_memory()[1] - base
    assert got == [len(body)]
    return publish_peak, consume_peak


async def _bench(name: str, storage: dict[str, Any] | None, size: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as root:
        broker = {"provider": "memory", "namespace": uuid.uuid4().hex}
        async with offload_client(Path(root), broker, "bench", storage=storage) as dw:
            body = payload(size)
            files = await dw.provider("storage", "files", None)
            assert isinstance(files, Storage)
            tracemalloc.start()
            try:
                pub, con = await _one(dw, body)
            finally:
                tracemalloc.stop()
            print(
                f"{name}: {size >> 20} MB body; publish allocates {pub / size:.3f}x the body, "
                f"consume {con / size:.2f}x"
            )
            ours: list[float] = []
            floor: list[float] = []
            for _ in range(rounds):
                t = time.perf_counter()
                await _one(dw, body)
                ours.append(time.perf_counter() - t)
                t = time.perf_counter()
                await files.save("floor/x", body)
                assert len(await files.read("floor/x")) == size
                await files.delete("floor/x")
                floor.append(time.perf_counter() - t)
            a, b = statistics.median(ours), statistics.median(floor)
            print(f"{name}: offloaded event {a * 1000:.0f} ms, storage save+read+delete "
                  f"{b * 1000:.0f} ms, ratio {a / b:.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=20, help="body size in MB")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size << 20
    await _bench("local", None, size, args.rounds)
    with moto_server() as server:
        s3 = {
            "provider": "s3",
            "bucket": f"dw-{uuid.uuid4().hex[:12]}",
            "endpoint_url": server.url,
            "region": "us-east-1",
            "access_key_id": "AKIABENCH",
            "secret_access_key": "bench-secret",
            "create_bucket": True,
            "addressing_style": "path",
        }
        await _bench("s3 (moto)", s3, size, args.rounds)


if __name__ == "__main__":
    asyncio.run(main())
