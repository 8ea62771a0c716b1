"""The sync client's cost: one call's overhead against the async call, and 8 threads sharing it.

A product with two caches: ``mem`` (the in-process ``memory`` cache: the call is all overhead)
and ``red`` (``redis`` on 127.0.0.1:6379: one real round trip). For each:

- p50/p90 latency of ``caches.get`` through ``SyncDuctwork`` from one thread, and of the same
  call awaited on the async client in its own loop (rounds alternate, A/B);
- throughput of 8 threads sharing one ``SyncDuctwork`` (a threaded web server's shape), against
  1 thread, and against 8 concurrent tasks on the async client.

    uv run python benchmarks/bench_sync.py [--ops 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ductwork import Ductwork, SyncDuctwork
from ductwork.config.loader import Config

THREADS = 8


def config() -> Config:
    prefix = f"bench-sync-{uuid.uuid4().hex[:8]}:"
    return Config.from_dict(
        {
            "product": "bench",
            "environments": ["dev"],
            "caches": {
                "mem": {"dev": {"provider": "memory"}},
                "red": {
                    "dev": {
                        "provider": "redis",
                        "url": "redis://127.0.0.1:6379/0",
                        "key_prefix": prefix,
                    }
                },
            },
        }
    )


def latencies(call: Callable[[], object], ops: int) -> list[float]:
    out = []
    for _ in range(ops):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


async def async_latencies(dw: Ductwork, cache: str, ops: int) -> list[float]:
    out = []
    for _ in range(ops):
        start = time.perf_counter()
        await dw.caches.get(cache, "k")
        out.append(time.perf_counter() - start)
    return out


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1e6


def threaded(sdw: SyncDuctwork, cache: str, threads: int, ops: int) -> float:
    """ops/s of ``threads`` threads each making ``ops // threads`` calls on one client."""
    each = ops // threads
    start_line = threading.Barrier(threads + 1)

    def work() -> None:
        start_line.wait()
        for _ in range(each):
            sdw.caches.get(cache, "k")

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(work) for _ in range(threads)]
        start_line.wait()
        start = time.perf_counter()
        for f in futures:
            f.result()
    return each * threads / (time.perf_counter() - start)


async def gathered(dw: Ductwork, cache: str, tasks: int, ops: int) -> float:
    each = ops // tasks

    async def work() -> None:
        for _ in range(each):
            await dw.caches.get(cache, "k")

    start = time.perf_counter()
    await asyncio.gather(*(work() for _ in range(tasks)))
    return each * tasks / (time.perf_counter() - start)


def main(ops: int, rounds: int) -> None:
    cfg = config()
    loop = asyncio.new_event_loop()
    adw = Ductwork(cfg, env="dev")
    with SyncDuctwork(Ductwork(cfg, env="dev")) as sdw:
        for cache in ("mem", "red"):
            sdw.caches.set(cache, "k", {"v": 1})
            loop.run_until_complete(adw.caches.get(cache, "k"))  # open, warm
            latencies(lambda c=cache: sdw.caches.get(c, "k"), 200)
        print(
            f"{'cache':6} {'sync p50':>10} {'async p50':>10} {'overhead':>10} "
            f"{'sync p90':>10} {'async p90':>10}"
        )
        for cache in ("mem", "red"):
            sync_all: list[float] = []
            async_all: list[float] = []
            for r in range(rounds):  # alternate which goes first
                for first in (r % 2 == 0, r % 2 != 0):
                    if first:
                        sync_all += latencies(lambda c=cache: sdw.caches.get(c, "k"), ops)
                    else:
                        async_all += loop.run_until_complete(async_latencies(adw, cache, ops))
            s50, a50 = pct(sync_all, 50), pct(async_all, 50)
            print(
                f"{cache:6} {s50:9.1f}µ {a50:9.1f}µ {s50 - a50:9.1f}µ "
                f"{pct(sync_all, 90):9.1f}µ {pct(async_all, 90):9.1f}µ"
            )
        print()
        print(
            f"{'cache':6} {'sync 1 thread':>14} {'sync 8 threads':>15} "
            f"{'async 8 tasks':>14}   (ops/s, medians of {rounds} rounds)"
        )
        for cache in ("mem", "red"):
            one = [threaded(sdw, cache, 1, ops) for _ in range(rounds)]
            eight = [threaded(sdw, cache, THREADS, ops) for _ in range(rounds)]
            tasks = [
                loop.run_until_complete(gathered(adw, cache, THREADS, ops)) for _ in range(rounds)
            ]
            print(
                f"{cache:6} {statistics.median(one):14,.0f} {statistics.median(eight):15,.0f} "
                f"{statistics.median(tasks):14,.0f}"
            )
        sdw.caches.clear("red")
    loop.run_until_complete(adw.close())
    loop.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    main(args.ops, args.rounds)
