"""The run store's records: new runs, claimed runs, failures, and the rows they become.

Plain data and pure helpers, shared by the store's modules (claims, outcomes, schedules,
retention) and by the features' step store.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ductwork._json import compact
from ductwork.engine.schema import run
from ductwork.engine.spec import RetryPolicy, parse_retries

__all__ = [
    "ACTIVE",
    "FINISHED",
    "NOTIFY_CHANNEL",
    "RUN_COLUMNS",
    "Claimed",
    "Failure",
    "NewRun",
    "event_row",
    "input_text",
    "inserted",
    "new_id",
    "now_ms",
    "run_values",
    "to_json",
]

NOTIFY_CHANNEL = "ductwork_jobs"
ACTIVE = ("queued", "running", "paused")
#: the statuses a run ends in (retention prunes these)
FINISHED = ("succeeded", "failed", "cancelled")


#: the run table's columns, in its order (the order a SELECT of every column returns)
RUN_COLUMNS = tuple(c.name for c in run.c)
_NULL_ROW = dict.fromkeys(RUN_COLUMNS)


def now_ms() -> int:
    """Wall-clock epoch milliseconds (the store's time unit)."""
    return int(time.time() * 1000)


def new_id(prefix: str) -> str:
    """A fresh job id: ``run_…`` for runs, ``sch_…`` for schedules.

    32 hex digits: the creation time in milliseconds (12), then 80 random bits (20). Ids in
    creation order keep the inserts of new runs and of their events at one end of the primary
    key and ``run_id`` indexes: with random ids each insert lands on a random page of indexes
    as large as the history, which stops fitting in the database's cache as history grows.

    Within one process ids only grow: an id made in the same millisecond as the one before (or
    after the clock stepped back) is that one's plus one, so "newest first" holds between two
    runs (or sends) made in quick succession.
    """
    global _last
    with _ID_LOCK:
        ms, tail = now_ms(), int.from_bytes(os.urandom(10))
        if ms <= _last[0]:
            ms, tail = _last[0], _last[1] + 1
            if tail >> 80:  # the random part ran out in this millisecond: take the next one
                ms, tail = ms + 1, 0
        _last = (ms, tail)
    return f"{prefix}_{ms:012x}{tail:020x}"


_ID_LOCK = threading.Lock()
_last: tuple[int, int] = (0, 0)


@dataclass(slots=True)
class NewRun:
    """A run to enqueue (made, then read once by :func:`run_values`).

    Not frozen: a frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``, a microsecond of every dispatch.
    """

    kind: str
    target: str
    tag: str
    env: str
    #: the run's input: a JSON object, or its JSON text when the caller encoded it already
    input: Mapping[str, Any] | str
    run_at: int
    retry: RetryPolicy
    queue: str = "default"
    priority: int = 0
    timeout: float | None = None
    dedupe_key: str | None = None
    schedule_id: str | None = None
    scheduled_for: int | None = None


@dataclass(frozen=True)
class Claimed:
    """A run a worker holds under lease ``epoch``."""

    id: str
    kind: str
    target: str
    env: str
    input: dict[str, Any]
    attempt: int
    max_attempts: int
    retry: RetryPolicy
    timeout: float | None
    epoch: int
    queue: str

    @classmethod
    def from_row(cls, r: Any) -> Claimed:
        """The claimed run from a ``RETURNING`` row of the run table."""
        return cls(
            r.id,
            r.kind,
            r.target,
            r.env,
            json.loads(r.input),
            r.attempt,
            r.max_attempts,
            parse_retries(json.loads(r.retry)),
            r.timeout,
            r.lease_epoch,
            r.queue,
        )


@dataclass(frozen=True)
class Failure:
    """A failed attempt to record: the run, its error's class name and message."""

    claimed: Claimed
    error_type: str
    message: str
    cancelled: bool = False
    final: bool = False  # no retry can help (spec.final): it fails now, attempts left or not


def run_values(new: NewRun, now: int) -> dict[str, Any]:
    """The row of a new run."""
    return {
        "id": new_id("run"),
        "kind": new.kind,
        "target": new.target,
        "tag": new.tag,
        "env": new.env,
        "input": input_text(new.input),
        "status": "queued",
        "attempt": 0,
        "max_attempts": new.retry.max_attempts,
        "retry": _retry_json(new.retry),
        "run_at": new.run_at,
        "priority": new.priority,
        "queue": new.queue,
        "timeout": new.timeout,
        "lease_epoch": 0,
        "cancel_requested": False,
        "dedupe_key": new.dedupe_key,
        "schedule_id": new.schedule_id,
        "scheduled_for": new.scheduled_for,
        "created_at": now,
    }


def input_text(value: Mapping[str, Any] | str) -> str:
    """A run's (or a schedule's) input as stored: JSON text, encoded unless it is already."""
    return value if isinstance(value, str) else compact(value)


@functools.lru_cache(maxsize=64)
def _retry_json(policy: RetryPolicy) -> str:
    """A retry policy as stored (policies are few and immutable: each encoded once)."""
    return json.dumps(policy.to_dict())


def inserted(values: dict[str, Any]) -> dict[str, Any]:
    """The row a run's insert of ``values`` made, as a SELECT of it gives it.

    The run table has no server-side defaults, so every column not given is NULL
    (``tests/engine/test_store.py`` compares it with the stored row on both databases).
    """
    return {**_NULL_ROW, **values}


def event_row(
    run_id: str,
    name: str,
    at: int,
    attempt: int = 0,
    worker_id: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    """A row of the run's timeline (``ductwork_run_event``)."""
    return {
        "run_id": run_id,
        "at": at,
        "event": name,
        "attempt": attempt,
        "worker": worker_id,
        "detail": detail,
    }


def to_json(value: Any) -> str | None:
    """A result as stored: JSON, at most 100 kB; what JSON cannot hold, as its repr."""
    if value is None:
        return None
    try:
        return json.dumps(value, default=str)[:100_000]
    except (TypeError, ValueError):
        return json.dumps(repr(value))
