"""Code-first features: checkpointed steps, gather, sleep, signals, child features,
compensation strategies, and the refusal of a step name used twice."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from ductwork.errors import FeatureFailedError
from ductwork.features.inline import FINISHED, drive

sys.path.insert(0, str(Path(__file__).parent))

import features_app
import features_code


@pytest.fixture
async def dw(url: str, tmp_path: Path):
    async with features_app.client(url, tmp_path) as client:
        yield client


@pytest.fixture(autouse=True)
def _calls():
    features_code.reset()


async def test_steps_run_once_and_survive_a_park(dw):
    handle = await dw.features.run("onboard", {"amount": 5, "wait": True}, wait=False)
    store = await dw.jobs.store()
    await drive(dw, store, handle.run_id)  # parks in the zero-length sleep
    assert (await dw.features.output(handle.run_id)).status == "waiting"
    await dw.features.resume(handle.run_id)  # a waiting run's sleep ends now
    await drive(dw, store, handle.run_id)  # parks again: waiting for the signal
    assert (await dw.features.output(handle.run_id)).status == "waiting"
    await dw.features.signal(handle.run_id, "approved", {"ok": True})
    await drive(dw, store, handle.run_id)  # parks again: awaiting its child run
    waiting = await dw.features.output(handle.run_id)
    assert waiting.status == "waiting"
    child_id = next(s["output"] for s in waiting.steps if s["key"] == "child/@start")
    child = await dw.features.output(child_id)
    assert child.tag == "parallel" and child.parent_run_id == handle.run_id
    assert await drive(dw, store, child_id)  # its outcome re-queues the parent
    assert (await dw.features.output(handle.run_id)).status == "queued"
    await drive(dw, store, handle.run_id)
    shown = await dw.features.output(handle.run_id)
    assert shown.status == "succeeded", shown.error
    assert shown.output == {
        "charged": {"charged": 5},
        "items": ["a", "b"],
        "approval": {"ok": True},
        "child": [0.3, 0.3],
    }
    # each side effect once, across three executions of the run
    assert features_code.CALLS == ["charge:5", "reserve:a", "reserve:b"]
    keys = [s["key"] for s in shown.steps]
    assert "child" in keys and not any(k.startswith("child/left") for k in keys)
    assert "left/nap" in [s["key"] for s in (await dw.features.output(child_id)).steps]


async def test_a_failure_compensates_completed_steps_newest_first(dw):
    with pytest.raises(FeatureFailedError, match="card declined"):
        await dw.features.run("onboard", {"amount": 7, "fail": True})
    assert features_code.CALLS[-3:] == ["release:b", "release:a", "refund:7"]
    runs = await dw.features.list("onboard")
    events = [e for e in (await dw.features.output(runs[0].job_id)).timeline]
    compensated = [e["detail"] for e in events if e["detail"] and "compensate:" in e["detail"]]
    assert compensated == ["compensate:reserve-b", "compensate:reserve-a", "compensate:charge"]


@pytest.mark.parametrize(
    ("tag", "undone"),
    [("critical", ["release:b"]), ("checkpointed", ["release:b"]), ("keep", [])],
)
async def test_compensation_strategies(dw, tag, undone):
    with pytest.raises(FeatureFailedError):
        await dw.features.run(tag)
    assert [c for c in features_code.CALLS if c.startswith("release")] == undone


async def test_a_step_name_used_twice_is_refused(dw):
    with pytest.raises(FeatureFailedError, match="step name 'same' is used twice"):
        await dw.features.run("twice")
    assert features_code.CALLS == ["charge:1"]


async def test_a_signal_landing_between_the_wait_and_the_park_requeues_the_run(dw):
    handle = await dw.features.run("early", wait=False)
    store = await dw.jobs.store()
    assert await drive(dw, store, handle.run_id)  # parks with the signal already pending
    parked = await dw.features.output(handle.run_id)
    assert parked.status == "queued"  # not left waiting for a signal it already has
    assert await drive(dw, store, handle.run_id)
    done = await dw.features.output(handle.run_id)
    assert done.status == "succeeded" and done.output == {"got": {"n": 1}, "sent": "sent"}


async def test_a_failed_child_run_fails_its_step_unless_allowed_to(dw):
    with pytest.raises(FeatureFailedError, match=r"step hard failed.*child run .* card declined"):
        await dw.features.run("parent-of-failing")
    [parent] = await dw.features.list("parent-of-failing")
    shown = await dw.features.output(parent.job_id)
    status = {s["key"]: s["status"] for s in shown.steps}
    assert status["soft"] == "failed" and status["hard"] == "failed"  # soft: the run went on
    children = await dw.features.list("failing-child")
    assert sorted(c.status for c in children) == ["failed", "failed"]
    for child in children:
        assert (await dw.features.output(child.job_id)).parent_run_id == parent.job_id


async def test_workers_run_a_child_while_its_parent_is_parked(dw):
    from ductwork.engine.worker import Worker

    handle = await dw.features.run("nest", wait=False)
    store = await dw.jobs.store()
    worker = Worker(dw, store, concurrency=4, poll_interval=0.01, scheduler=False)
    task = asyncio.create_task(worker.run())
    try:
        while (shown := await dw.features.output(handle.run_id)).status not in FINISHED:
            await asyncio.sleep(0.01)  # polling the run's state: the condition itself
    finally:
        worker.stop()
        await task
    assert shown.status == "succeeded" and shown.output == [0.3, 0.3]
    [kid] = await dw.features.list("parallel")
    assert (await dw.features.output(kid.job_id)).parent_run_id == handle.run_id
    events = [e["event"] for e in shown.timeline]
    assert "parked" in events  # no worker held the parent while the child ran


async def _parked_parent_and_child(dw, allow_fail: bool) -> tuple[str, str]:
    """A parent parked on its child run, the child parked on a signal nobody sends."""
    handle = await dw.features.run("parent-of-waiter", allow_fail, wait=False)
    store = await dw.jobs.store()
    await drive(dw, store, handle.run_id)  # starts the child, parks awaiting it
    parent = await dw.features.output(handle.run_id)
    child_id = next(s["output"] for s in parent.steps if s["key"] == "kid/@start")
    await drive(dw, store, child_id)  # parks on its wait
    assert (await dw.features.output(child_id)).status == "waiting"
    assert (await dw.features.output(handle.run_id)).status == "waiting"
    return handle.run_id, child_id


async def test_cancelling_a_parent_cancels_its_child_runs(dw):
    parent_id, child_id = await _parked_parent_and_child(dw, allow_fail=False)
    shown = await dw.features.cancel(parent_id)
    assert shown.status == "cancelled"
    child = await dw.features.output(child_id)
    assert child.status == "cancelled"
    assert any("parent run" in (e.get("detail") or "") for e in child.timeline)


@pytest.mark.parametrize("allow_fail", [False, True])
async def test_a_child_cancelled_alone_ends_its_parents_wait(dw, allow_fail):
    parent_id, child_id = await _parked_parent_and_child(dw, allow_fail=allow_fail)
    assert (await dw.features.cancel(child_id)).status == "cancelled"
    assert (await dw.features.output(parent_id)).status == "queued"  # woken, not left waiting
    await drive(dw, await dw.jobs.store(), parent_id)
    parent = await dw.features.output(parent_id)
    kid = next(s for s in parent.steps if s["key"] == "kid")
    assert kid["status"] == "failed" and "was cancelled" in kid["error"]
    assert parent.status == ("succeeded" if allow_fail else "failed")
