"""dispatch() on every namespace: checked before anything is stored, run by a worker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from ductwork.engine.worker import Worker
from ductwork.errors import InvalidKeyError, NotFoundError, ValidationError

from .conftest import eventually


async def _stored(dw) -> int:
    return len(await dw.jobs.list())


async def test_dispatch_on_each_namespace_runs_through_a_worker(dw):
    await dw.databases.action.execute("main", "create_users_table")
    jobs = [
        await dw.storage.dispatch("files", "jobs/a.txt", b"saved later"),
        await dw.events.dispatch("bus", "user_created", {"id": 7}),
        await dw.databases.action.dispatch(
            "main", "add_user", {"id": 7, "name": "Ada", "email": "a@x"}
        ),
        await dw.databases.dispatch(
            "main",
            "UPDATE users SET name = :n WHERE id = 7",
            {"n": "B"},
            schedule={"start_at": datetime.now(UTC) + timedelta(seconds=1)},
            priority=-1,
        ),
        await dw.notifications.dispatch(
            "mail", "welcome", to="ada@example.com", data={"name": "Ada"}
        ),
    ]
    assert [j.status for j in jobs] == ["queued"] * 3 + ["scheduled", "queued"]
    assert not any(j.recurring for j in jobs)
    worker = Worker(dw, await dw.jobs.store(), poll_interval=0.02, tick=0.1)
    task = asyncio.create_task(worker.run())
    try:

        async def all_done() -> bool:
            states = [(await dw.jobs.get(j.job_id)).status for j in jobs]
            assert "failed" not in states, [await dw.jobs.get(j.job_id) for j in jobs]
            return states == ["succeeded"] * len(jobs)

        await eventually(all_done, what="every dispatched job to succeed")
    finally:
        worker.stop()
        await task
    assert await dw.storage.read_file("files", "jobs/a.txt") == b"saved later"
    assert (await dw.databases.action.execute("main", "get_user", {"id": 7}))["name"] == "B"


async def test_recurring_dispatch_returns_a_schedule_job(dw):
    job = await dw.storage.dispatch(
        "files",
        "tick.txt",
        "x",
        schedule={"cron": "0 9 * * *", "tz": "America/New_York"},
        retries={"max": 5, "backoff": "2s", "cap": "1m"},
    )
    assert job.recurring and job.status == "scheduled" and job.job_id.startswith("sch_")
    assert (
        job.next_run_at is not None
        and job.next_run_at.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York")).hour
        == 9
    )
    assert (await dw.jobs.pause(job.job_id)).status == "paused"
    assert (await dw.jobs.resume(job.job_id)).status == "scheduled"
    assert (await dw.jobs.cancel(job.job_id)).status == "cancelled"


async def test_dispatched_messages_arrive_as_given_json_or_bytes(dw):
    messages = [{"id": 7, "tags": ["a", "b"]}, b"\x00raw", bytearray(b"ba"), memoryview(b"mv")]
    got: list[tuple[bytes, str | None]] = []
    ready = asyncio.Event()

    async def handler(event) -> None:
        got.append((event.body, event.content_type))

    listening = asyncio.create_task(
        dw.events.subscribe("bus", "user_created", handler, group="g", limit=4, ready=ready)
    )
    await ready.wait()
    for message in messages:
        await dw.events.dispatch("bus", "user_created", message)
    worker = Worker(dw, await dw.jobs.store(), poll_interval=0.02, tick=0.1)
    task = asyncio.create_task(worker.run())
    try:
        assert await asyncio.wait_for(listening, 60) == 4
    finally:
        worker.stop()
        await task
    assert sorted(got, key=repr) == sorted(
        [
            (b'{"id":7,"tags":["a","b"]}', "application/json"),
            (b"\x00raw", None),
            (b"ba", None),
            (b"mv", None),
        ],
        key=repr,
    )


async def test_a_dispatched_job_is_the_job_its_fields_make(dw):
    from dataclasses import fields

    from ductwork.engine.spec import Job

    for job in (
        await dw.events.dispatch("bus", "user_created", {"id": 1}),
        await dw.events.dispatch(
            "bus",
            "user_created",
            {"id": 2},
            schedule={"start_at": datetime.now(UTC) + timedelta(hours=1)},
        ),
    ):
        made = Job(**{f.name: getattr(job, f.name) for f in fields(Job)})
        assert vars(job) == vars(made)  # every field, and nothing else
        assert vars(await dw.jobs.get(job.job_id)) == vars(made)
        with pytest.raises(AttributeError):
            job.status = "running"  # type: ignore[misc]  # still frozen


async def test_dedupe_key_returns_the_existing_job(dw):
    first = await dw.events.dispatch("bus", "user_created", {"id": 1}, dedupe_key="u1")
    second = await dw.events.dispatch("bus", "user_created", {"id": 2}, dedupe_key="u1")
    assert first == second  # the stored run's Job, not the one the refused insert would be
    assert first == await dw.jobs.get(first.job_id)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda dw: dw.storage.dispatch("nope", "k", b"x"), NotFoundError, "no storage resource"),
        (lambda dw: dw.storage.dispatch("files", "../k", b"x"), InvalidKeyError, None),
        (lambda dw: dw.events.dispatch("bus", "nope", {}), NotFoundError, "no event"),
        (
            lambda dw: dw.databases.action.dispatch("main", "add_user", {"id": "x"}),
            ValidationError,
            "id",
        ),
        (
            lambda dw: dw.notifications.dispatch("mail", "welcome", to="a@x"),
            ValidationError,
            "no value",
        ),
        (
            lambda dw: dw.storage.dispatch("files", "k", b"x", schedule={"cron": "0 25 * * *"}),
            ValidationError,
            "hour field: 25",
        ),
        (
            lambda dw: dw.storage.dispatch(
                "files", "k", b"x", schedule={"cron": "0 9 * * *", "tz": "Mars/Olympus"}
            ),
            ValidationError,
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            lambda dw: dw.storage.dispatch(
                "files", "k", b"x", schedule={"start_at": datetime(2020, 1, 1, tzinfo=UTC)}
            ),
            ValidationError,
            "in the past",
        ),
        (
            lambda dw: dw.storage.dispatch("files", "k", b"x", schedule={"every": "soon"}),
            ValidationError,
            "not a duration",
        ),
        (
            lambda dw: dw.storage.dispatch("files", "k", b"x", schedule={"evry": "1m"}),
            ValidationError,
            "unknown key",
        ),
        (
            lambda dw: dw.storage.dispatch("files", "k", b"x", retries={"max": -1}),
            ValidationError,
            "negative",
        ),
        (lambda dw: dw.caches.dispatch("hot", "k", 1), Exception, "not supported"),
        # a payload JSON cannot hold: refused when the run's input is encoded, before storing
        (
            lambda dw: dw.events.dispatch("bus", "user_created", {"at": object()}),
            ValidationError,
            r"events\.publish job's input .* not JSON-serialisable",
        ),
        (
            lambda dw: dw.events.dispatch(
                "bus", "user_created", {1, 2}, schedule={"cron": "0 9 * * *"}
            ),
            ValidationError,
            "not JSON-serialisable",
        ),
        (
            lambda dw: dw.databases.dispatch("main", "SELECT :n", {"n": datetime.now(UTC)}),
            ValidationError,
            r"databases\.execute job's input .* not JSON-serialisable",
        ),
        (
            lambda dw: dw.notifications.dispatch(
                "mail", "welcome", to="a@x", data={"name": "Ada", "at": b"\x00"}
            ),
            ValidationError,
            "not JSON-serialisable",
        ),
    ],
)
async def test_bad_dispatch_is_refused_and_nothing_is_stored(dw, call, error, message):
    with pytest.raises(error, match=message):
        await call(dw)
    assert await _stored(dw) == 0


def test_engine_section_selects_the_store_per_env(product_dir, monkeypatch):
    from ductwork.client import Ductwork
    from ductwork.config.loader import Config
    from ductwork.errors import ConfigError

    text = (product_dir / "ductwork.yaml").read_text()
    (product_dir / "ductwork.yaml").write_text(
        text + "\nengine:\n  dev: {url: 'sqlite:///jobs/dev.db', lease: 10s}\n"
        "  prd: {url: '${env:ENGINE_URL}'}\n"
    )
    monkeypatch.setenv("ENGINE_URL", "postgresql://u:hunter22@db/x")
    dw = Ductwork(Config.load(product_dir / "ductwork.yaml"), env="dev")
    assert dw.jobs.settings().url == f"sqlite:///{product_dir}/jobs/dev.db"
    assert dw.jobs.settings().lease == 10
    assert dw.jobs.settings("prd").url == "postgresql://u:hunter22@db/x"
    (product_dir / "ductwork.yaml").write_text(text + "\nengine:\n  qa: {}\n")
    with pytest.raises(ConfigError, match=r"engine\.qa"):
        Config.load(product_dir / "ductwork.yaml")


async def test_the_engine_pool_size_is_a_setting(pg_url, tmp_path):
    from ductwork.client import Ductwork
    from ductwork.config.loader import Config
    from ductwork.errors import ConfigError

    def config(pool_size: object) -> dict:
        return {
            "product": "pools",
            "environments": ["dev"],
            "engine": {"dev": {"url": pg_url, "pool_size": pool_size}},
        }

    async with Ductwork(Config.from_dict(config(3), root=tmp_path), env="dev") as dw:
        store = await dw.jobs.store()
        assert store.engine.pool.size() == 3
        assert (await dw.jobs.submit("noop", "t", "t", {})).status == "queued"
    with pytest.raises(ConfigError) as refused:
        Config.from_dict(config(0), root=tmp_path)
    assert "engine.dev.pool_size" in str(refused.value)
