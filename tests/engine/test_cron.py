"""Next-fire computation around DST changes in five zones with unusual rules.

Properties over invariants, and a brute-force oracle that scans every minute (bottom of file).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from ductwork.engine.cron import Cron, CronError
from hypothesis import given, settings
from hypothesis import strategies as st

ZONES = [
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # shifts by 30 minutes
    "Pacific/Chatham",  # changes at 02:45 local
    "America/Santiago",  # changes at midnight
]
# instants around each zone's DST changes, 2024-2026
starts = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)


def _transitions(zone: str) -> list[datetime]:
    tz = ZoneInfo(zone)
    out = []
    t = datetime(2024, 1, 1, tzinfo=UTC)
    while t.year < 2027:
        nxt = t + timedelta(hours=1)
        if t.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            out.append(t)
        t = nxt
    return out


TRANSITIONS = {z: _transitions(z) for z in ZONES}
near_dst = st.sampled_from(ZONES).flatmap(
    lambda z: st.tuples(
        st.just(z),
        st.sampled_from(TRANSITIONS[z]),
        st.integers(min_value=-3 * 24 * 60, max_value=24 * 60),
    ).map(lambda t: (t[0], t[1] + timedelta(minutes=t[2])))
)


def _fires(cron: Cron, zone: str, start: datetime, count: int) -> list[datetime]:
    out, t = [], start
    for _ in range(count):
        t = cron.next_after(t, zone)
        assert t is not None
        out.append(t)
    return out


@settings(max_examples=150, deadline=None)
@given(near_dst, st.integers(0, 23), st.integers(0, 59))
def test_a_daily_job_fires_once_every_local_day(where, hour, minute):
    zone, start = where
    tz = ZoneInfo(zone)
    cron = Cron.parse(f"{minute} {hour} * * *")
    fires = _fires(cron, zone, start, 6)
    days = [f.astimezone(tz).date() for f in fires]
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(days)), days
    for fire in fires:
        wall = fire.astimezone(tz).replace(tzinfo=None)
        slot = wall.replace(hour=hour, minute=minute)
        if wall != slot:  # only when the slot does not exist: then the first valid instant
            assert (
                slot.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) != slot
            )
            before = fire - timedelta(seconds=1)
            assert before.astimezone(tz).utcoffset() != fire.astimezone(tz).utcoffset()


@settings(max_examples=150, deadline=None)
@given(near_dst, st.integers(0, 59))
def test_hourly_fires_strictly_increasing_and_once_per_wall_clock_slot(where, minute):
    zone, start = where
    tz = ZoneInfo(zone)
    fires = _fires(Cron.parse(f"{minute} * * * *"), zone, start, 30)
    assert fires == sorted(set(fires)) and fires[0] > start
    walls = [f.astimezone(tz).replace(tzinfo=None, second=0) for f in fires]
    assert len(walls) == len(set(walls))  # an overlap hour fires once
    assert all(b - a <= timedelta(hours=2) for a, b in itertools.pairwise(fires))


@settings(max_examples=100, deadline=None)
@given(near_dst)
def test_quarter_hourly_covers_both_occurrences_of_an_overlap(where):
    zone, start = where
    fires = _fires(Cron.parse("*/15 * * * *"), zone, start, 24 * 4)
    gaps = {b - a for a, b in itertools.pairwise(fires)}
    # 15 minutes apart, except across a spring-forward gap (then at the first valid instant)
    assert all(g <= timedelta(minutes=15) for g in gaps), gaps


@settings(max_examples=100, deadline=None)
@given(starts, st.sampled_from(ZONES))
def test_next_after_is_the_smallest_fire_after(start, zone):
    cron = Cron.parse("30 2 * * *")
    fire = cron.next_after(start, zone)
    assert fire is not None and fire > start
    assert cron.next_after(fire - timedelta(seconds=1), zone) == fire


def test_examples_new_york():
    cron = Cron.parse("30 2 * * *")
    spring = cron.next_after(datetime(2024, 3, 10, 5, tzinfo=UTC), "America/New_York")
    assert spring == datetime(2024, 3, 10, 7, tzinfo=UTC)  # 03:00 EDT, the first valid instant
    hourly = Cron.parse("0 * * * *")
    fires = _fires(hourly, "America/New_York", datetime(2024, 11, 3, 4, tzinfo=UTC), 3)
    assert fires == [datetime(2024, 11, 3, h, tzinfo=UTC) for h in (5, 7, 8)]  # 01:00 once


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 0 31 2 *", "never matches"),
        ("61 * * * *", "minute field: 61 is outside 0-59"),
        ("* * *", "has 3 fields"),
        ("*/0 * * * *", "step"),
        ("5-1 * * * *", "backwards"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expr, message):
    with pytest.raises(CronError, match=message):
        Cron.parse(expr)


def test_names_aliases_and_either_day_rule():
    assert Cron.parse("@daily") == Cron.parse("0 0 * * *").__class__.parse("@daily")
    cron = Cron.parse("0 9 13 * fri")  # the 13th or any Friday
    fire = cron.next_after(datetime(2024, 9, 9, tzinfo=UTC), "UTC")
    assert fire == datetime(2024, 9, 13, 9, tzinfo=UTC)
    assert cron.next_after(fire, "UTC") == datetime(2024, 9, 20, 9, tzinfo=UTC)


# -- a brute-force oracle ------------------------------------------------------------------
#
# The oracle knows nothing of the engine's search: it walks UTC minute by minute, reads the
# wall clock in the zone, and applies the documented rules directly —
#   * a minute whose wall-clock time matches fires;
#   * wall-clock minutes skipped by a spring-forward jump that match fire once, at the first
#     instant after the jump (the transition instant);
#   * a wall-clock time seen before (the second pass of a fall-back overlap) fires again only
#     for schedules finer than hourly (more than one minute value).
# Expressions are generated together with the sets of values they stand for, so the oracle
# matches against those sets, not against the engine's parse.

_MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


@st.composite
def _field(draw, lo: int, hi: int, star: float, names: list[str] | None = None):
    """(text, values) of one cron field; ``star`` is the chance of a plain ``*``."""

    def name(v: int) -> str:
        if names and v - lo < len(names) and draw(st.booleans()):  # 7 (Sunday) has no name
            return names[v - lo]
        return str(v)

    if draw(st.floats(0, 1)) < star:
        return "*", set(range(lo, hi + 1))
    form = draw(st.sampled_from(["one", "list", "range", "step", "range-step", "start-step"]))
    value = st.integers(lo, hi)
    if form == "one":
        v = draw(value)
        return name(v), {v}
    if form == "list":
        vs = draw(st.lists(value, min_size=2, max_size=4, unique=True))
        return ",".join(name(v) for v in vs), set(vs)
    a, b = sorted(draw(st.tuples(value, value)))
    step = draw(st.integers(1, max(1, (hi - lo) // 2)))
    if form == "range":
        return f"{name(a)}-{name(b)}", set(range(a, b + 1))
    if form == "step":
        return f"*/{step}", set(range(lo, hi + 1, step))
    if form == "range-step":
        return f"{a}-{b}/{step}", set(range(a, b + 1, step))
    return f"{a}/{step}", set(range(a, hi + 1, step))


@st.composite
def _crons(draw):
    """A cron expression and a matcher over naive wall-clock minutes built from the same sets."""
    minute_text, minutes = draw(_field(0, 59, 0.1))
    hour_text, hours = draw(_field(0, 23, 0.35))
    dom_text, doms = draw(_field(1, 31, 0.8))
    month_text, months = draw(_field(1, 12, 0.85, _MONTH_NAMES))
    dow_text, dows = draw(_field(0, 7, 0.7, _DAY_NAMES))
    dows = {d % 7 for d in dows}  # 7 is Sunday too
    expression = f"{minute_text} {hour_text} {dom_text} {month_text} {dow_text}"

    def matches(wall: datetime) -> bool:
        dom_ok = wall.day in doms
        dow_ok = wall.isoweekday() % 7 in dows
        # The engine's rule: a day field is unrestricted only when written "*". (Vixie cron
        # looks at the first character, so it also counts "*/2" as unrestricted.)
        # With one of them unrestricted the other decides; with both restricted, either does.
        either = dom_text != "*" and dow_text != "*"
        day_ok = (dom_ok or dow_ok) if either else (dom_ok and dow_ok)
        return wall.minute in minutes and wall.hour in hours and wall.month in months and day_ok

    return expression, matches, len(minutes) == 1


def _oracle(matches, coarse: bool, zone: str, after: datetime, end: datetime, most: int):
    """The fire instants in (after, end], at most ``most`` of them, by scanning every minute."""
    tz = ZoneInfo(zone)
    # start early enough to have seen the first pass of any overlap that ``after`` is inside
    t = after.replace(second=0, microsecond=0) - timedelta(hours=4)
    seen: set[datetime] = set()
    previous = t.astimezone(tz).replace(tzinfo=None)
    fires: list[datetime] = []
    while t <= end and len(fires) < most:
        t += _MINUTE
        wall = t.astimezone(tz).replace(tzinfo=None)
        fire = matches(wall) and not (coarse and wall in seen)
        skipped = previous + _MINUTE
        while not fire and skipped < wall:  # a spring-forward jump: walls that never occur
            fire = matches(skipped)
            skipped += _MINUTE
        seen.add(wall)
        previous = wall
        if fire and after < t <= end:
            fires.append(t)
    return fires


_MINUTE = timedelta(minutes=1)
around_dst = st.sampled_from(ZONES).flatmap(
    lambda z: st.tuples(
        st.just(z),
        st.sampled_from(TRANSITIONS[z]),
        st.one_of(
            st.integers(-90 * 60, 30 * 60),  # seconds: just before, inside, just after
            st.integers(-30 * 60 * 60, 3 * 60 * 60),  # a day or so before
        ),
        st.integers(0, 999_999),
    ).map(lambda t: (t[0], t[1] + timedelta(seconds=t[2], microseconds=t[3])))
)


# 150 examples take a few seconds; 9,000 (and 3,000 more in seven further zones: Troll's 2-hour
# shift, Dublin's negative DST, Casablanca, St Johns, Tehran, Havana, Gaza) found no disagreement.
@settings(max_examples=150, deadline=None)
@given(_crons(), around_dst)
def test_next_after_agrees_with_a_brute_force_oracle(cron_case, where):
    expression, matches, coarse = cron_case
    zone, after = where
    try:
        cron = Cron.parse(expression)
    except CronError as exc:  # only when no date can ever match (e.g. 30 feb)
        assert "never matches" in str(exc)
        return
    assert cron.hourly_or_coarser == coarse
    end, most = after + timedelta(hours=40), 12
    expected = _oracle(matches, coarse, zone, after, end, most)
    fires: list[datetime] = []
    t: datetime | None = after
    while len(fires) < most:
        t = cron.next_after(t, zone)
        if t is None or t > end:
            break
        fires.append(t)
    assert fires == expected, (expression, zone, after.isoformat())


@pytest.mark.parametrize(
    ("expression", "zone", "after", "fires"),
    [
        # Lord Howe springs forward 30 minutes at 02:00 local (15:30 UTC): 02:15 runs at 02:30
        (
            "15 2 * * *",
            "Australia/Lord_Howe",
            datetime(2024, 10, 5, 12, tzinfo=UTC),
            [datetime(2024, 10, 5, 15, 30, tzinfo=UTC), datetime(2024, 10, 6, 15, 15, tzinfo=UTC)],
        ),
        # Lord Howe falls back 30 minutes at 02:00 local (15:00 UTC): 01:45 happens twice
        (
            "45 * * * *",
            "Australia/Lord_Howe",
            datetime(2024, 4, 6, 13, tzinfo=UTC),
            [datetime(2024, 4, 6, h, m, tzinfo=UTC) for h, m in ((13, 45), (14, 45), (16, 15))],
        ),
        # Santiago springs forward at midnight: the midnight slot runs at 01:00
        (
            "0 0 * * *",
            "America/Santiago",
            datetime(2024, 9, 7, 12, tzinfo=UTC),
            [datetime(2024, 9, 8, 4, tzinfo=UTC), datetime(2024, 9, 9, 3, tzinfo=UTC)],
        ),
        # Chatham springs forward at 02:45 local (14:00 UTC): 03:00 does not exist, 03:50 does
        (
            "0,50 3 * * *",
            "Pacific/Chatham",
            datetime(2024, 9, 28, 12, tzinfo=UTC),
            [datetime(2024, 9, 28, 14, 0, tzinfo=UTC), datetime(2024, 9, 28, 14, 5, tzinfo=UTC)],
        ),
        # from late in the first pass of New York's overlap (01:50 EDT) the next quarter hour
        # is 01:00 EST, ten minutes later, though it reads earlier on the wall clock
        (
            "*/15 * * * *",
            "America/New_York",
            datetime(2024, 11, 3, 5, 50, tzinfo=UTC),
            [datetime(2024, 11, 3, 6, m, tzinfo=UTC) for m in (0, 15, 30)],
        ),
        # and a finer schedule fires in both passes of an overlap (Chatham, 03:45 -> 02:45)
        (
            "*/30 * * * *",
            "Pacific/Chatham",
            datetime(2024, 4, 6, 13, 10, tzinfo=UTC),
            [datetime(2024, 4, 6, h, m, tzinfo=UTC) for h, m in ((13, 15), (13, 45), (14, 15))],
        ),
    ],
)
def test_oracle_and_engine_agree_on_worked_examples(expression, zone, after, fires):
    cron = Cron.parse(expression)
    assert _fires(cron, zone, after, len(fires)) == fires

    def matches(wall: datetime) -> bool:  # simple expressions: the parse is not in question
        return cron.next_local(wall) == wall

    end = after + timedelta(days=2)
    assert _oracle(matches, cron.hourly_or_coarser, zone, after, end, len(fires)) == fires
