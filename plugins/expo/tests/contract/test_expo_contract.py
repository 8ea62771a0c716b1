"""The expo notifier against a local server built from Expo's push API reference."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from ductwork.errors import (
    AuthenticationError,
    ConnectionFailedError,
    HTTPStatusError,
    NotFoundError,
    ValidationError,
)
from ductwork.plugins import get_registry
from ductwork.providers import ProviderContext
from ductwork.providers.notifier import Notification, Notifier
from ductwork.testing import NotifierSuite
from ductwork.testing.contract import Canned, one_notifier
from ductwork.testing.servers import free_port
from ductwork_expo.notifier import ExpoNotifier
from pydantic import ValidationError as PydanticValidationError

pytestmark = pytest.mark.contract
CONTEXT = ProviderContext(resource="notifications.push", env="test", provider="expo")
SEND = "/--/api/v2/push/send"


def make(url: str, **options) -> ExpoNotifier:
    return ExpoNotifier.from_options(CONTEXT, base_url=url, **options)


def note(*tokens: str, **fields) -> Notification:
    return Notification(channel="push", to=list(tokens), subject="Hi", body="Body", **fields)


def tokens(n: int) -> list[str]:
    return [f"ExponentPushToken[{i:04d}-{uuid.uuid4().hex[:8]}]" for i in range(n)]


class TestExpoNotifier(NotifierSuite):
    @pytest.fixture
    async def provider(self, expo):
        async with make(expo.url) as notifier:
            yield notifier

    @pytest.fixture
    def outbox(self, expo):
        async def read():
            return expo.notifications()

        return read


async def test_message_fields_follow_the_reference(expo):
    async with make(expo.url, sound="default", priority="high", ttl="1h", channel_id="alerts",
                    badge=3) as notifier:  # fmt: skip
        await notifier.send(note("ExponentPushToken[a]", data={"order": 7}))
    [request] = expo.state.requests(SEND)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert "gzip" in request.headers["accept-encoding"]
    assert "authorization" not in request.headers
    assert request.body == [
        {
            "to": "ExponentPushToken[a]",
            "title": "Hi",
            "body": "Body",
            "data": {"order": 7},
            "sound": "default",
            "priority": "high",
            "ttl": 3600,
            "channelId": "alerts",
            "badge": 3,
        }
    ]


async def test_batches_of_at_most_100_and_ticket_ids_in_order(expo):
    many = tokens(250)
    async with make(expo.url) as notifier:
        receipt = await notifier.send(note(*many))
    sizes = sorted(len(r.body) for r in expo.state.requests(SEND))
    assert sizes == [50, 100, 100]
    assert receipt.to == many
    assert [expo.issued[i]["to"] for i in receipt.provider_ids] == many


async def test_requests_in_flight_are_bounded_by_concurrency(expo):
    expo.state.release = threading.Event()
    async with make(expo.url, concurrency=2, batch_size=10) as notifier:
        sending = asyncio.create_task(notifier.send(note(*tokens(60))))
        assert await asyncio.to_thread(expo.state.wait_in_flight, 2)
        assert not sending.done()
        expo.state.release.set()
        receipt = await asyncio.wait_for(sending, 30)
    assert len(receipt.to) == 60
    assert expo.state.max_in_flight == 2 and len(expo.state.requests(SEND)) == 6


async def test_unregistered_device_is_not_found_naming_the_token(expo):
    gone = "ExponentPushToken[gone]"
    expo.unregistered.add(gone)
    async with make(expo.url) as notifier:
        with pytest.raises(NotFoundError, match=r"ExponentPushToken\[gone\].*DeviceNotRegistered"):
            await notifier.send(note(gone))
        # With another token accepted, the receipt lists only that one.
        receipt = await notifier.send(note(gone, "ExponentPushToken[ok]"))
    assert receipt.to == ["ExponentPushToken[ok]"] and len(receipt.provider_ids) == 1


async def test_a_message_too_big_is_invalid(expo):
    # ductwork refuses a push payload over its limit before sending; Expo's own check (4096
    # bytes, with its envelope) can still refuse one: its documented ticket, queued here.
    ticket = {"status": "error", "message": "too big", "details": {"error": "MessageTooBig"}}
    expo.state.queue(Canned(200, {"data": [ticket]}))
    async with make(expo.url) as notifier:
        with pytest.raises(ValidationError, match="MessageTooBig"):
            await notifier.send(note("ExponentPushToken[a]"))


async def test_rate_exceeded_is_a_retryable_429_and_the_retry_skips_accepted_tokens(expo):
    slow = "ExponentPushToken[busy]"
    expo.rate_limited.add(slow)
    key = f"run:{uuid.uuid4().hex}"
    async with make(expo.url) as notifier:
        with pytest.raises(HTTPStatusError, match="MessageRateExceeded") as caught:
            await notifier.send(note("ExponentPushToken[a]", slow, idempotency_key=key))
        assert caught.value.status == 429
        expo.rate_limited.clear()
        receipt = await notifier.send(note("ExponentPushToken[a]", slow, idempotency_key=key))
    sent = [m["to"] for m in expo.messages()]
    assert sent.count("ExponentPushToken[a]") == 1 and sent.count(slow) == 2
    assert receipt.id == key and receipt.to == ["ExponentPushToken[a]", slow]


async def test_a_request_refused_as_a_whole_carries_status_and_retry_after(expo):
    expo.state.queue(
        Canned(
            429,
            {"errors": [{"code": "TOO_MANY_REQUESTS", "message": "slow"}]},
            {"Retry-After": "3"},
        )
    )
    async with make(expo.url) as notifier:
        with pytest.raises(HTTPStatusError, match="TOO_MANY_REQUESTS") as caught:
            await notifier.send(note("ExponentPushToken[a]"))
    assert (caught.value.status, caught.value.retry_after) == (429, "3")
    assert caught.value.context()["resource"] == "notifications.push"


async def test_a_server_error_is_a_5xx(expo):
    expo.state.queue(Canned(503, {"errors": [{"code": "INTERNAL", "message": "down"}]}))
    async with make(expo.url) as notifier:
        with pytest.raises(HTTPStatusError) as caught:
            await notifier.send(note("ExponentPushToken[a]"))
    assert caught.value.status == 503


async def test_access_token_is_sent_and_a_wrong_one_is_refused_without_showing_it(expo):
    expo.require_token = True
    async with make(expo.url, access_token=expo.access_token) as notifier:
        await notifier.send(note("ExponentPushToken[a]"))
    assert expo.state.requests(SEND)[-1].headers["authorization"] == f"Bearer {expo.access_token}"
    wrong = "wrong-" + uuid.uuid4().hex
    async with make(expo.url, access_token=wrong) as notifier:
        with pytest.raises(AuthenticationError, match="UNAUTHORIZED") as caught:
            await notifier.send(note("ExponentPushToken[a]"))
    assert wrong not in str(caught.value)


async def test_invalid_push_credentials_are_an_authentication_error(expo):
    expo.bad_credentials.add("ExponentPushToken[a]")
    async with make(expo.url) as notifier:
        with pytest.raises(AuthenticationError, match="InvalidCredentials"):
            await notifier.send(note("ExponentPushToken[a]"))


async def test_receipts_for_ticket_ids(expo):
    async with make(expo.url) as notifier:
        receipt = await notifier.send(note(*tokens(3)))
        found = await notifier.receipts([*receipt.provider_ids, "unknown-id"])
    assert found == {i: {"status": "ok"} for i in receipt.provider_ids}


async def test_unreachable_api_is_a_connection_failure():
    async with make(f"http://127.0.0.1:{free_port()}") as notifier:
        with pytest.raises(ConnectionFailedError, match="Expo push send"):
            await notifier.send(note("ExponentPushToken[a]"))


def test_options_are_checked():
    with pytest.raises(PydanticValidationError):
        ExpoNotifier.from_options(batch_size=101)
    with pytest.raises(PydanticValidationError):
        ExpoNotifier.from_options(priority="urgent")
    with pytest.raises(PydanticValidationError):
        ExpoNotifier.from_options(api_key="x")


def test_config_show_hides_the_access_token(monkeypatch, tmp_path):
    secret = "expo-" + uuid.uuid4().hex
    monkeypatch.setenv("EXPO_TOKEN", secret)
    config = one_notifier(
        tmp_path, "push", {"provider": "expo", "access_token": "${env:EXPO_TOKEN}"}
    )
    assert config.resolve("notifications", "push", "prd").cls is ExpoNotifier
    assert secret not in str(config.show("prd"))


def test_registered_as_a_notifier():
    assert get_registry().get(Notifier.kind, "expo") is ExpoNotifier
