"""Code-first features: checkpointed steps, gather, sleep, signals, child features,
compensation strategies, and the refusal of a step name used twice."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from ductwork.errors import FeatureFailedError
from ductwork.features.inline import drive

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
    assert "child/left/nap" in keys and "child" in keys


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
