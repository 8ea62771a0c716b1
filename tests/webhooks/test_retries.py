"""The one retry loop every notifier send goes through (``dw.notifications.send``)."""

from __future__ import annotations

import asyncio

import pytest
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.engine.worker import Worker
from ductwork.errors import (
    AuthenticationError,
    ConfigError,
    ConnectionFailedError,
    HTTPStatusError,
    ProviderError,
    ValidationError,
)
from ductwork.processor._deliver import Attempt, send_policy
from ductwork.providers.notifier import retryable
from ductwork.testing.servers import free_port

from .conftest import SECRET, Receiver

FAST = {"max": 3, "backoff": 0.01, "cap": 0.05}


def _config(tmp_path, retries=FAST, **options):
    hooks = {"dev": {"provider": "webhook", "secret": SECRET, "allow_private": True, **options}}
    if retries is not None:
        hooks["retries"] = retries
    return Config.from_dict(
        {"product": "shop", "environments": ["dev"], "notifications": {"hooks": hooks}},
        root=tmp_path,
    )


@pytest.fixture
async def dw(tmp_path):
    async with Ductwork(_config(tmp_path), env="dev") as client:
        attempts: list[Attempt] = []

        async def record(attempt: Attempt) -> None:
            attempts.append(attempt)

        client.notifications.on_attempt = record
        client.attempts = attempts  # type: ignore[attr-defined]
        yield client


async def _send(dw, url, **kw):
    return await dw.notifications.send("hooks", to=url, channel="callback", body="hi", **kw)


async def test_two_503s_then_200_is_one_delivery_in_three_attempts(dw, receiver: Receiver):
    receipt = await _send(dw, f"{receiver.url}/flaky?fail=2")
    assert [a.outcome for a in dw.attempts] == ["retrying", "retrying", "delivered"]
    assert [a.number for a in dw.attempts] == [1, 2, 3]
    assert [a.status for a in dw.attempts] == [503, 503, None]
    assert dw.attempts[-1].receipt == receipt
    assert all(a.started <= a.ended for a in dw.attempts)
    assert "HTTPStatusError" in (dw.attempts[0].error or "")
    assert isinstance(dw.attempts[0].exception, HTTPStatusError)
    assert dw.attempts[-1].exception is None
    ids = {d.headers["webhook-id"] for d in receiver.state.deliveries}
    assert len(receiver.state.deliveries) == 3 and ids == {receipt.id}  # one message
    [entry] = await dw.notifications.log()  # the delivery log: one entry, every try counted
    assert (entry.status, entry.attempts, entry.provider_message_id) == ("sent", 3, receipt.id)
    assert "HTTPStatusError" in (entry.error or "")  # the last failed try's error is kept


async def test_a_400_is_not_retried(dw, receiver: Receiver):
    with pytest.raises(HTTPStatusError) as caught:
        await _send(dw, f"{receiver.url}/bad?fail=9&code=400")
    assert caught.value.status == 400 and caught.value.attempts == 1
    assert [a.outcome for a in dw.attempts] == ["failed"]
    assert receiver.state.requests["/bad"] == 1
    [entry] = await dw.notifications.log()
    assert (entry.status, entry.attempts) == ("failed", 1)


async def test_429_honours_retry_after_up_to_the_cap(tmp_path, receiver: Receiver):
    retries = {"max": 2, "backoff": 0, "cap": 0.2}  # backoff alone would wait 0
    async with Ductwork(_config(tmp_path, retries), env="dev") as dw:
        seen: list[Attempt] = []

        async def record(attempt: Attempt) -> None:
            seen.append(attempt)

        dw.notifications.on_attempt = record
        await _send(dw, f"{receiver.url}/limited?fail=1&code=429&retry_after=1")
    assert [(a.outcome, a.status, a.retry_in) for a in seen] == [
        ("retrying", 429, 0.2),
        ("delivered", None, None),
    ]


async def test_connection_refused_is_retried_then_raised(dw):
    with pytest.raises(ConnectionFailedError):
        await _send(dw, f"http://127.0.0.1:{free_port()}/nobody")
    assert [a.outcome for a in dw.attempts] == ["retrying"] * 3 + ["failed"]


async def test_validation_errors_are_not_retried(tmp_path):
    async with Ductwork(_config(tmp_path, allow_private=False), env="dev") as dw:
        with pytest.raises(ValidationError, match="public addresses only"):
            await _send(dw, "http://10.0.0.1/in")


async def test_a_failing_hook_does_not_fail_the_delivery(dw, receiver: Receiver):
    async def broken(attempt: Attempt) -> None:
        raise RuntimeError("log is down")

    dw.notifications.on_attempt = broken
    receipt = await _send(dw, f"{receiver.url}/ok")
    assert receipt.id and receiver.state.requests["/ok"] == 1


async def test_dispatched_sends_go_through_the_loop(dw, receiver: Receiver):
    delivered = asyncio.Event()

    async def record(attempt: Attempt) -> None:
        dw.attempts.append(attempt)
        if attempt.outcome == "delivered":
            delivered.set()

    dw.notifications.on_attempt = record
    await dw.notifications.dispatch(
        "hooks", to=f"{receiver.url}/later?fail=1", channel="callback", body="x"
    )
    worker = Worker(dw, await dw.jobs.store(), poll_interval=0.02, tick=0.1)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(delivered.wait(), 30)
    finally:
        worker.stop()
        await task
    assert [a.outcome for a in dw.attempts] == ["retrying", "delivered"]
    assert receiver.state.requests["/later"] == 2


def test_retries_setting_has_the_dispatch_shape(tmp_path):
    assert send_policy(None).max_retries == 3
    assert send_policy(5).max_retries == 5
    assert send_policy({"max": 1, "backoff": "2s", "cap": "1m"}).cap == 60.0
    with pytest.raises(ConfigError, match="retries"):
        _config(tmp_path, {"maximum": 3})
    with pytest.raises(ConfigError, match="retries"):
        _config(tmp_path, -1)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionFailedError("refused"), True),
        (HTTPStatusError("x", status=429), True),
        (HTTPStatusError("x", status=500), True),
        (HTTPStatusError("x", status=503, retry_after="2"), True),
        (HTTPStatusError("x", status=400), False),
        (HTTPStatusError("x", status=404), False),
        (AuthenticationError("bad token"), False),
        (ProviderError("smtp said 550"), False),
        (ValidationError("'to'[0]"), False),
        (RuntimeError("not ours"), False),
    ],
)
def test_the_notifier_contract_says_what_is_retried(error, expected):
    assert retryable(error) is expected


async def test_a_dispatched_send_refused_with_a_4xx_fails_without_engine_retries(dw, receiver):
    job = await dw.notifications.dispatch(
        "hooks",
        to=f"{receiver.url}/gone?fail=9&code=410",
        channel="callback",
        body="x",
        retries=3,
    )
    worker = Worker(dw, await dw.jobs.store(), poll_interval=0.02, tick=0.1, burst=True)
    await asyncio.wait_for(worker.run(), 60)  # burst: ends when nothing is left to run
    done = await dw.jobs.get(job.job_id)
    assert (done.status, done.attempt) == ("failed", 1)
    assert "HTTPStatusError" in (done.last_error or "")
    assert receiver.state.requests["/gone"] == 1  # neither loop sent it again
