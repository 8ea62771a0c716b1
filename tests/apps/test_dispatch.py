"""actions.dispatch: input checked before storing; a worker runs the call against the server."""

from __future__ import annotations

import asyncio
import time

import pytest
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.engine.worker import Worker
from ductwork.errors import NotFoundError, ValidationError


def config(url: str, root) -> Config:
    return Config.from_dict(
        {
            "product": "shop",
            "environments": ["dev"],
            "apps": {
                "svc": {
                    "dev": {"base_url": url},
                    "actions": {"count": {"path": "/count", "query": {"q": "str"}}},
                }
            },
        },
        root=root,
    )


async def test_dispatched_action_runs_through_a_worker(server, tmp_path):
    async with Ductwork(config(server.url, tmp_path), env="dev") as dw:
        with pytest.raises(ValidationError, match=r"query\.q: expected string"):
            await dw.actions.dispatch("svc", "count", {"q": 5})
        with pytest.raises(NotFoundError, match="no action 'cont'"):
            await dw.actions.dispatch("svc", "cont", {"q": "a"})
        assert await dw.jobs.list() == []
        job = await dw.actions.dispatch("svc", "count", {"q": "later"})
        assert job.status == "queued" and server.state.hits["count"] == 0
        worker = Worker(dw, await dw.jobs.store(), poll_interval=0.02, tick=0.1)
        task = asyncio.create_task(worker.run())
        try:
            deadline = time.monotonic() + 20
            while (found := await dw.jobs.get(job.job_id)).status != "succeeded":
                assert found.status != "failed", found
                assert time.monotonic() < deadline, found
                await asyncio.sleep(0.02)  # polling the job's state
        finally:
            worker.stop()
            await task
    assert server.state.hits["count"] == 1
