"""The postmark notifier against a local server built from Postmark's email API reference."""

from __future__ import annotations

import base64
import uuid

import pytest
from ductwork import Ductwork
from ductwork.errors import (
    AuthenticationError,
    ConnectionFailedError,
    HTTPStatusError,
    NotFoundError,
    ProviderError,
    ValidationError,
)
from ductwork.plugins import get_registry
from ductwork.providers import ProviderContext
from ductwork.providers.notifier import Attachment, Notification, Notifier
from ductwork.testing import NotifierSuite
from ductwork.testing.contract import Canned, one_notifier
from ductwork.testing.servers import free_port
from ductwork_postmark.notifier import PostmarkNotifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError as PydanticValidationError

pytestmark = pytest.mark.contract
CONTEXT = ProviderContext(resource="notifications.mail", env="test", provider="postmark")
BATCH = "/email/batch"


def make(server, **options) -> PostmarkNotifier:
    values = {"base_url": server.url, "server_token": server.token, "sender": "shop@example.com"}
    return PostmarkNotifier.from_options(CONTEXT, **{**values, **options})


def note(*to: str, **fields) -> Notification:
    return Notification(**{"channel": "email", "to": list(to), "subject": "Hi", "body": "text",
                           **fields})  # fmt: skip


class TestPostmarkNotifier(NotifierSuite):
    @pytest.fixture
    async def provider(self, postmark):
        async with make(postmark) as notifier:
            yield notifier

    @pytest.fixture
    def outbox(self, postmark):
        async def read():
            return postmark.notifications()

        return read


async def test_message_fields_follow_the_reference(postmark):
    async with make(postmark, tag="orders", track_opens=True, track_links="HtmlOnly",
                    message_stream="transactional") as notifier:  # fmt: skip
        receipt = await notifier.send(
            note(
                "Ada <ada@example.com>",
                html="<p>html</p>",
                sender="Shop <shop@example.com>",
                headers={"X-Order": "7"},
                attachments=[Attachment("r.csv", b"a,b\n", "text/csv")],
            )
        )
    [request] = postmark.state.requests(BATCH)
    assert request.headers["x-postmark-server-token"] == postmark.token
    assert request.headers["accept"] == "application/json"
    assert request.body == [
        {
            "From": "Shop <shop@example.com>",
            "To": "Ada <ada@example.com>",
            "Subject": "Hi",
            "TextBody": "text",
            "HtmlBody": "<p>html</p>",
            "MessageStream": "transactional",
            "Tag": "orders",
            "TrackOpens": True,
            "TrackLinks": "HtmlOnly",
            "Headers": [{"Name": "X-Order", "Value": "7"}],
            "Attachments": [
                {
                    "Name": "r.csv",
                    "Content": base64.b64encode(b"a,b\n").decode(),
                    "ContentType": "text/csv",
                }
            ],
        }
    ]
    assert receipt.to == ["Ada <ada@example.com>"] and len(receipt.provider_ids) == 1


async def test_together_sends_messages_of_at_most_50_recipients(postmark):
    many = [f"user{i}@example.com" for i in range(120)]
    async with make(postmark) as notifier:
        receipt = await notifier.send(note(*many))
    [request] = postmark.state.requests(BATCH)
    assert [len(m["To"].split(", ")) for m in request.body] == [50, 50, 20]  # no names here
    assert receipt.to == many and len(set(receipt.provider_ids)) == 3


async def test_each_sends_one_message_per_recipient(postmark):
    async with make(postmark, recipients="each") as notifier:
        receipt = await notifier.send(note("a@example.com", "b@example.com"))
    assert [m["To"] for m in postmark.sent] == ["a@example.com", "b@example.com"]
    assert len(set(receipt.provider_ids)) == 2


async def test_an_inactive_recipient_is_not_found_naming_the_address(postmark):
    postmark.inactive.add("gone@example.com")
    async with make(postmark) as notifier:
        with pytest.raises(NotFoundError, match=r"gone@example\.com.*406"):
            await notifier.send(note("gone@example.com"))


async def test_with_each_the_active_recipients_still_get_it(postmark):
    postmark.inactive.add("gone@example.com")
    async with make(postmark, recipients="each") as notifier:
        receipt = await notifier.send(note("gone@example.com", "ok@example.com"))
    assert receipt.to == ["ok@example.com"]
    assert [m["To"] for m in postmark.sent] == ["ok@example.com"]


async def test_together_names_the_inactive_and_says_the_others_were_not_sent(postmark):
    postmark.inactive.add("gone@example.com")
    async with make(postmark) as notifier:
        with pytest.raises(ProviderError, match=r"gone@example\.com.*also went to inactive"):
            await notifier.send(note("gone@example.com", "Ok <ok@example.com>"))
    assert postmark.sent == []


