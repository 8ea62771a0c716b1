"""Running steps durably: the checkpointed core shared by declarative and code-first features.

:class:`StepRunner` holds one claimed run's stored steps. :meth:`StepRunner.step` returns a
stored result when the step already completed (a resume, a crash recovery) and otherwise
runs it — retries with backoff, timeout, ``allow_fail`` — and commits the outcome, fenced by
the lease, before returning. :meth:`sleep` and :meth:`wait` store the step as ``waiting`` and
raise :class:`Parking`; the run is parked once every concurrent branch has stopped, so no
branch's finished step is lost to the epoch the park bumps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ductwork.engine import steps as store_steps
from ductwork.engine.signals import PENDING, take_signal
from ductwork.engine.spec import RetryPolicy
from ductwork.engine.steps import FAR_FUTURE, LeaseLost, StepRow
from ductwork.engine.store import now_ms
from ductwork.errors import DuctworkError, FeatureFailedError, ValidationError

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.engine.steps import CurrentRun

__all__ = ["DONE", "Parking", "StepRunner", "gather_branches"]

DONE = ("succeeded", "skipped")


class Parking(Exception):  # control flow inside the interpreter, never escapes it
    """A branch stopped at a sleep or a wait; the run parks until ``wake_at``."""

    def __init__(self, wake_at: int) -> None:
        self.wake_at = wake_at
        super().__init__(wake_at)


@dataclass
class StepRunner:
    """Steps of one claimed run: stored results, checkpointing, parking."""

    dw: Ductwork
    cur: CurrentRun
    env: str
    stored: dict[str, StepRow]
    seen: set[str] = field(default_factory=set)
    #: the run's session (``{"tag", "id"}``), handed on to child feature runs
    session: dict[str, str] | None = None

    @property
    def run_id(self) -> str:
        """The run being executed."""
        return self.cur.claimed.id

    def idempotency_key(self, key: str) -> str:
        """What targets get to recognise a repeated call: ``<run_id>:<step_key>``."""
        return f"{self.run_id}:{key}"

    def claim_key(self, key: str) -> None:
        """Refuse a step key used twice in one run (its checkpoint would be ambiguous)."""
        if key in self.seen:
            raise ValidationError(f"step name {key!r} is used twice in one run; names are keys")
        if key.startswith(PENDING):
            raise ValidationError(f"step name {key!r}: names starting {PENDING!r} are reserved")
        self.seen.add(key)

    def done(self, key: str, allow_fail: bool = False) -> StepRow | None:
        """The stored row if the step need not run again."""
        row = self.stored.get(key)
        if row is None:
            return None
        if row.status in DONE or (row.status == "failed" and allow_fail):
            return row
        return None

    async def step(
        self,
        key: str,
        call: Callable[[], Awaitable[Any]],
        *,
        retry: RetryPolicy,
        timeout: float | None = None,
        allow_fail: bool = False,
    ) -> tuple[str, Any]:
        """Run (or recall) step ``key``: its final status and JSON output."""
        row = self.done(key, allow_fail)
        if row is not None:
            return row.status, row.output
        started = now_ms()
        attempt = 0
        while True:
            attempt += 1
            try:
                pending = call()
                result = await (asyncio.wait_for(pending, timeout) if timeout else pending)
            except (LeaseLost, Parking, FeatureFailedError):
                raise
            except Exception as exc:
                name = type(exc).__name__
                error = f"{name}: {exc}" if str(exc) else name
                if name == "TimeoutError" and timeout:
                    error = f"TimeoutError: step {key} took longer than {timeout:g}s"
                if attempt < retry.max_attempts and retry.retryable(name):
                    await store_steps.event(self.cur, "step_retry", f"{key}: {error}", attempt)
                    await asyncio.sleep(retry.delay(attempt))
                    continue
                await store_steps.checkpoint(
                    self.cur, key, "failed", attempt=attempt, error=error, started_at=started
                )
                if allow_fail:
                    return "failed", None
                raise FeatureFailedError(
                    f"step {key} failed after {attempt} attempt(s): {error}", run_id=self.run_id
                ) from exc
            output = _as_json(result)
            await store_steps.checkpoint(
                self.cur, key, "succeeded", attempt=attempt, output=output, started_at=started
            )
            return "succeeded", output

    async def skip(self, key: str) -> None:
        """Record a step whose condition was false."""
        now = now_ms()
        await store_steps.checkpoint(self.cur, key, "skipped", attempt=0, started_at=now)

    async def sleep(self, key: str, seconds: float) -> None:
        """A durable sleep: the run parks (no worker holds it) and wakes after ``seconds``."""
        row = self.stored.get(key)
        if row is not None and row.status == "succeeded":
            return
        now = now_ms()
        if row is not None and row.status == "waiting" and row.wake_at is not None:
            if now >= row.wake_at:
                await store_steps.checkpoint(
                    self.cur, key, "succeeded", attempt=1, started_at=row.started_at or now
                )
                return
            raise Parking(row.wake_at)
        wake = now + int(seconds * 1000)
        await store_steps.checkpoint(
            self.cur, key, "waiting", attempt=1, started_at=now, wake_at=wake
        )
        raise Parking(wake)

    async def wait(
        self, key: str, signal: str, timeout: float | None, *, allow_fail: bool = False
    ) -> Any:
        """Wait for signal ``signal`` (durably); its payload. Times out after ``timeout``."""
        row = self.stored.get(key)
        if row is not None and row.status == "succeeded":
            return row.output
        if row is not None and row.status == "failed" and allow_fail:
            return None
        now = now_ms()
        if row is not None and row.status == "waiting" and row.wake_at is not None:
            wake, started = row.wake_at, row.started_at or now
        else:
            wake = FAR_FUTURE if timeout is None else now + int(timeout * 1000)
            started = now
        # a signal sent before the run got here is pending: take it (else record the wait)
        got, payload = await take_signal(
            self.cur, key, signal, wake_at=wake, started_at=started, wait=now < wake
        )
        if got:
            return payload
        if now < wake:
            raise Parking(wake)
        error = f"TimeoutError: no signal {signal!r} within {timeout or 0:g}s"
        await store_steps.checkpoint(
            self.cur, key, "failed", attempt=1, error=error, started_at=started
        )
        if allow_fail:
            return None
        raise FeatureFailedError(f"step {key} failed: {error}", run_id=self.run_id)


async def gather_branches(branches: list[Awaitable[Any]]) -> list[Any]:
    """Run branches concurrently until each ends; then raise a failure, else park, else results.

    Every branch runs to its own end (so each finished step is committed), then: the first
    error other than parking is raised; else, if any branch is parking, the earliest wake.
    """
    results = await asyncio.gather(*branches, return_exceptions=True)
    parking: list[Parking] = []
    for result in results:
        if isinstance(result, Parking):
            parking.append(result)
        elif isinstance(result, BaseException):
            raise result
    if parking:
        raise Parking(min(p.wake_at for p in parking))
    return results


def _as_json(value: Any) -> Any:
    """The value as it will read back from the store (so a resume sees the same data)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError) as exc:
        raise DuctworkError(f"a step's result must be JSON data: {exc}") from None
