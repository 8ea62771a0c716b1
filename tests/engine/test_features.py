"""Feature runs through ``dw.features`` on SQLite and Postgres: run, output, replay, resume,
cancel, signal, retries, bad input (refused, nothing stored)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ductwork.client import Ductwork
from ductwork.engine.schema import run, step
from ductwork.errors import FeatureFailedError, NotFoundError, ValidationError
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parent))  # features_app: the product's functions module

import features_app


@pytest.fixture
async def dw(url: str, tmp_path: Path):
    async with features_app.client(url, tmp_path) as client:
        yield client


async def _rows(dw: Ductwork) -> tuple[int, int]:
    store = await dw.jobs.store()
    async with store.engine.connect() as conn:
        runs = (await conn.execute(select(func.count()).select_from(run))).scalar_one()
        steps = (await conn.execute(select(func.count()).select_from(step))).scalar_one()
    return runs, steps


async def test_run_checkpoints_each_step_and_returns_the_output(dw):
    out = await dw.features.run("three", {"tag": "a"})
    assert out == {"last": "a:three"}
    runs = await dw.features.list("three")
    assert [r.status for r in runs] == ["succeeded"]
    shown = await dw.features.output(runs[0].job_id)
    assert [(s["key"], s["status"], s["attempts"]) for s in shown.steps] == [
        ("main/one", "succeeded", 1),
        ("main/two", "succeeded", 1),
        ("main/three", "succeeded", 1),
    ]
    assert shown.input == {"tag": "a"} and shown.output == out
    events = [e["event"] for e in shown.timeline]
    assert events[0] == "enqueued" and events[-1] == "succeeded"
    assert events.count("step_succeeded") == 3
    for what in ("a:one", "a:two", "a:three"):
        assert await features_app.count(dw.side_url, what) == 1


async def test_sequences_of_one_layer_run_concurrently(dw):
    assert await dw.features.run("parallel") == [0.3, 0.3]
    shown = await dw.features.output((await dw.features.list("parallel"))[0].job_id)
    by_key = {s["key"]: s for s in shown.steps}
    left, right = by_key["left/nap"], by_key["right/nap"]
    # overlapping intervals: each started before the other ended
    assert left["started_at"] < right["finished_at"] and right["started_at"] < left["finished_at"]
    first, last = by_key["first/go"], by_key["last/sum"]
    assert first["finished_at"] <= min(left["started_at"], right["started_at"])
    assert last["started_at"] >= max(left["finished_at"], right["finished_at"])


async def test_idempotency_key_returns_the_same_run(dw):
    first = await dw.features.run("three", {"tag": "k"}, wait=False, idempotency_key="order-1")
    again = await dw.features.run("three", {"tag": "k"}, wait=False, idempotency_key="order-1")
    assert first.run_id == again.run_id and first.created and not again.created
    assert await dw.features.run("three", {"tag": "k"}, idempotency_key="order-1") == {
        "last": "k:three"
    }
    assert await features_app.count(dw.side_url, "k:one") == 1
    assert await _rows(dw) == (1, 3)


async def test_step_retries_allow_fail_and_a_failed_run_resumes(dw, tmp_path):
    with pytest.raises(FeatureFailedError, match="s/hard failed after 1 attempt") as caught:
        await dw.features.run("flaky")
    run_id = caught.value.run_id
    shown = await dw.features.output(run_id)
    assert shown.status == "failed"
    by_key = {s["key"]: s for s in shown.steps}
    assert by_key["s/try"]["status"] == "succeeded" and by_key["s/try"]["attempts"] == 3
    assert by_key["s/soft"]["status"] == "failed" and "planned failure" in by_key["s/soft"]["error"]
    assert [e["event"] for e in shown.timeline].count("step_retry") == 2
    # a succeeded step does not run again on resume: make "hard" pass, resume the same run
    (tmp_path / "fails-hard").write_text("99")
    await dw.features.resume(run_id, wait=True)
    resumed = await dw.features.output(run_id)
    assert resumed.status == "succeeded"
    assert {s["key"]: s["attempts"] for s in resumed.steps}["s/try"] == 3
    with pytest.raises(ValidationError, match=r"it is succeeded.*replay"):
        await dw.features.resume(run_id)


async def test_replay_makes_a_new_run_reusing_steps_before_from_step(dw):
    await dw.features.run("three", {"tag": "r"})
    original = (await dw.features.list("three"))[0].job_id
    out = await dw.features.replay(original, from_step="main/three", wait=True)
    assert out == {"last": "r:three"}
    assert await features_app.count(dw.side_url, "r:one") == 1  # reused, not re-run
    assert await features_app.count(dw.side_url, "r:three") == 2
    runs = await dw.features.list("three")
    assert len(runs) == 2
    replayed = await dw.features.output(runs[0].job_id)
    assert replayed.forked_from == original
    with pytest.raises(NotFoundError, match="no feature run"):
        await dw.features.replay("run_unknown")
    with pytest.raises(ValidationError, match="no stored step 'main/nope'"):
        await dw.features.replay(original, from_step="main/nope")


async def test_wait_parks_the_run_and_a_signal_resumes_it(dw):
    handle = await dw.features.run("approval", {"who": "ann"}, wait=False)
    with pytest.raises(TimeoutError):  # it parks: nobody holds it until the signal
        await dw.features.run("approval", {"who": "ann"}, timeout=0.2)
    store = await dw.jobs.store()
    from ductwork.features.inline import drive

    assert await drive(dw, store, handle.run_id)
    parked = await dw.features.output(handle.run_id)
    assert parked.status == "waiting"
    assert parked.steps[0]["status"] == "waiting" and parked.steps[0]["signal"] == "approved"
    with pytest.raises(ValidationError, match="not waiting for signal 'nope'"):
        await dw.features.signal(handle.run_id, "nope", {})
    await dw.features.signal(handle.run_id, "approved", {"by": "bob"})
    assert await drive(dw, store, handle.run_id)
    done = await dw.features.output(handle.run_id)
    assert done.status == "succeeded" and done.output == "ann by bob"
    with pytest.raises(ValidationError, match="not waiting"):
        await dw.features.signal(handle.run_id, "approved", {"by": "bob"})


async def test_cancel_a_waiting_run_then_resume_it(dw):
    handle = await dw.features.run("approval", {"who": "c"}, wait=False)
    from ductwork.features.inline import drive

    await drive(dw, await dw.jobs.store(), handle.run_id)
    assert (await dw.features.cancel(handle.run_id)).status == "cancelled"
    resumed = await dw.features.resume(handle.run_id)
    assert resumed.status == "queued"
    await drive(dw, await dw.jobs.store(), handle.run_id)
    assert (await dw.features.output(handle.run_id)).status == "waiting"


@pytest.mark.parametrize(
    ("tag", "data", "error", "match"),
    [
        ("thre", {"tag": "x"}, NotFoundError, "no feature 'thre'; did you mean 'three'"),
        ("three", {}, ValidationError, "input does not match.*tag: Field required"),
        ("three", {"tag": 1, "extra": 2}, ValidationError, "extra: Extra inputs"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_stored(dw, tag, data, error, match):
    with pytest.raises(error, match=match):
        await dw.features.run(tag, data)
    with pytest.raises(error, match=match):
        await dw.features.dispatch(tag, data)
    assert await _rows(dw) == (0, 0)


async def test_refusals_on_runs_store_nothing(dw):
    with pytest.raises(NotFoundError):
        await dw.features.signal("run_nope", "approved", {})
    with pytest.raises(NotFoundError):
        await dw.features.resume("run_nope")
    assert await _rows(dw) == (0, 0)


async def test_dispatch_schedules_a_feature_run(dw):
    later = datetime.now(UTC) + timedelta(hours=1)
    job = await dw.features.dispatch("three", {"tag": "d"}, schedule={"start_at": later})
    assert job.kind == "feature" and job.status == "scheduled"
    assert (await dw.features.list("three"))[0].job_id == job.job_id


async def test_a_signal_sent_before_the_wait_is_kept_and_consumed(dw):
    handle = await dw.features.run("approval", {"who": "eve"}, wait=False)  # queued, not waiting
    shown = await dw.features.signal(handle.run_id, "approved", {"by": "dan"})
    assert [(s["key"], s["status"]) for s in shown.steps] == [("@signal:approved", "pending")]
    with pytest.raises(ValidationError, match="already pending"):
        await dw.features.signal(handle.run_id, "approved", {"by": "someone else"})
    with pytest.raises(ValidationError, match="has no wait for it"):
        await dw.features.signal(handle.run_id, "nope", {})
    from ductwork.features.inline import drive

    assert await drive(dw, await dw.jobs.store(), handle.run_id)  # never parks
    done = await dw.features.output(handle.run_id)
    assert done.status == "succeeded" and done.output == "eve by dan"
    assert [s["key"] for s in done.steps] == ["s/approved", "s/done"]  # the pending one taken
    assert "parked" not in [e["event"] for e in done.timeline]
