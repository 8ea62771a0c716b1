"""Child features: a ``feature`` step (or ``ctx.feature``) is a run of its own, awaited durably.

Step ``K`` of run ``P`` that runs feature ``C``:

1. ``K/@start`` — a checkpointed step that stores the child run (kind ``feature``,
   ``parent_run_id`` = ``P``, its id derived from the idempotency key ``P:K``, so starting it
   again finds the same run); its output is the child's run id. A child input that does not
   match the feature's schema fails this step.
2. ``K/@child`` — a durable wait for the internal signal ``@child:<child id>``: the parent
   parks (no worker holds it) while any worker runs the child.
3. ``K`` — the child's output (or its error: the step fails, ``allow_fail`` applies).

When the child's body ends for good — its output, a :class:`FeatureFailedError`, or an error
on its last attempt — its executor signals the parent *before* its own completion is
committed. If it dies in between, the child is re-run from its checkpoints (its output is
the same) and signals again, which the parent ignores. The signal machinery
(:mod:`ductwork.engine.signals`) covers the races: a child that ends before the parent parks
leaves the signal pending, and the parent's wait takes it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from ductwork.engine.signals import signal
from ductwork.engine.spec import RetryPolicy
from ductwork.errors import DuctworkError, NotFoundError, ValidationError

if TYPE_CHECKING:
    from ductwork.engine.steps import CurrentRun
    from ductwork.features.runner import StepRunner

__all__ = ["CHILD", "notify_parent", "run_child"]

CHILD = "@child:"
_ONCE = RetryPolicy(max_retries=0)


async def run_child(
    runner: StepRunner,
    key: str,
    tag: str,
    data: Any,
    *,
    allow_fail: bool = False,
    timeout: float | None = None,
) -> tuple[str, Any]:
    """Run feature ``tag`` as a child run and await its outcome; the step's status and output."""
    done = runner.done(key, allow_fail)
    if done is not None:
        return done.status, done.output

    async def start() -> str:
        started = await runner.dw.features.start(
            tag,
            data,
            idempotency_key=runner.idempotency_key(key),
            env=runner.env,
            _parent=runner.run_id,
            _bound=runner.session,  # the parent's session, if it has one
        )
        return started.run_id

    status, child_id = await runner.step(f"{key}/@start", start, retry=_ONCE, allow_fail=allow_fail)
    if status != "succeeded":  # its input was refused: recorded, and allowed to fail
        return "failed", None
    outcome = await runner.wait(f"{key}/@child", CHILD + child_id, timeout, allow_fail=allow_fail)

    async def result() -> Any:
        if outcome is None:  # the wait timed out and was allowed to fail
            raise DuctworkError(f"child run {child_id} ({tag}) did not end in time")
        status = outcome.get("status")
        if status == "cancelled":
            raise DuctworkError(f"child run {child_id} ({tag}) was cancelled")
        if status != "succeeded":
            raise DuctworkError(f"child run {child_id} ({tag}) failed: {outcome.get('error')}")
        return outcome.get("output")

    return await runner.step(key, result, retry=_ONCE, allow_fail=allow_fail)


async def notify_parent(
    cur: CurrentRun, parent: str, status: str, output: Any = None, error: str | None = None
) -> None:
    """Hand a child's final outcome to its parent run (ignored if the parent took it already)."""
    payload = {"status": status, "output": output, "error": error}
    # a parent gone or finished (cancelled) awaits nothing
    with contextlib.suppress(NotFoundError, ValidationError):
        await signal(cur.store, parent, CHILD + cur.claimed.id, payload, internal=True)
