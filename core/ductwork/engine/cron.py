"""Cron expressions and their next fire time in an IANA time zone, DST handled on purpose.

Five fields (minute hour day-of-month month day-of-week), with ``*``, lists, ranges, steps,
month and day names, and the ``@hourly`` … ``@yearly`` aliases. When both day fields are
restricted (neither is a bare ``*``) a day matches either, as POSIX cron says. A stepped
``*/n`` counts as restricted here, where Vixie cron and cronie treat any field starting with
``*`` as unrestricted: ``0 0 */2 * mon`` fires on odd days and on Mondays, not only on odd
Mondays.

Daylight saving time:

- a slot that falls in a spring-forward gap fires at the first valid instant after the gap
  (a daily 02:30 job runs at 03:00 that day; it never skips a day);
- a slot that falls in a fall-back overlap fires once, at its first occurrence, when the
  schedule is hourly or coarser (one minute value); finer schedules fire in both occurrences,
  since they stand for an interval rather than a wall-clock time.

Computed over :mod:`zoneinfo` alone: no dependency.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["Cron", "CronError"]

_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
# A DST shift is at most two hours anywhere (Antarctica/Troll); scan this far either side.
_MARGIN = timedelta(hours=3)
_MINUTE = timedelta(minutes=1)


class CronError(ValueError):
    """The expression cannot be parsed, or never matches a date."""


def _value(text: str, lo: int, hi: int, names: dict[str, int], field: str) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise CronError(
            f"{field} field: {text!r} is not a number" + (" or a name" if names else "")
        )
    number = int(text)
    if not lo <= number <= hi:
        raise CronError(f"{field} field: {number} is outside {lo}-{hi}")
    return number


def _field(text: str, lo: int, hi: int, names: dict[str, int], field: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field} field: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _value(first, lo, hi, names, field)
            end = _value(last, lo, hi, names, field)
            if start > end:
                raise CronError(f"{field} field: range {base!r} runs backwards")
        elif base:
            start = _value(base, lo, hi, names, field)
            end = hi if step_text else start
        else:
            raise CronError(f"{field} field: empty item in {text!r}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression; :meth:`next_after` gives its next fire instant in a zone."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """Parse ``expression``; :class:`CronError` says which field is wrong and why."""
        text = _ALIASES.get(expression.strip().lower(), expression.strip())
        parts = text.split()
        if len(parts) != 5:
            raise CronError(
                f"cron {expression!r} has {len(parts)} fields; expected 5 "
                "(minute hour day-of-month month day-of-week), e.g. '0 9 * * *'"
            )
        try:
            sets = [
                _field(p, lo, hi, n, f) for p, (f, lo, hi, n) in zip(parts, _FIELDS, strict=True)
            ]
        except CronError as exc:
            raise CronError(f"cron {expression!r}: {exc}") from None
        weekdays = frozenset(d % 7 for d in sets[4])
        cron = cls(
            expression=expression,
            minutes=tuple(sorted(sets[0])),
            hours=tuple(sorted(sets[1])),
            days=sets[2],
            months=sets[3],
            weekdays=weekdays,
            any_day=parts[2] == "*",
            any_weekday=parts[4] == "*",
        )
        if cron.next_local(datetime(2000, 1, 1)) is None:
            raise CronError(f"cron {expression!r} never matches a date")
        return cron

    @property
    def hourly_or_coarser(self) -> bool:
        """Fires at most once an hour: overlapping wall-clock slots then fire once."""
        return len(self.minutes) == 1

    def _day_ok(self, when: datetime) -> bool:
        dom = when.day in self.days
        dow = (when.weekday() + 1) % 7 in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return dow
        if self.any_weekday:
            return dom
        return dom or dow

    def next_local(self, start: datetime) -> datetime | None:
        """The first naive wall-clock minute at or after ``start`` that matches (None: never)."""
        t = start.replace(second=0, microsecond=0)
        if t < start:
            t += _MINUTE
        limit = t.year + 9  # covers leap days and every weekday/day-of-month combination
        while t.year <= limit:
            if t.month not in self.months:
                t = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1)
            elif not self._day_ok(t):
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)
            elif t.hour not in self.hours:
                later = [h for h in self.hours if h > t.hour]
                t = (
                    t.replace(hour=later[0], minute=0)
                    if later
                    else datetime(t.year, t.month, t.day) + timedelta(days=1)
                )
            elif t.minute not in self.minutes:
                later = [m for m in self.minutes if m > t.minute]
                t = (
                    t.replace(minute=later[0])
                    if later
                    else t.replace(minute=0) + timedelta(hours=1)
                )
            else:
                return t
        return None

    def instants(self, wall: datetime, tz: ZoneInfo) -> list[datetime]:
        """The UTC instants a matching wall-clock time ``wall`` fires at in ``tz``."""
        first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
        if first == second:
            return [first]
        lo, hi = sorted((first, second))
        if _wall(lo, tz) == wall and _wall(hi, tz) == wall:  # a fall-back overlap
            return [lo] if self.hourly_or_coarser else [lo, hi]
        return [_transition(lo, hi, tz)]  # a spring-forward gap

    def next_after(self, after: datetime, tz: str | ZoneInfo = "UTC") -> datetime | None:
        """The first fire instant (aware, UTC) strictly after ``after``, or None if never."""
        zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        after = after.astimezone(UTC)
        wall = self.next_local(_wall(after, zone) - _MARGIN)
        best: datetime | None = None
        while wall is not None:
            if best is not None and wall > _wall(best, zone) + _MARGIN:
                break
            for instant in self.instants(wall, zone):
                if instant > after and (best is None or instant < best):
                    best = instant
            wall = self.next_local(wall + _MINUTE)
        return best


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _transition(lo: datetime, hi: datetime, tz: ZoneInfo) -> datetime:
    """The instant in (lo, hi] where the zone's offset changes to the one it has at ``hi``."""
    after = hi.astimezone(tz).utcoffset()
    low, high = 0, int((hi - lo).total_seconds())
    while low < high:
        mid = (low + high) // 2
        if (lo + timedelta(seconds=mid)).astimezone(tz).utcoffset() == after:
            high = mid
        else:
            low = mid + 1
    return lo + timedelta(seconds=low)
