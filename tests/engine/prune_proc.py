"""A pruner process for the crash test: prunes runs older than 7 days until done (or killed).

usage: prune_proc.py URL [--batch N] [--pause S]
"""

from __future__ import annotations

import argparse
import asyncio

from ductwork.engine.retention import prune
from ductwork.engine.store import Store


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.2)
    args = parser.parse_args()
    store = await Store.open(args.url, pool_size=2)
    try:
        ages = {"succeeded": 7 * 86400.0, "failed": 30 * 86400.0}
        await prune(store, ages, batch=args.batch, pause=args.pause)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
