"""The fcm notifier against a local FCM v1 API and token endpoint built from Google's reference."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from ductwork.errors import (
    AuthenticationError,
    ConfigError,
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
from ductwork_fcm.notifier import FCMNotifier, read_fcm_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import RSAKey
from pydantic import ValidationError as PydanticValidationError

pytestmark = pytest.mark.contract
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
CONTEXT = ProviderContext(resource="notifications.push", env="test", provider="fcm")


def make(fcm, **options) -> FCMNotifier:
    values = {"base_url": fcm.url, "credentials": fcm.credentials()}
    return FCMNotifier.from_options(CONTEXT, **{**values, **options})


def note(*tokens: str, **fields) -> Notification:
    return Notification(channel="push", to=list(tokens), subject="Hi", body="Body", **fields)


def send_path(fcm) -> str:
    return "/v1/projects/ductwork-test/messages:send"


class TestFCMNotifier(NotifierSuite):
    @pytest.fixture
    async def provider(self, fcm):
        async with make(fcm) as notifier:
            yield notifier

    @pytest.fixture
    def outbox(self, fcm):
        async def read():
            return fcm.notifications()

        return read


async def test_message_follows_the_v1_reference(fcm):
    async with make(fcm, android_priority="high", android_channel_id="orders", ttl="10m") as n:
        receipt = await n.send(note("tok-a", data={"order": 7, "kind": "paid", "x": {"y": 1}}))
    [request] = fcm.state.requests(send_path(fcm))
    assert request.headers["authorization"].startswith("Bearer ya29.")
    assert request.body == {
        "message": {
            "token": "tok-a",
            "notification": {"title": "Hi", "body": "Body"},
            "data": {
                "order": "7",
                "kind": "paid",
                "x": '{"y":1}',
                "ductwork_json": '["order","x"]',
            },
            "android": {
                "priority": "high",
                "ttl": "600s",
                "notification": {"channel_id": "orders"},
            },
        }
    }
    assert receipt.provider_ids[0].startswith("projects/ductwork-test/messages/")


async def test_the_access_token_is_exchanged_once_and_cached(fcm):
    async with make(fcm) as notifier:
        await notifier.send(note("tok-a", "tok-b"))
        await notifier.send(note("tok-c"))
    assert fcm.exchanges() == 1
    [exchange] = fcm.state.requests("/token")
    assert "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in exchange.body


async def test_a_token_near_its_expiry_is_not_reused(fcm):
    fcm.expires_in = 30  # inside the one-minute margin: never cached
    async with make(fcm) as notifier:
        await notifier.send(note("tok-a"))
        await notifier.send(note("tok-b"))
    assert fcm.exchanges() == 2


async def test_a_revoked_cached_token_is_renewed_once(fcm):
    async with make(fcm) as notifier:
        await notifier.send(note("tok-a"))
        fcm.issued.clear()  # the server forgets the token it issued
        receipt = await notifier.send(note("tok-b"))
    assert receipt.to == ["tok-b"] and fcm.exchanges() == 2


async def test_one_request_per_token_bounded_by_concurrency(fcm):
    async with make(fcm, concurrency=3) as notifier:
        await notifier.send(note("tok-warm"))  # the access token is cached from here on
        fcm.state.release = threading.Event()
        sending = asyncio.create_task(notifier.send(note(*[f"tok-{i}" for i in range(8)])))
        assert await asyncio.to_thread(fcm.state.wait_in_flight, 3)
        assert not sending.done()
        fcm.state.release.set()
        receipt = await asyncio.wait_for(sending, 30)
    assert len(fcm.state.requests(send_path(fcm))) == 9 and len(receipt.to) == 8
    assert fcm.state.max_in_flight == 3


async def test_unregistered_token_is_not_found_naming_it(fcm):
    fcm.unregistered.add("tok-gone")
    async with make(fcm) as notifier:
        with pytest.raises(NotFoundError, match=r"tok-gone.*UNREGISTERED"):
            await notifier.send(note("tok-gone"))
        receipt = await notifier.send(note("tok-gone", "tok-ok"))
    assert receipt.to == ["tok-ok"]


async def test_invalid_argument_is_a_validation_error(fcm):
    async with make(fcm) as notifier:
        await notifier.send(note("tok-warm"))  # the access token is cached from here on
        with pytest.raises(ValidationError, match="INVALID_ARGUMENT"):
            # FCM refuses a data value that is not a string; the notifier never sends one, so
            # the server is told to answer the documented error for this request.
            fcm.state.queue(
                Canned(
                    400,
                    {
                        "error": {
                            "code": 400,
                            "status": "INVALID_ARGUMENT",
                            "message": "Invalid value at 'message.data'",
                            "details": [{"@type": FCM_ERROR, "errorCode": "INVALID_ARGUMENT"}],
                        }
                    },
                )
            )
            await notifier.send(note("tok-a"))


async def test_quota_and_unavailable_are_retryable_with_retry_after(fcm):
    fcm.quota.add("tok-busy")
    key = f"run:{uuid.uuid4().hex}"
    async with make(fcm) as notifier:
        with pytest.raises(HTTPStatusError, match="QUOTA_EXCEEDED") as caught:
            await notifier.send(note("tok-a", "tok-busy", idempotency_key=key))
        assert (caught.value.status, caught.value.retry_after) == (429, "30")
        fcm.quota.clear()
        fcm.unavailable.add("tok-busy")
        with pytest.raises(HTTPStatusError) as again:
            await notifier.send(note("tok-a", "tok-busy", idempotency_key=key))
        assert again.value.status == 503
        fcm.unavailable.clear()
        receipt = await notifier.send(note("tok-a", "tok-busy", idempotency_key=key))
    assert receipt.to == ["tok-a", "tok-busy"]
    assert [m["token"] for m in fcm.sent].count("tok-a") == 1  # retries skipped the accepted one


async def test_a_refused_service_account_is_an_authentication_error_without_the_key(fcm):
    other = RSAKey.generate_key(2048).as_pem(private=True).decode()
    async with make(fcm, credentials=fcm.credentials(private_key=other)) as notifier:
        with pytest.raises(AuthenticationError, match="push@ductwork-test") as caught:
            await notifier.send(note("tok-a"))
    assert "PRIVATE KEY" not in str(caught.value) and other[40:80] not in str(caught.value)


async def test_a_data_key_the_notifier_writes_is_refused_before_sending(fcm):
    async with make(fcm) as notifier:
        with pytest.raises(ValidationError, match="ductwork_json"):
            await notifier.send(note("tok-a", data={"ductwork_json": "mine"}))
    assert fcm.sent == []


def test_credentials_must_be_a_service_account_key(fcm):
    with pytest.raises(PydanticValidationError, match="not JSON"):
        FCMNotifier.from_options(credentials="not json")
    with pytest.raises(PydanticValidationError, match="client_email"):
        FCMNotifier.from_options(credentials='{"type": "service_account"}')


async def test_a_private_key_that_does_not_load_is_a_config_error(fcm):
    notifier = make(fcm, credentials=fcm.credentials(private_key="-----BEGIN nothing"))
    with pytest.raises(ConfigError, match="private_key"):
        await notifier.open()


async def test_unreachable_api_is_a_connection_failure(fcm):
    notifier = make(fcm, credentials=fcm.credentials(token_uri=f"http://127.0.0.1:{free_port()}/t"))
    async with notifier:
        with pytest.raises(ConnectionFailedError, match="OAuth token exchange"):
            await notifier.send(note("tok-a"))


def test_config_show_hides_the_service_account(monkeypatch, tmp_path, fcm):
    monkeypatch.setenv("FCM_KEY", fcm.credentials())
    config = one_notifier(tmp_path, "push", {"provider": "fcm", "credentials": "${env:FCM_KEY}"})
    assert config.resolve("notifications", "push", "prd").cls is FCMNotifier
    assert "PRIVATE KEY" not in str(config.show("prd"))


def test_registered_as_a_notifier():
    assert get_registry().get(Notifier.kind, "fcm") is FCMNotifier


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # each example's message is found by its own token
@given(
    data=st.dictionaries(
        st.text(min_size=1, max_size=10).filter(lambda k: k != "ductwork_json"), _JSON, max_size=5
    )
)
async def test_any_data_arrives_as_strings_that_read_back_exactly(fcm, data):
    token = f"tok-{uuid.uuid4().hex}"
    async with make(fcm) as notifier:
        await notifier.send(note(token, data=data))
    [message] = [m for m in fcm.sent if m["token"] == token]
    wire = message.get("data", {})
    assert all(isinstance(v, str) for v in wire.values())
    assert read_fcm_data(wire) == data
