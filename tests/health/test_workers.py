"""Two ``ductwork worker`` processes on one store: one probe per interval, one alert per change.

The probed server counts its requests; the store says which slots fired and which runs did
what. Everything is waited for as a condition (bounded), never slept for.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from ductwork.builtin.mailbox import read_outbox
from ductwork.cli.app import cli
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.engine.schema import health, run
from ductwork.processor.events import Event
from sqlalchemy import select

from .conftest import Probed, product, write

INTERVAL_MS = 1000


async def _until(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _worker(config: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTWORK_")}
    return subprocess.Popen(
        [sys.executable, "-m", "ductwork", "--config", str(config), "worker", "--grace", "20"],
        cwd=config.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _cli(config: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


async def test_two_workers_probe_once_per_interval_and_alert_once_per_change(
    tmp_path: Path, probed: Probed, engine_url: str
):
    config = write(tmp_path, product(tmp_path, probed.url, engine_url, failures=2, successes=2))
    outbox = tmp_path / "outbox"
    events: list[Event] = []

    async def collect(event: Event) -> None:
        events.append(event)

    async with Ductwork(Config.load(config)) as dw:
        dw.health.max_age = 0  # read the store each time
        stop, ready = asyncio.Event(), asyncio.Event()
        subscriber = asyncio.create_task(
            dw.events.subscribe("bus", "health_changed", collect, group="t", stop=stop, ready=ready)
        )
        await asyncio.wait_for(ready.wait(), 30)
        workers = [_worker(config), _worker(config)]

        async def status(expected: str) -> bool:
            for w in workers:
                assert w.poll() is None, w.communicate()
            return (await dw.health.status())["api"].status == expected

        def alerts(n: int) -> Any:
            async def check() -> bool:
                mails = read_outbox(outbox) if outbox.exists() else []
                return len(mails) >= n and len(events) >= n

            return check

        try:
            await _until(lambda: status("healthy"), "the first probes")
            probed.status = 503
            await _until(lambda: status("unhealthy"), "two failed probes")
            await _until(alerts(1), "the down alert")
            probed.status = 200
            await _until(lambda: status("healthy"), "two good probes")
            await _until(alerts(2), "the up alert")
            seen = probed.pings

            async def more() -> bool:
                return probed.pings >= seen + 3

            await _until(more, "three more probes")
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            outs = [await asyncio.to_thread(w.communicate, timeout=60) for w in workers]
            stop.set()
            await asyncio.wait_for(subscriber, 30)
        for w, (_out, err) in zip(workers, outs, strict=True):
            assert w.returncode == 0, err

        store = await dw.jobs.store()
        async with store.engine.connect() as conn:
            probes = (
                await conn.execute(
                    select(run.c.scheduled_for, run.c.status, run.c.result).where(
                        run.c.kind == "health.probe"
                    )
                )
            ).all()
            alert_runs = (
                await conn.execute(
                    select(run.c.kind, run.c.status, run.c.dedupe_key).where(
                        run.c.kind.in_(("notifications.send", "events.publish"))
                    )
                )
            ).all()
            row = (await conn.execute(select(health))).one()

    # one run per slot, slots one interval apart, and one request per executed probe
    done = sorted(p.scheduled_for for p in probes if p.status == "succeeded")
    assert len(done) == len(set(done)) >= 7
    assert all(b - a == INTERVAL_MS for a, b in itertools.pairwise(done))
    assert probed.pings == len(done)
    # a probe whose later slot was recorded first (two workers, two slots at once) is stale
    applied = [p for p in probes if p.result and json.loads(p.result)["status"] is not None]
    assert row.probes == len(applied) >= 1
    # three changes (unknown -> healthy is not announced), two alerts of each kind
    assert row.changes == 3 and row.status == "healthy"
    assert sorted((r.kind, r.status) for r in alert_runs) == [
        ("events.publish", "succeeded"),
        ("events.publish", "succeeded"),
        ("notifications.send", "succeeded"),
        ("notifications.send", "succeeded"),
    ]
    mails = read_outbox(outbox)
    assert [m.subject for m in mails] == ["api is unhealthy", "api is healthy"]
    assert "healthy -> unhealthy" in mails[0].body and "503" in mails[0].body
    changes = [json.loads(e.body) for e in events]
    assert [(c["previous"], c["status"], c["change"]) for c in changes] == [
        ("healthy", "unhealthy", 2),
        ("unhealthy", "healthy", 3),
    ]

    # what a person sees: `ductwork health` and `ductwork doctor`
    shown = await asyncio.to_thread(_cli, config, "health")
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].split("\t") == ["provider", "status", "latency", "since", "last error"]
    cells = lines[1].split("\t")
    assert cells[:2] == ["api", "healthy"] and cells[2].endswith(" ms") and "503" in cells[4]
    doctor = await asyncio.to_thread(_cli, config, "doctor")
    assert doctor.exit_code == 0, doctor.output
    (line,) = [x for x in doctor.output.splitlines() if x.startswith("healthchecks.api")]
    assert "action api:ping\tok\t" in line and "healthy since" in line
