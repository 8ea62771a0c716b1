"""Next-fire computation around DST changes in five zones with unusual rules."""

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
