"""ductwork's ``redis`` cache vs raw redis-py asyncio: GET and SET, one per round trip.

Uses the machine's Redis on 127.0.0.1:6379 (db 0, keys under a unique ``bench:`` prefix, removed
at the end). Both clients run in one process and one event loop; rounds alternate A/B so drift
on this shared 2-core VM hits both alike. Prints median ops/s of each, the ratio
ductwork/raw of the medians and the median of per-round ratios (target >= 0.95), and the
client's CPU time per op, which the server's and neighbours' load disturbs far less.

    uv run python benchmarks/bench_redis.py [--ops 1000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aredis
from ductwork_redis.cache import RedisCache

HOST, PORT = "127.0.0.1", 6379
VALUE = b"x" * 100


async def timed(op: Callable[[int], Awaitable[object]], ops: int) -> tuple[float, float]:
    """(ops/s wall clock, client CPU microseconds per op)."""
    cpu, start = time.process_time(), time.perf_counter()
    for i in range(ops):
        await op(i)
    wall = time.perf_counter() - start
    return ops / wall, (time.process_time() - cpu) / ops * 1e6


async def main(ops: int, rounds: int) -> None:
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    keys = [f"k{i % 100}" for i in range(ops)]
    full = [prefix + k for k in keys]
    raw = aredis.Redis(host=HOST, port=PORT)
    async with RedisCache.from_options(host=HOST, port=PORT, key_prefix=prefix) as cache:
        await raw.ping()
        for k in keys:  # both read the same 100 existing keys
            await cache.set(k, VALUE)

        cases: dict[str, tuple[Callable[[int], Awaitable[object]], ...]] = {
            "get": (lambda i: cache.get(keys[i]), lambda i: raw.get(full[i])),
            "set": (lambda i: cache.set(keys[i], VALUE), lambda i: raw.set(full[i], VALUE)),
        }
        for op_dw, op_raw in cases.values():  # warm both paths
            await timed(op_dw, 500)
            await timed(op_raw, 500)
        runs: dict[str, tuple[list[tuple[float, float]], ...]] = {n: ([], []) for n in cases}
        for r in range(rounds):
            for name, (op_dw, op_raw) in cases.items():
                if r % 2 == 0:
                    runs[name][0].append(await timed(op_dw, ops))
                    runs[name][1].append(await timed(op_raw, ops))
                else:
                    runs[name][1].append(await timed(op_raw, ops))
                    runs[name][0].append(await timed(op_dw, ops))

        print(f"redis cache: {rounds} alternated A/B rounds x {ops} ops, one op per round trip")
        print(
            f"{'op':<5}{'ductwork ops/s':>16}{'raw ops/s':>11}{'ratio':>7}"
            f"{'ratio/round':>13}{'client CPU us/op dw/raw':>26}"
        )
        for name, (dw_runs, raw_runs) in runs.items():
            dw = statistics.median(x for x, _ in dw_runs)
            rw = statistics.median(x for x, _ in raw_runs)
            per_round = statistics.median(
                d / r for (d, _), (r, _) in zip(dw_runs, raw_runs, strict=True)
            )
            cpu_dw = statistics.median(c for _, c in dw_runs)
            cpu_raw = statistics.median(c for _, c in raw_runs)
            print(
                f"{name:<5}{dw:>16,.0f}{rw:>11,.0f}{dw / rw:>7.3f}{per_round:>13.3f}"
                f"{cpu_dw:>15.1f} / {cpu_raw:.1f}"
            )
        await raw.delete(*{prefix + k for k in keys})
    await raw.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.ops, args.rounds))
