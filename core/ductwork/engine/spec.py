"""What a dispatch asks for, checked before anything is stored: schedule, retries, the Job.

No database code here: dispatch validates with these before the run store is even opened.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ductwork.config.durations import parse_duration
from ductwork.engine.cron import Cron, CronError
from ductwork.errors import ValidationError

__all__ = ["Job", "RetryPolicy", "Schedule", "parse_retries", "parse_schedule", "to_datetime"]

Misfire = Literal["skip", "latest", "all"]
_SCHEDULE_KEYS = {"start_at", "cron", "every", "tz", "limit", "end_at", "misfire", "catch_up"}
_RETRY_KEYS = {"max", "backoff", "cap", "non_retryable"}
# Failures that no retry can fix: the input or the config is wrong.
DEFAULT_NON_RETRYABLE = (
    "ValidationError",
    "InvalidKeyError",
    "NotFoundError",
    "ConfigError",
    "UnsupportedError",
    "MissingDependencyError",
)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter and a cap; some error types fail at once."""

    max_retries: int = 3
    backoff: float = 1.0
    cap: float = 300.0
    non_retryable: tuple[str, ...] = ()

    @property
    def max_attempts(self) -> int:
        """Executions allowed in all (the first one and its retries)."""
        return self.max_retries + 1

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), full jitter."""
        return random.uniform(0, min(self.cap, self.backoff * 2 ** (attempt - 1)))

    def retryable(self, error_type: str) -> bool:
        """Whether an error of that class name may be retried."""
        return error_type not in DEFAULT_NON_RETRYABLE and error_type not in self.non_retryable

    def retries(self, exc: BaseException) -> bool:
        """Whether ``exc`` may be retried: its class is retryable and it is not :func:`final`."""
        return self.retryable(type(exc).__name__) and not final(exc)

    def to_dict(self) -> dict[str, Any]:
        """As stored with the run."""
        return {
            "max": self.max_retries,
            "backoff": self.backoff,
            "cap": self.cap,
            "non_retryable": list(self.non_retryable),
        }


def final(exc: BaseException) -> bool:
    """Whether no retry can change the outcome of ``exc``, whatever its class.

    An HTTP answer 4xx other than 408 (timeout) and 429 (too many requests) says the request
    itself is wrong: a job that got one fails at once instead of sending it again.
    """
    from ductwork.errors import HTTPStatusError

    if not isinstance(exc, HTTPStatusError):
        return False
    return 400 <= exc.status < 500 and exc.status not in (408, 429)


_DEFAULT_RETRIES = RetryPolicy()


def parse_retries(value: int | Mapping[str, Any] | RetryPolicy | None) -> RetryPolicy:
    """``retries=3`` or ``{"max": 3, "backoff": "1s", "cap": "5m", "non_retryable": [...]}``."""
    if value is None:
        return _DEFAULT_RETRIES
    if isinstance(value, RetryPolicy):
        return value
    if isinstance(value, bool) or not isinstance(value, int | Mapping):
        raise ValidationError("retries must be a number of retries or a mapping")
    if isinstance(value, int):
        value = {"max": value}
    unknown = set(value) - _RETRY_KEYS
    if unknown:
        raise ValidationError(
            f"retries: unknown key(s) {', '.join(sorted(unknown))} "
            f"(allowed: {', '.join(sorted(_RETRY_KEYS))})"
        )
    try:
        max_retries = int(value.get("max", 3))
        backoff = parse_duration(value.get("backoff", 1.0))
        cap = parse_duration(value.get("cap", 300.0))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"retries: {exc}") from None
    if max_retries < 0:
        raise ValidationError("retries: max cannot be negative")
    names = value.get("non_retryable", ())
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValidationError("retries: non_retryable is a list of exception class names")
    return RetryPolicy(max_retries, backoff, cap, tuple(names))


def to_datetime(value: datetime | int | float, tz: ZoneInfo, what: str) -> datetime:
    """An aware UTC datetime from a datetime (naive = in ``tz``) or epoch milliseconds."""
    if isinstance(value, bool):
        raise ValidationError(f"{what} must be a datetime or epoch milliseconds")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=tz)).astimezone(UTC)
    raise ValidationError(f"{what} must be a datetime or epoch milliseconds, not {value!r}")


@dataclass(frozen=True)
class Schedule:
    """When a dispatched job runs: once (maybe later), on a cron, or every interval."""

    start_at: datetime | None = None
    cron: Cron | None = None
    every: float | None = None
    tz: str = "UTC"
    limit: int | None = None
    end_at: datetime | None = None
    misfire: Misfire = "all"
    catch_up: float = 3600.0

    @property
    def recurring(self) -> bool:
        """A cron or interval schedule (else one run)."""
        return self.cron is not None or self.every is not None

    def next_after(self, after: datetime) -> datetime | None:
        """The first slot strictly after ``after`` (recurring schedules), None past ``end_at``."""
        nxt: datetime | None
        if self.cron is not None:
            nxt = self.cron.next_after(after, self.tz)
        else:
            assert self.every is not None
            anchor = self.start_at or after
            if after < anchor:
                nxt = anchor
            else:
                steps = int((after - anchor).total_seconds() // self.every) + 1
                nxt = anchor + timedelta(seconds=steps * self.every)
        if nxt is not None and self.end_at is not None and nxt > self.end_at:
            return None
        return nxt

    def first(self, now: datetime) -> datetime | None:
        """The first slot (or the one-off run time)."""
        if not self.recurring:
            return self.start_at or now
        if self.every is not None and self.start_at is not None:
            return self.start_at if self.end_at is None or self.start_at <= self.end_at else None
        start = self.start_at or now
        return self.next_after(start - timedelta(microseconds=1))

    def to_dict(self) -> dict[str, Any]:
        """As stored with the schedule row."""
        return {
            "cron": self.cron.expression if self.cron else None,
            "every": self.every,
            "tz": self.tz,
            "limit": self.limit,
            "misfire": self.misfire,
            "catch_up": self.catch_up,
        }


def parse_schedule(value: Mapping[str, Any] | None, now: datetime | None = None) -> Schedule:
    """Check a ``schedule=`` mapping; :class:`ValidationError` says what is wrong."""
    now = now or datetime.now(UTC)
    if value is None:
        return Schedule()
    if not isinstance(value, Mapping):
        raise ValidationError("schedule must be a mapping such as {'cron': '0 9 * * *'}")
    unknown = set(value) - _SCHEDULE_KEYS
    if unknown:
        raise ValidationError(
            f"schedule: unknown key(s) {', '.join(sorted(unknown))} "
            f"(allowed: {', '.join(sorted(_SCHEDULE_KEYS))})"
        )
    tz_name = value.get("tz", "UTC")
    try:
        tz = ZoneInfo(str(tz_name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"schedule: unknown time zone {tz_name!r}; use an IANA name like 'America/New_York'"
        ) from None
    cron = None
    if value.get("cron") is not None:
        try:
            cron = Cron.parse(str(value["cron"]))
        except CronError as exc:
            raise ValidationError(f"schedule: {exc}") from None
    every = None
    if value.get("every") is not None:
        try:
            every = parse_duration(value["every"])
        except ValueError as exc:
            raise ValidationError(f"schedule: every: {exc}") from None
        if every <= 0:
            raise ValidationError("schedule: every must be longer than zero")
    if cron and every:
        raise ValidationError("schedule: give either cron or every, not both")
    try:
        catch_up = parse_duration(value.get("catch_up", 3600.0))
    except ValueError as exc:
        raise ValidationError(f"schedule: catch_up: {exc}") from None
    misfire = value.get("misfire", "all")
    if misfire not in ("skip", "latest", "all"):
        raise ValidationError(f"schedule: misfire {misfire!r} must be skip, latest or all")
    limit = value.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValidationError("schedule: limit must be a positive number of runs")
    start = to_datetime(value["start_at"], tz, "start_at") if "start_at" in value else None
    end = to_datetime(value["end_at"], tz, "end_at") if value.get("end_at") is not None else None
    if start is not None and start < now - timedelta(seconds=catch_up):
        raise ValidationError(
            f"schedule: start_at {start.isoformat()} is more than the catch-up window "
            f"({catch_up:g}s) in the past"
        )
    if end is not None and end <= (start or now):
        raise ValidationError("schedule: end_at must be after start_at (or now)")
    if (limit is not None or end is not None) and not (cron or every):
        raise ValidationError("schedule: limit and end_at apply to cron or every schedules")
    sched = Schedule(start, cron, every, str(tz_name), limit, end, misfire, catch_up)
    if sched.recurring and sched.first(now) is None:
        raise ValidationError("schedule: no slot falls before end_at; it would never run")
    return sched


@dataclass(frozen=True)
class Job:
    """A dispatched job: one run, or a recurring schedule that creates runs.

    ``status`` is scheduled | queued | running | succeeded | failed | cancelled | paused for a
    run, and scheduled | paused | cancelled | completed for a recurring schedule.
    """

    job_id: str
    status: str
    kind: str
    target: str
    recurring: bool
    scheduled_at: datetime | None
    next_run_at: datetime | None
    env: str = ""
    queue: str = "default"
    priority: int = 0
    attempt: int = 0
    max_attempts: int = 1
    last_error: str | None = None
    result: Any = None
    schedule_id: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    fired: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _of(cls, **values: Any) -> Job:
        """The Job ``Job(**values)`` makes, without the frozen ``__init__``.

        For the engine's converters, which name every field but ``fired`` and ``extra``: the
        frozen ``__init__`` sets each field through ``object.__setattr__``, 2 µs of every
        dispatch (``tests/engine/test_dispatch.py`` compares the two).
        """
        job = object.__new__(cls)
        job.__dict__.update({"fired": 0, "extra": {}}, **values)
        return job

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (datetimes as ISO 8601)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out
