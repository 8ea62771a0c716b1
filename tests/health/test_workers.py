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


# Generous: on a loaded 2-core machine two fresh worker processes may take a minute to import.
async def _until(check: Any, what: str, timeout: float = 180.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)  # polling the store: leave the CPU to the workers


def _worker(config: Path, n: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTWORK_")}
    env["PYTHONUNBUFFERED"] = "1"
    log = (config.parent / f"worker-{n}.log").open("w")  # a file: a full pipe never blocks it
    return subprocess.Popen(
        [sys.executable, "-m", "ductwork", "--config", str(config), "worker", "--grace", "20"],
        cwd=config.parent,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _logs(config: Path) -> str:
    return "\n".join(p.read_text()[-3000:] for p in sorted(config.parent.glob("worker-*.log")))


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
        workers = [_worker(config, 1), _worker(config, 2)]

        async def status(expected: str) -> bool:
            assert all(w.poll() is None for w in workers), _logs(config)
            return (await dw.health.status())["api"].status == expected

        def alerts(n: int) -> Any:
            async def check() -> bool:
                mails = read_outbox(outbox) if outbox.exists() else []
                return len(mails) >= n and len(events) >= n

            return check

        try:
            await _until(lambda: status("healthy"), f"the first probes {_logs(config)}")
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
            for w in workers:
                await asyncio.to_thread(w.wait, timeout=60)
            stop.set()
            await asyncio.wait_for(subscriber, 30)
        assert [w.returncode for w in workers] == [0, 0], _logs(config)

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

    # one run per slot, slots whole intervals apart; each request to the server is one of them
    slots = sorted(p.scheduled_for for p in probes if p.status != "queued")
    assert len(slots) == len(set(slots)), probes
    assert all((b - a) % INTERVAL_MS == 0 for a, b in itertools.pairwise(slots)), probes
    assert len([p for p in probes if p.status == "succeeded"]) >= 7, probes
    results = [json.loads(p.result) for p in probes if p.result]
    answered = [r for r in results if r["ok"] or "503" in (r["error"] or "")]
    assert len(answered) <= probed.pings <= len(slots), results  # a timed-out one may not reach
    # a probe whose later slot was recorded first (two workers, two slots at once) is stale
    assert row.probes == len([r for r in results if r["status"] is not None]) >= 1
    # one alert of each kind per change, none per probe; unknown -> healthy is not announced
    changes = [json.loads(e.body) for e in events]
    first = changes[0]["change"]
    assert first in (1, 2) and (first == 1) == (changes[0]["previous"] == "unknown")
    assert [c["change"] for c in changes] == list(range(first, row.changes + 1))
    assert all(a["status"] == b["previous"] != b["status"] for a, b in itertools.pairwise(changes))
    assert row.status == changes[-1]["status"] == "healthy"
    assert sorted((r.kind, r.status) for r in alert_runs) == sorted(
        [("events.publish", "succeeded"), ("notifications.send", "succeeded")] * len(changes)
    )
    mails = read_outbox(outbox)
    assert [m.subject for m in mails] == [f"api is {c['status']}" for c in changes]
    down = next(m for m in mails if m.subject == "api is unhealthy" and "503" in m.body)
    assert "healthy -> unhealthy" in down.body
    if all(r["ok"] or "503" in (r["error"] or "") for r in results):  # nothing but the outage
        assert [(c["previous"], c["status"]) for c in changes] == [
            ("healthy", "unhealthy"),
            ("unhealthy", "healthy"),
        ]

    # what a person sees: `ductwork health` and `ductwork doctor`
    shown = await asyncio.to_thread(_cli, config, "health")
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].split("\t") == ["provider", "status", "latency", "since", "last error"]
    cells = lines[1].split("\t")
    assert cells[:2] == ["api", "healthy"] and cells[2].endswith(" ms") and cells[4]
    doctor = await asyncio.to_thread(_cli, config, "doctor")
    assert doctor.exit_code == 0, doctor.output
    (line,) = [x for x in doctor.output.splitlines() if x.startswith("healthchecks.api")]
    assert "action api:ping\tok\t" in line and "healthy since" in line
