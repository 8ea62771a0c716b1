"""The delivery log in the run store, on SQLite and Postgres: states, filters, plans, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ductwork._redact import register_secret
from ductwork.engine import deliveries
from ductwork.engine.deliveries import Pending, prune, query, recipient_key, start
from ductwork.engine.records import now_ms
from ductwork.engine.schema import notification
from ductwork.errors import ProviderError, ValidationError
from ductwork.providers.notifier import Receipt
from sqlalchemy import event, update

from .conftest import plan_of


async def _send(store, to=("ada@example.com",), **fields: Any) -> Pending:
    values = {
        "notifier": "mail",
        "message": "welcome",
        "env": "dev",
        "channel": "email",
        "provider": "mailbox",
        "to": list(to),
        "data": {"name": "Ada"},
    }
    return await start(store, **{**values, **fields})


async def _one(store, entry: Pending):
    [found] = [d for d in await query(store, limit=1000) if d.id == entry.id]
    return found


async def test_a_send_goes_pending_then_sent_with_the_provider_message_id(store):
    entry = await _send(store)
    pending = await _one(store, entry)
    assert (pending.status, pending.attempts, pending.finished_at) == ("pending", 0, None)
    await entry.attempt(receipt=Receipt("msg-1", "email", ["ada@example.com"]))
    sent = await _one(store, entry)
    assert (sent.status, sent.attempts, sent.provider_message_id) == ("sent", 1, "msg-1")
    assert sent.message == "mail:welcome" and sent.notification == "mail"
    assert sent.finished_at is not None and sent.finished_at >= sent.created_at
    assert sent.duration is not None and sent.duration >= 0
    assert sent.error is None


async def test_attempts_that_will_be_retried_stay_pending_then_fail_with_the_last_error(store):
    entry = await _send(store)
    await entry.attempt(error=ProviderError("timed out"), retrying=True)
    retrying = await _one(store, entry)
    assert (retrying.status, retrying.attempts) == ("pending", 1)
    assert retrying.error == "ProviderError: timed out"
    await entry.attempt(error=ProviderError("refused"))
    failed = await _one(store, entry)
    assert (failed.status, failed.attempts, failed.error) == ("failed", 2, "ProviderError: refused")
    assert failed.finished_at is not None


async def test_a_key_seen_again_is_the_same_entry_counting_every_try(store):
    first = await _send(store, idempotency_key="run_1:notify")
    await first.attempt(error=ProviderError("down"))
    again = await _send(store, idempotency_key="run_1:notify")
    assert again.id == first.id
    assert (await _one(store, again)).status == "pending"
    await again.attempt(receipt=Receipt("m", "email", ["ada@example.com"]))
    found = await _one(store, again)
    assert (found.status, found.attempts, found.error) == ("sent", 2, "ProviderError: down")


async def test_data_and_errors_are_stored_with_secrets_redacted(store):
    register_secret("sk-live-0123456789")
    entry = await _send(
        store,
        data={
            "name": "Ada",
            "api_key": "abc",
            "nested": {"Password": "pw", "note": "sk-live-0123456789"},
        },
        to=["https://hook:s3cr3t@example.com/in"],
        channel="callback",
    )
    await entry.attempt(error=ProviderError("rejected key sk-live-0123456789"))
    found = await _one(store, entry)
    assert found.data == {
        "name": "Ada",
        "api_key": "***",
        "nested": {"Password": "***", "note": "***"},
    }
    assert found.to == ["https://hook:***@example.com/in"]
    assert "sk-live" not in (found.error or "")


async def test_filters_newest_first_by_status_message_notifier_and_recipient(store):
    a = await _send(store, to=["Ada Lovelace <Ada@Example.com>", "bob@example.com"])
    b = await _send(store, message=None, to=["bob@example.com"])
    c = await _send(store, notifier="sms", message="code", channel="sms", to=["+14155550100"])
    await a.attempt(receipt=Receipt("1", "email", []))
    await b.attempt(error=ProviderError("x"))

    async def ids(**filters: Any) -> list[str]:
        return [d.id for d in await query(store, **filters)]

    assert await ids() == [c.id, b.id, a.id]
    assert await ids(limit=2) == [c.id, b.id]
    assert await ids(status="sent") == [a.id]
    assert await ids(status="failed") == [b.id]
    assert await ids(status="pending") == [c.id]
    assert await ids(message="mail:welcome") == [a.id]
    assert await ids(message="mail") == [b.id, a.id]
    assert await ids(message="sms:code") == [c.id]
    assert await ids(recipient="ada@example.com") == [a.id]
    assert await ids(recipient="ADA <ada@EXAMPLE.com>") == [a.id]
    assert await ids(recipient="bob@example.com") == [b.id, a.id]
    assert await ids(recipient="bob@example.com", status="failed") == [b.id]
    assert await ids(recipient="+14155550100") == [c.id]
    assert (await query(store, message="mail"))[0].message is None  # b was ad hoc


async def test_since_and_until_bound_the_creation_time(store):
    old = await _send(store)
    new = await _send(store)
    past = now_ms() - 3_600_000
    async with store.tx() as conn:  # the id carries its creation time: age it as a whole
        await conn.execute(
            update(notification)
            .where(notification.c.id == old.id)
            .values(id=f"ntf_{past:012x}{old.id[16:]}", created_at=past)
        )
    hour_ago = datetime.now(UTC) - timedelta(minutes=30)
    assert [d.id for d in await query(store, since=hour_ago)] == [new.id]
    [older] = await query(store, until=hour_ago)
    assert older.created_at < hour_ago
    with pytest.raises(ValidationError, match="timezone-aware"):
        await query(store, since=datetime.now())  # naive on purpose


async def test_bad_filters_are_refused(store):
    with pytest.raises(ValidationError, match="not a delivery status"):
        await query(store, status="done")
    with pytest.raises(ValidationError, match="limit"):
        await query(store, limit=0)


async def test_prune_removes_entries_past_their_age_with_their_recipients(store):
    await _send(store)
    kept = await _send(store)
    removed = await prune(store, 60.0, batch=1, now=now_ms() + 120_000)
    assert removed == 2
    assert await query(store) == []
    later = await _send(store)
    assert await prune(store, 60.0) == 0
    assert [d.id for d in await query(store, recipient="ada@example.com")] == [later.id]
    assert kept.id != later.id


def test_recipient_keys_normalise_email_addresses_only():
    assert recipient_key(" Ada <Ada@Example.COM> ") == "ada@example.com"
    assert recipient_key("+14155550100") == "+14155550100"
    assert recipient_key("https://Hooks.example.com/In") == "https://Hooks.example.com/In"
    assert recipient_key("Device-Token") == "Device-Token"


# -- every read is served by an index, sorting nothing ----------------------------------------

FILTERS: dict[str, dict[str, Any]] = {
    "all": {},
    "status": {"status": "failed"},
    "message": {"message": "mail:welcome"},
    "notifier": {"message": "mail"},
    "recipient": {"recipient": "ada@example.com"},
    "since": {"since": datetime.now(UTC) - timedelta(hours=1)},
    "status_since": {"status": "sent", "since": datetime.now(UTC) - timedelta(hours=1)},
}


async def test_every_filter_reads_an_index_and_sorts_nothing(store):
    for _ in range(3):
        await _send(store)
    captured: list[tuple[str, Any]] = []

    def before(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().startswith("SELECT") and "ductwork_notification" in statement:
            captured.append((statement, params))

    sync = store.engine.sync_engine
    event.listen(sync, "before_cursor_execute", before)
    plans: dict[str, tuple[str, Any]] = {}
    try:
        for name, filters in FILTERS.items():
            captured.clear()
            await deliveries.query(store, **filters)
            plans[name] = captured[-1]
        captured.clear()
        await prune(store, 3600.0)
        plans["prune"] = captured[-1]
    finally:
        event.remove(sync, "before_cursor_execute", before)
    for name, (statement, params) in plans.items():
        plan = await plan_of(store, statement, params)
        if store.dialect == "sqlite":
            assert "TEMP B-TREE" not in plan, (name, plan)  # nothing sorted
            assert "USING" in plan, (name, plan)  # an index, not the table
        else:
            assert "Sort" not in plan, (name, plan)
            assert "Seq Scan" not in plan, (name, plan)


async def test_the_workers_pruner_prunes_the_log_by_its_own_age(store):
    from ductwork.config.models import EngineSettings
    from ductwork.engine.retention import prune_round

    entry = await _send(store)
    ages = {"succeeded": 7 * 86400.0, "notifications": 3600.0}
    assert await prune_round(store, ages, 100) == 0  # an hour has not passed
    async with store.tx() as conn:  # created two hours ago (the id carries the time)
        past = now_ms() - 7_200_000
        await conn.execute(
            update(notification)
            .where(notification.c.id == entry.id)
            .values(id=f"ntf_{past:012x}{entry.id[16:]}", created_at=past)
        )
    assert await prune_round(store, ages, 100) == 1
    assert await query(store) == []
    assert await prune_round(store, {"notifications": None}, 100) == 0  # forever
    assert EngineSettings().retention.notifications == 30 * 86400.0


async def test_the_outcome_is_recorded_once_whoever_reports_it(store):
    entry = await _send(store)
    await entry.attempt(error=ProviderError("one"), retrying=True)
    await entry.attempt(error=ProviderError("two"))  # the retry loop's hook, last try
    await entry.attempt(error=ProviderError("two"))  # and the caller's except
    await entry.attempt(receipt=Receipt("late", "email", []))
    found = await _one(store, entry)
    assert (found.status, found.attempts, found.error) == ("failed", 2, "ProviderError: two")


async def test_attempts_written_behind_the_send_land_before_the_store_closes(url):
    from ductwork.engine.store import Store

    store = await Store.open(url)
    entry = await _send(store, idempotency_key="run_9:notify")
    await entry.attempt(receipt=Receipt("m-9", "email", ["ada@example.com"]))  # not awaited
    await store.close()  # settles what is still behind
    reopened = await Store.open(url)
    try:
        found = await _one(reopened, entry)
        assert (found.status, found.attempts, found.provider_message_id) == ("sent", 1, "m-9")
        assert deliveries._KEYED.get(store, {}) == {}  # nothing kept once written
    finally:
        await reopened.close()
