"""The provider boundary's cost per call: a guarded provider method vs the same method unguarded.

Every provider's interface methods are wrapped once, when the class is defined, so that what a
provider does not translate still reaches the caller as a ``ProviderError`` (see
``ductwork.providers._boundary``). This measures what that costs on the cheapest call there is,
the ``memory`` cache's ``get`` (no I/O), where the wrapper is the largest share: the guarded
method against its ``__wrapped__`` original, rounds alternated A/B in one event loop. A network
call (a Redis GET is ~50-150 us of client CPU here) hides the difference; compare the absolute
nanoseconds with ``bench_redis.py``'s CPU per op.

    uv run python benchmarks/bench_boundary.py [--ops 100000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from ductwork.builtin.memory_cache import MemoryCache


async def timed(op: Callable[[], Awaitable[object]], ops: int) -> float:
    """Client CPU nanoseconds per op."""
    start = time.process_time_ns()
    for _ in range(ops):
        await op()
    return (time.process_time_ns() - start) / ops


async def main(ops: int, rounds: int) -> None:
    async with MemoryCache.from_options() as cache:
        await cache.set("k", b"v")
        guarded = cache.get
        raw = type(cache).get.__wrapped__  # type: ignore[attr-defined]
        cases = (lambda: guarded("k"), lambda: raw(cache, "k"))
        for op in cases:  # warm both paths
            await timed(op, ops // 10)
        runs: tuple[list[float], list[float]] = ([], [])
        for r in range(rounds):
            order = (0, 1) if r % 2 == 0 else (1, 0)
            for i in order:
                runs[i].append(await timed(cases[i], ops))
    g, u = statistics.median(runs[0]), statistics.median(runs[1])
    print(f"memory cache get: {rounds} alternated rounds x {ops} calls, client CPU per call")
    print(f"guarded {g:,.0f} ns  unguarded {u:,.0f} ns  boundary cost {g - u:,.0f} ns")
    print(f"ratio unguarded/guarded {u / g:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    asyncio.run(main(args.ops, args.rounds))
