"""Quotas and fallbacks as feature steps and as dispatched jobs run by a worker."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from ductwork.client import Ductwork
from ductwork.engine.worker import Worker
from ductwork.errors import NotFoundError, ValidationError

from .conftest import Vendors, make_config, provider


def config(vendors: Vendors, root):
    return make_config(
        {
            "apps": vendors.apps(),
            "quotas": {
                "sms": {
                    "input": {"to": "str"},
                    "providers": [provider("alpha", weight=1), provider("beta", weight=1)],
                }
            },
            "fallbacks": {
                "pay": {"input": {"to": "str"}, "providers": [provider("alpha"), provider("beta")]}
            },
            "features": {
                "notify": {
                    "input": {"to": "str"},
                    "sequences": [
                        {
                            "tag": "s",
                            "steps": [
                                {
                                    "tag": "sms",
                                    "type": "quota",
                                    "target": "sms",
                                    "input": {"to": "{{ input.to }}"},
                                },
                                {
                                    "tag": "pay",
                                    "type": "fallback",
                                    "target": "pay",
                                    "input": {"to": "{{ input.to }}"},
                                    "output": {
                                        "id": "{{ result.output.id }}",
                                        "by": "{{ result.provider }}",
                                    },
                                },
                            ],
                        }
                    ],
                    "output": {
                        "sms": "{{ steps.s.sms.output.output.vendor }}",
                        "pay": "{{ steps.s.pay.output }}",
                    },
                }
            },
        },
        root=root,
    )


async def test_a_feature_calls_a_quota_and_a_fallback(vendors, tmp_path):
    vendors.mode["alpha"] = "503"
    async with Ductwork(config(vendors, tmp_path), env="dev") as dw:
        output = await dw.features.run("notify", {"to": "n1"}, timeout=60)
    assert output == {"sms": "beta", "pay": {"id": "B-n1", "by": "beta"}}


async def test_dispatch_checks_input_then_a_worker_runs_it(vendors, tmp_path):
    async with Ductwork(config(vendors, tmp_path), env="dev") as dw:
        with pytest.raises(ValidationError, match="quota 'sms': input does not match"):
            await dw.quotas.dispatch("sms", {"to": 5})
        with pytest.raises(NotFoundError, match="no fallback 'nope'"):
            await dw.fallbacks.dispatch("nope", {"to": "x"})
        later = datetime.now(UTC) + timedelta(hours=1)
        scheduled = await dw.fallbacks.dispatch("pay", {"to": "x"}, schedule={"start_at": later})
        assert scheduled.status == "scheduled"
        jobs = [
            await dw.quotas.dispatch("sms", {"to": "q1"}),
            await dw.fallbacks.dispatch("pay", {"to": "f1"}),
        ]
        assert vendors.hits["alpha"] + vendors.hits["beta"] == 0
        worker = Worker(dw, await dw.jobs.store(), poll_interval=0.02, tick=0.1)
        task = asyncio.create_task(worker.run())
        try:
            deadline = time.monotonic() + 30
            for job in jobs:
                while (found := await dw.jobs.get(job.job_id)).status != "succeeded":
                    assert found.status != "failed", found
                    assert time.monotonic() < deadline, found
                    await asyncio.sleep(0.02)  # polling the job's state
                assert found.result["provider"] in ("alpha", "beta")
                assert found.result["output"]["id"].endswith(("-q1", "-f1"))
        finally:
            worker.stop()
            await task
    assert vendors.hits["alpha"] + vendors.hits["beta"] == 2
