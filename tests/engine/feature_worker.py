"""A real worker process with a client, for the feature durability tests.

usage: feature_worker.py CONFIG [--hang]   (--hang: this process's ``gate`` steps never end)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # features_app, named by the product's modules

from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.engine.worker import Worker


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args()
    folder = Path(args.config).parent
    if args.hang:
        (folder / f"hang-{os.getpid()}").write_text("")
    async with Ductwork(Config.load(args.config), env="dev") as dw:
        store = await dw.jobs.store()
        settings = dw.jobs.settings()
        worker = Worker(
            dw,
            store,
            concurrency=4,
            lease=settings.lease,
            heartbeat=settings.heartbeat,
            poll_interval=0.05,
            tick=0.2,
        )
        (folder / f"ready-{os.getpid()}").write_text("")
        await worker.serve()


if __name__ == "__main__":
    asyncio.run(main())
