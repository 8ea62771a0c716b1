"""Step checkpoints in the run store: fenced by the lease epoch, alone and in a group commit."""

from __future__ import annotations

import asyncio

import pytest
from ductwork.engine.steps import CurrentRun, LeaseLost, checkpoint, load_steps
from ductwork.engine.store import NewRun, now_ms
from ductwork.features.plan import RUN_RETRY


async def _claimed(store, n: int = 1):
    await store.enqueue_many(
        [NewRun("feature", "f", "f", "dev", {"input": {}}, now_ms(), RUN_RETRY) for _ in range(n)]
    )
    return await store.claim("w1", n, lease=30)


async def _rows(store, run_id):
    async with store.engine.connect() as conn:
        return await load_steps(conn, run_id)


async def test_a_checkpoint_is_refused_once_the_lease_is_lost(store):
    (c,) = await _claimed(store)
    cur = CurrentRun(store, c, "w1")
    await checkpoint(cur, "s/one", "succeeded", attempt=1, output={"a": 1}, started_at=now_ms())
    assert (await _rows(store, c.id))["s/one"].output == {"a": 1}
    await store.release("w1", [(c.id, c.epoch)])  # the run is no longer this worker's
    with pytest.raises(LeaseLost):
        await checkpoint(cur, "s/two", "succeeded", attempt=1, started_at=now_ms())
    with pytest.raises(LeaseLost):  # nor may it overwrite what it wrote before
        await checkpoint(cur, "s/one", "failed", attempt=2, error="x", started_at=now_ms())
    rows = await _rows(store, c.id)
    assert set(rows) == {"s/one"} and rows["s/one"].status == "succeeded"


async def test_a_group_commit_fences_each_row_by_its_own_run(store):
    runs = await _claimed(store, 3)
    stale = runs[1]
    await store.release("w1", [(stale.id, stale.epoch)])
    results = await asyncio.gather(
        *(
            checkpoint(
                CurrentRun(store, c, "w1"), "s/x", "succeeded", attempt=1, started_at=now_ms()
            )
            for c in runs
        ),
        return_exceptions=True,
    )
    assert [isinstance(r, LeaseLost) for r in results] == [False, True, False]
    assert [bool(await _rows(store, c.id)) for c in runs] == [True, False, True]
