"""The monitor in process: probes of every kind, thresholds, compare-and-set, status reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.engine.worker import Worker
from ductwork.health.monitor import install, record
from ductwork.health.probes import ProbeResult, run_probe

from .conftest import Probed, product


async def _until(check, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _client(tmp_path: Path, probed: Probed, engine_url: str, **kw) -> Ductwork:
    config = product(tmp_path, probed.url, engine_url, **kw)
    return Ductwork(Config.from_dict(config, root=tmp_path))


async def test_every_probe_kind_answers(tmp_path: Path, probed: Probed):
    config = product(tmp_path, probed.url, f"sqlite:///{tmp_path}/engine.db")
    config["databases"]["main"]["actions"] = {"one": {"query": "select 1 as one"}}
    config["features"] = {
        "check": {
            "sequences": [
                {"tag": "s", "steps": [{"tag": "one", "type": "database", "target": "main:one"}]}
            ]
        }
    }
    config["healthchecks"] = {
        "api": {"probe": {"action": "api:ping"}},
        "db": {"probe": {"database": "main"}},
        "db-action": {"probe": {"database": "main:one"}},
        "files": {"probe": {"storage": "files"}},
        "bus": {"probe": {"publish": "bus:probe"}},
        "feature": {"probe": {"feature": "check"}},
    }
    async with Ductwork(Config.from_dict(config, root=tmp_path)) as dw:
        checks = dw.config.product.healthchecks
        results = {tag: await run_probe(dw, checks[tag], "dev") for tag in checks}
        assert all(r.ok for r in results.values()), results
        assert probed.pings == 1
        probed.status = 503
        failed = await run_probe(dw, checks["api"], "dev")
        assert not failed.ok and "503" in (failed.error or "")
        assert probed.pings == 2  # one attempt: no retries inside a probe
        slow = checks["api"].model_copy(update={"probe": {"action": "api:slow"}, "timeout": 0.2})
        late = await run_probe(dw, slow, "dev")
        assert (late.ok, late.latency, late.error) == (False, 0.2, "no answer within 0.2s")


async def test_a_worker_probes_and_status_reads_it(tmp_path: Path, probed: Probed, engine_url: str):
    async with _client(tmp_path, probed, engine_url, alert=False) as dw:
        assert (await dw.health.status())["api"].status == "unknown"
        assert await install(dw) == 1
        assert await install(dw) == 0  # idempotent: the schedule stays
        store = await dw.jobs.store()
        worker = Worker(dw, store, poll_interval=0.05, tick=0.1)
        task = asyncio.create_task(worker.run())
        try:

            async def healthy() -> bool:
                return (await dw.health.status())["api"].status == "healthy"

            await _until(healthy, what="healthy")
            probed.status = 503

            async def down() -> bool:
                return not await dw.health.healthy("api")

            await _until(down, what="unhealthy")
            state = (await dw.health.status())["api"]
            assert "503" in (state.last_error or "")
            assert state.since is not None and state.latency is not None
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)


async def test_a_stale_or_repeated_slot_changes_nothing(
    tmp_path: Path, probed: Probed, engine_url: str
):
    async with _client(tmp_path, probed, engine_url, failures=1, alert=False) as dw:
        await install(dw)
        store = await dw.jobs.store()
        defn = dw.config.product.healthchecks["api"]
        bad = ProbeResult(False, 0.1, "down")
        # two workers applying the same slot at once: exactly one applies it
        outcomes = await asyncio.gather(
            *(record(store, "dev", "api", defn, bad, slot=1000) for _ in range(4))
        )
        assert outcomes.count("unhealthy") == 1 and outcomes.count(None) == 3
        # an older slot finishing late changes nothing
        assert await record(store, "dev", "api", defn, ProbeResult(True, 0.1), slot=999) is None
        dw.health.max_age = 0
        assert (await dw.health.status())["api"].status == "unhealthy"


async def test_a_changed_or_removed_check_replaces_or_removes_its_schedule(
    tmp_path: Path, probed: Probed, engine_url: str
):
    from ductwork.engine.schema import health, schedule
    from sqlalchemy import select

    async def schedules(dw: Ductwork) -> list[tuple[str, str, str]]:
        store = await dw.jobs.store()
        async with store.engine.connect() as conn:
            rows = await conn.execute(select(schedule.c.id, schedule.c.status, schedule.c.spec))
            return sorted((r.status, r.id, r.spec) for r in rows)

    async with _client(tmp_path, probed, engine_url, alert=False) as dw:
        assert await install(dw) == 1
        ((status, first, spec),) = await schedules(dw)
        assert status == "active" and '"every": 1.0' in spec
    async with _client(tmp_path, probed, engine_url, alert=False, interval="2s") as dw:
        assert await install(dw) == 1
        found = await schedules(dw)
        assert [s[0] for s in found] == ["active", "cancelled"] and found[1][1] == first
        assert '"every": 2.0' in found[0][2]
    config = product(tmp_path, probed.url, engine_url)
    config.pop("healthchecks")
    async with Ductwork(Config.from_dict(config, root=tmp_path)) as dw:
        assert await install(dw) == 0
        assert [s[0] for s in await schedules(dw)] == ["cancelled", "cancelled"]
        store = await dw.jobs.store()
        async with store.engine.connect() as conn:
            assert (await conn.execute(select(health))).all() == []


async def test_healthy_answers_from_the_last_read_when_the_store_is_gone(
    tmp_path: Path, probed: Probed, private_pg: str, caplog
):
    import asyncpg

    async with _client(tmp_path, probed, private_pg, failures=1, alert=False) as dw:
        await install(dw)
        defn = dw.config.product.healthchecks["api"]
        await record(await dw.jobs.store(), "dev", "api", defn, ProbeResult(False, 0.1), slot=1)
        dw.health.max_age = 0
        assert await dw.health.healthy("api") is False
        base, name = private_pg.rsplit("/", 1)
        conn = await asyncpg.connect(f"{base}/postgres", timeout=5)
        try:
            await conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
        finally:
            await conn.close()
        assert await dw.health.healthy("api") is False  # the last state read
        assert "health state unreadable" in caplog.text