async def test_an_invalid_request_or_attachment_is_a_validation_error(postmark):
    async with make(postmark) as notifier:
        with pytest.raises(ValidationError, match="411"):
            await notifier.send(note("a@example.com", attachments=[Attachment("x.exe", b"MZ")]))
        postmark.state.queue(Canned(200, [{"ErrorCode": 300, "Message": "Invalid request"}]))
        with pytest.raises(ValidationError, match="300"):
            await notifier.send(note("a@example.com"))
    assert postmark.sent == []


async def test_a_bad_token_is_an_authentication_error_without_the_token(postmark):
    wrong = "wrong-" + uuid.uuid4().hex
    async with make(postmark, server_token=wrong) as notifier:
        with pytest.raises(AuthenticationError, match="ErrorCode 10") as caught:
            await notifier.send(note("a@example.com"))
    assert wrong not in str(caught.value)


async def test_rate_limit_is_a_429_with_retry_after_and_the_retry_skips_accepted(postmark):
    key = f"run:{uuid.uuid4().hex}"
    postmark.state.queue(
        Canned(429, {"ErrorCode": 429, "Message": "Rate limit exceeded"}, {"Retry-After": "2"})
    )
    async with make(postmark, recipients="each") as notifier:
        with pytest.raises(HTTPStatusError) as caught:
            await notifier.send(note("a@example.com", idempotency_key=key))
        assert (caught.value.status, caught.value.retry_after) == (429, "2")
        receipt = await notifier.send(note("a@example.com", idempotency_key=key))
        again = await notifier.send(note("a@example.com", idempotency_key=key))
    assert receipt.id == key == again.id and len(postmark.sent) == 1


async def test_a_message_refused_for_the_rate_is_retryable(postmark):
    postmark.state.queue(Canned(200, [{"ErrorCode": 429, "Message": "Rate limit exceeded"}]))
    async with make(postmark) as notifier:
        with pytest.raises(HTTPStatusError) as caught:
            await notifier.send(note("a@example.com"))
    assert caught.value.status == 429


async def test_unreachable_api_is_a_connection_failure(postmark):
    postmark = type(postmark)(postmark.state)
    async with make(postmark, base_url=f"http://127.0.0.1:{free_port()}") as notifier:
        with pytest.raises(ConnectionFailedError, match="Postmark batch"):
            await notifier.send(note("a@example.com"))


def test_options_need_a_token_and_refuse_unknown_keys():
    with pytest.raises(PydanticValidationError, match="server_token"):
        PostmarkNotifier.from_options()
    with pytest.raises(PydanticValidationError):
        PostmarkNotifier.from_options(server_token="x", recipients="some")
    with pytest.raises(PydanticValidationError):
        PostmarkNotifier.from_options(server_token="x", api_key="x")


def test_config_show_hides_the_server_token(monkeypatch, tmp_path):
    secret = "pm-" + uuid.uuid4().hex
    monkeypatch.setenv("PM_TOKEN", secret)
    config = one_notifier(
        tmp_path, "mail", {"provider": "postmark", "server_token": "${env:PM_TOKEN}"}
    )
    assert config.resolve("notifications", "mail", "prd").cls is PostmarkNotifier
    assert secret not in str(config.show("prd"))


def test_registered_as_a_notifier():
    assert get_registry().get(Notifier.kind, "postmark") is PostmarkNotifier


_LINE = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40
).filter(str.strip)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # each example finds its own message by a fresh marker
@given(subject=_LINE, content=st.binary(max_size=2000), filename=_LINE)
async def test_any_subject_and_attachment_bytes_arrive_unchanged(
    postmark, subject, content, filename
):
    marker = uuid.uuid4().hex
    async with make(postmark) as notifier:
        await notifier.send(
            note(
                "a@example.com",
                subject=f"{subject} {marker}",
                attachments=[Attachment(filename, content, "application/octet-stream")],
            )
        )
    [got] = [n for n in postmark.notifications() if marker in (n.subject or "")]
    assert got.subject == f"{subject} {marker}"
    assert [(a.filename, a.content) for a in got.attachments] == [(filename, content)]


async def test_a_configured_message_goes_out_through_dw_notifications(postmark, tmp_path):
    config = one_notifier(
        tmp_path,
        "mail",
        {
            "provider": "postmark",
            "base_url": postmark.url,
            "server_token": postmark.token,
            "sender": "shop@example.com",
        },
        messages={
            "welcome": {
                "email": {
                    "subject": "Welcome {{ name }}",
                    "body": "Hi {{ name }}",
                    "html": "<p>Hi {{ name }}</p>",
                }
            }
        },
    )
    async with Ductwork(config, env="prd") as dw:
        receipt = await dw.notifications.send(
            "mail", "welcome", to="ada@example.com", data={"name": "<Ada>"}
        )
    [got] = postmark.notifications()
    assert (got.subject, got.body, got.html) == (
        "Welcome <Ada>",
        "Hi <Ada>",
        "<p>Hi &lt;Ada&gt;</p>",
    )
    assert receipt.to == ["ada@example.com"] and len(receipt.provider_ids) == 1
