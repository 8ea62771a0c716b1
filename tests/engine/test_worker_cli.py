"""``ductwork worker`` as a user runs it: runs dispatched jobs, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from ductwork.client import Ductwork
from ductwork.config.loader import Config

from .conftest import eventually


async def _status(config: Path, job_id: str) -> str:
    async with Ductwork(Config.load(config), env="dev") as dw:
        return (await dw.jobs.get(job_id)).status


async def test_worker_runs_dispatched_jobs_then_stops_cleanly_on_sigterm(product_dir):
    config = product_dir / "ductwork.yaml"
    async with Ductwork(Config.load(config), env="dev") as dw:
        job = await dw.storage.dispatch("files", "reports/hello.txt", b"from a worker")
        assert job.status == "queued"

    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTWORK_")}
    worker = subprocess.Popen(
        [sys.executable, "-m", "ductwork", "--config", str(config), "--env", "dev", "worker"],
        cwd=product_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        async def succeeded() -> bool:
            assert worker.poll() is None, worker.communicate()
            return await _status(config, job.job_id) == "succeeded"

        await eventually(succeeded, timeout=60, what="the worker to run the job")
        worker.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(worker.communicate, timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()

    assert worker.returncode == 0, err
    assert "stopped after 1 run(s)" in out
    # the dev env's local storage (path .ductwork/files in the sample config)
    assert (product_dir / ".ductwork/files/reports/hello.txt").read_bytes() == b"from a worker"
