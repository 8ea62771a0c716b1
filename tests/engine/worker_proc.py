"""A real worker process for the crash tests, with test job kinds registered.

usage: worker_proc.py URL [--concurrency N] [--lease S] [--heartbeat S] [--id ID]
                        [--scheduler-only] [--retention DAYS] [--prune-every S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from ductwork.engine.executors import register_executor
from ductwork.engine.scheduler import fire_due
from ductwork.engine.store import Store
from ductwork.engine.worker import Worker


async def sleep_job(dw, target, data, env):
    marker = data.get("marker")
    if marker:  # tells the test the job has started (and in which process)
        Path(marker).write_text(str(os.getpid()))
    if data.get("hang_pid") == os.getpid():  # a crash test's victim never finishes these
        await asyncio.sleep(3600)
    await asyncio.sleep(float(data.get("seconds", 0)))
    return {"pid": os.getpid()}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--lease", type=float, default=30)
    parser.add_argument("--heartbeat", type=float, default=5)
    parser.add_argument("--id", default=None, help="the worker id (default: host:pid:random)")
    parser.add_argument("--scheduler-only", action="store_true")
    parser.add_argument("--ready", default=None)
    parser.add_argument("--retention", type=float, default=None, help="days succeeded runs stay")
    parser.add_argument("--prune-every", type=float, default=60.0)
    args = parser.parse_args()
    register_executor("test.sleep", sleep_job)
    store = await Store.open(args.url, pool_size=3)
    if args.ready:
        Path(args.ready).write_text("ok")
    try:
        if args.scheduler_only:
            while True:  # stopped by the test
                await fire_due(store)
                await asyncio.sleep(0.01)
        worker = Worker(
            object(),  # type: ignore[arg-type]  # test kinds do not use the client
            store,
            concurrency=args.concurrency,
            lease=args.lease,
            heartbeat=args.heartbeat,
            poll_interval=0.05,
            tick=0.2,
            listen_url=args.url,
            worker_id=args.id,
            retention=None if args.retention is None else {"succeeded": args.retention * 86400},
            prune_every=args.prune_every,
            prune_batch=100,
        )
        await worker.serve()
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
