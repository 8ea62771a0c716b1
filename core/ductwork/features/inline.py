"""Executing one feature run in the caller's process (``features.run(wait=True)``).

Not a second mechanism: the run is claimed by id under a lease like a worker's claim, its
steps are checkpointed with the same fencing, its lease is heartbeated while it runs, and
its outcome goes through the store's fenced ``complete_many``. If the caller dies, the lease
expires and any worker's reaper re-queues the run, which then resumes from its checkpoints.
A run that parks (sleep, wait) is left to the workers; the caller polls until it ends. Child
runs it awaits are executed here too when they are due (the workers may take them first).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from ductwork.engine.schema import run
from ductwork.engine.spec import final
from ductwork.engine.steps import CurrentRun, Parked, claim_run, current_run, wake
from ductwork.engine.store import Failure, now_ms

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.engine.store import Claimed, Store

__all__ = ["drive", "follow"]

FINISHED = ("succeeded", "failed", "cancelled")


async def drive(dw: Ductwork, store: Store, run_id: str, *, lease: float = 30.0) -> bool:
    """Claim ``run_id`` if it is queued and due, and execute it here; whether it was claimed."""
    from ductwork.engine.executors import executor_for

    worker_id = f"inline:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    claimed = await claim_run(store, run_id, worker_id, lease)
    if claimed is None:
        return False
    fn = executor_for(claimed.kind)
    task = asyncio.current_task()
    assert task is not None
    reason: list[str] = []
    beaten: list[bool] = []
    beat = asyncio.create_task(_heartbeat(store, worker_id, claimed, lease, task, reason, beaten))
    token = current_run.set(CurrentRun(store, claimed, worker_id))
    try:
        call = fn(dw, claimed.target, claimed.input, claimed.env)
        result = await (asyncio.wait_for(call, claimed.timeout) if claimed.timeout else call)
    except Parked:
        pass
    except asyncio.CancelledError:
        if not reason:
            raise
        if reason[0] == "cancel":
            await store.complete_many(
                worker_id, (), [Failure(claimed, "Cancelled", "cancelled", cancelled=True)]
            )
        task.uncancel()
    except TimeoutError:
        message = f"timed out after {claimed.timeout:g}s"
        await store.complete_many(worker_id, (), [Failure(claimed, "TimeoutError", message)])
    except Exception as exc:
        failure = Failure(claimed, type(exc).__name__, str(exc), final=final(exc))
        await store.complete_many(worker_id, (), [failure])
    else:
        await store.complete_many(worker_id, [(claimed, result)], ())
    finally:
        current_run.reset(token)
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        if beaten:
            with contextlib.suppress(Exception):
                await store.remove_worker(worker_id)
    return True


async def _heartbeat(
    store: Store,
    worker_id: str,
    claimed: Claimed,
    lease: float,
    task: asyncio.Task[Any],
    reason: list[str],
    beaten: list[bool],
) -> None:
    """Extend the lease while the run executes; stop it when cancelled or its lease is lost."""
    while True:
        await asyncio.sleep(lease / 3)
        beaten.append(True)  # a worker row now exists: removed when the run ends
        held = await store.heartbeat(worker_id, lease, held=[claimed.id])
        found = held.get(claimed.id)
        if found is None or found[0] != claimed.epoch:
            reason.append("lost")
            task.cancel()
            return
        if found[1]:
            reason.append("cancel")
            task.cancel()
            return


async def _drive_children(dw: Ductwork, store: Store, run_id: str, lease: float) -> bool:
    """Execute here the child runs (and theirs) the run awaits and that are due; any ran."""
    from sqlalchemy import select

    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(run.c.id).where(
                run.c.parent_run_id == run_id, run.c.status == "queued", run.c.run_at <= now_ms()
            )
        )
        children = [r.id for r in rows]
    ran = False
    for child in children:
        ran = await drive(dw, store, child, lease=lease) or ran
        ran = await _drive_children(dw, store, child, lease) or ran
    return ran


async def follow(
    dw: Ductwork, store: Store, run_id: str, timeout: float | None, *, lease: float = 30.0
) -> Any:
    """Execute the run here whenever it is due (also after a sleep), until it ends; its row.

    While it waits for a signal (or is held by a worker) this polls; ``timeout`` bounds it.
    """
    from sqlalchemy import select

    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.005
    while True:
        if await drive(dw, store, run_id, lease=lease):
            delay = 0.005
        if await _drive_children(dw, store, run_id, lease):
            delay = 0.005
            continue  # a child that ended re-queued its parent
        async with store.engine.connect() as conn:
            row = (await conn.execute(select(run).where(run.c.id == run_id))).one()
        if row.status in FINISHED:
            return row
        if row.status == "waiting" and row.run_at <= now_ms():
            await wake(store, run_id)
            continue
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(
                f"feature run {run_id} did not finish within {timeout:g}s (it is {row.status}); "
                "it goes on: see features.output(run_id)"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)
