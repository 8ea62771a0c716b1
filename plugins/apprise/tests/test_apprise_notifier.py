"""The apprise notifier against real servers: HTTP (json://, form://), SMTP, MQTT, Matrix."""

from __future__ import annotations

import asyncio
import threading
import uuid
from email import message_from_bytes, policy

import httpx
import paho.mqtt.client as mqtt
import pytest
from ductwork.errors import (
    ConfigError,
    ConnectionFailedError,
    HTTPStatusError,
    ProviderError,
    UnsupportedError,
)
from ductwork.plugins import get_registry
from ductwork.providers import ProviderContext
from ductwork.providers.notifier import Attachment, Notification, Notifier
from ductwork.testing import NotifierSuite
from ductwork.testing.contract import one_notifier
from ductwork.testing.servers import free_port
from ductwork_apprise.notifier import AppriseNotifier
from pydantic import ValidationError as PydanticValidationError

CONTEXT = ProviderContext(resource="notifications.alerts", env="test", provider="apprise")


def make(*urls, channels=("push",), **options) -> AppriseNotifier:
    return AppriseNotifier.from_options(
        CONTEXT, urls=list(urls), channels=list(channels), **options
    )


def hook(receiver, path: str) -> str:
    """A json:// URL posting to ``path`` on the receiver, recipients in the X-To header."""
    return receiver.url.replace("http://", "json://") + path + "?+X-To={to}"


class TestAppriseNotifier(NotifierSuite):
    """Push, SMS and callback, each through its own json:// URL (Apprise sends one body, so the
    suite's email case, which wants distinct text and HTML parts, is covered below instead)."""

    @pytest.fixture
    async def provider(self, receiver):
        targets = [
            {"url": hook(receiver, f"/in/{channel}"), "channels": [channel]}
            for channel in ("push", "sms", "callback")
        ]
        async with make(*targets, channels=("push", "sms", "callback")) as notifier:
            yield notifier

    @pytest.fixture
    def outbox(self, receiver):
        async def read():
            return receiver.notifications()

        return read

    # Apprise carries a title and a body, never structured data: the suite's push and callback
    # cases (which expect ``data`` back) are replaced by these, which check what Apprise carries.
    async def _title_and_body_arrive_without_data(self, provider, receiver, channel):
        marker = uuid.uuid4().hex
        to = {"push": "device-token-1", "callback": "https://hooks.example.com/in"}[channel]
        note = Notification(
            channel=channel, to=[to], subject="Shipped", body=f"Order 7 {marker}", data={"id": 7}
        )
        receipt = await provider.send(note)
        assert receipt.channel == channel
        [got] = [n for n in receiver.notifications() if marker in n.body]
        assert (got.channel, got.to, got.subject, got.body) == (
            channel,
            [to],
            "Shipped",
            f"Order 7 {marker}",
        )
        assert got.data == {}

    async def test_push_carries_title_body_and_data(self, provider, receiver):
        await self._title_and_body_arrive_without_data(provider, receiver, "push")

    async def test_callback_carries_its_data(self, provider, receiver):
        await self._title_and_body_arrive_without_data(provider, receiver, "callback")


def _note(marker: str, **fields) -> Notification:
    values = {"channel": "push", "to": ["device-1"], "subject": f"t {marker}", "body": marker}
    return Notification(**{**values, **fields})


async def test_json_carries_title_body_and_attachments(receiver):
    marker = uuid.uuid4().hex
    async with make(hook(receiver, "/plain")) as notifier:
        receipt = await notifier.send(
            _note(
                marker, to=["a b/c", "d"], attachments=[Attachment("r.csv", b"a,b\n", "text/csv")]
            )
        )
    [got] = [a for a in receiver.at("/plain") if a.payload["message"] == marker]
    assert got.payload["title"] == f"t {marker}"
    assert got.headers["x-to"] == "a b/c,d"  # each recipient quoted into the URL, then unquoted
    [attached] = got.payload["attachments"]
    assert (attached["filename"], attached["mimetype"]) == ("r.csv", "text/csv")
    assert receipt.to == ["a b/c", "d"] and receipt.channel == "push"


async def test_form_posts_fields_and_files(receiver):
    marker = uuid.uuid4().hex
    url = receiver.url.replace("http://", "form://") + "/form"
    async with make(url) as notifier:
        await notifier.send(
            _note(marker, attachments=[Attachment("a.bin", b"\x00\x01", "application/x-y")])
        )

    [got] = [a for a in receiver.at("/form") if a.payload.get("message") == marker]
    assert got.payload["title"] == f"t {marker}"
    assert list(got.files.values()) == [b"\x00\x01"]


async def test_email_through_mailto_reaches_a_real_smtp_server(smtp):
    marker = uuid.uuid4().hex
    url = f"mailto://127.0.0.1:{smtp.port}?to={{to}}&from=alerts@example.com&mode=insecure"
    note = Notification(
        channel="email",
        to=["ada@example.com", "Bob <bob@example.com>"],
        subject=f"Hello {marker}",
        body="plain",
        html=f"<p>html <b>{marker}</b></p>",
        attachments=[Attachment("report.csv", b"a,b\n1,2\n", "text/csv")],
    )
    async with make(url, channels=("email",)) as notifier:
        receipt = await notifier.send(note)
    assert receipt.to == note.to
    got = [m for m in smtp.messages if marker in m.message["Subject"]]
    # Apprise sends one message per recipient.
    assert sorted(r for m in got for r in m.rcpt_tos) == ["ada@example.com", "bob@example.com"]
    msg = message_from_bytes(got[0].content, policy=policy.default)
    html = msg.get_body(("html",))
    text = msg.get_body(("plain",))
    assert html is not None and f"<b>{marker}</b>" in html.get_content()
    assert text is not None and marker in text.get_content()  # Apprise derives it from the HTML
    [attached] = list(msg.iter_attachments())
    assert attached.get_filename() == "report.csv"
    assert attached.get_content() in (b"a,b\n1,2\n", "a,b\n1,2\n")


async def test_mqtt_through_a_real_mosquitto(mosquitto):
    received: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    arrived = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *_: c.subscribe("alerts/#", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()

    def on_message(_c, _u, message):
        received.append((message.topic, message.payload))
        arrived.set()

    client.on_message = on_message
    client.connect("127.0.0.1", mosquitto)
    client.loop_start()
    try:
        assert await asyncio.to_thread(subscribed.wait, 10)
        marker = uuid.uuid4().hex
        async with make(f"mqtt://127.0.0.1:{mosquitto}/alerts/{{to}}?qos=1") as notifier:
            await notifier.send(_note(marker, to=["kitchen"]))
        assert await asyncio.to_thread(arrived.wait, 10)
    finally:
        client.loop_stop()
        client.disconnect()
    [(topic, payload)] = received
    assert topic == "alerts/kitchen" and marker in payload.decode()


async def test_matrix_room_on_a_real_synapse(synapse):
    marker = uuid.uuid4().hex
    url = f"matrix://{synapse.user}:{synapse.password}@127.0.0.1:{synapse.port}/{{to}}"
    async with make(url) as notifier:
        await notifier.send(_note(marker, to=["#alerts"]))
    async with httpx.AsyncClient(base_url=synapse.url, timeout=30) as http:
        auth = {"Authorization": f"Bearer {synapse.token}"}
        room = (await http.get("/_matrix/client/v3/directory/room/%23alerts:localhost")).json()
        path = f"/_matrix/client/v3/rooms/{room['room_id']}/messages"
        events = (await http.get(path, params={"dir": "b", "limit": 20}, headers=auth)).json()
    bodies = [
        e["content"].get("body", "") for e in events["chunk"] if e["type"] == "m.room.message"
    ]
    assert any(marker in body for body in bodies)


async def test_a_failing_url_is_named_without_its_secret(receiver):
    receiver.answers["/down"] = (503, {"Retry-After": "7"})
    secret = "tok3n-" + uuid.uuid4().hex
    good = hook(receiver, "/fine")
    bad = receiver.url.replace("http://", f"json://user:{secret}@") + "/down"
    async with make(good, bad) as notifier:
        with pytest.raises(HTTPStatusError) as caught:
            await notifier.send(_note(uuid.uuid4().hex))
    err = caught.value
    assert err.status == 503
    assert "urls[1]" in str(err) and "urls[0]" not in str(err).split("accepted")[0]
    assert secret not in str(err) and secret not in err.body
    assert err.context()["resource"] == "notifications.alerts"


async def test_a_token_in_the_path_is_never_shown(receiver):
    receiver.answers["/hooks/tok-secret-path"] = (500, {})
    url = receiver.url.replace("http://", "json://") + "/hooks/tok-secret-path"
    async with make(url) as notifier:
        with pytest.raises(HTTPStatusError, match=r"urls\[0\] \(JSON, json://127\.0\.0\.1:\d+\)"):
            await notifier.send(_note("x"))
        with pytest.raises(HTTPStatusError) as caught:
            await notifier.send(_note("y"))
    assert "tok-secret-path" not in str(caught.value) and caught.value.status == 500


async def test_an_unreachable_url_is_a_connection_failure():
    async with make(f"json://127.0.0.1:{free_port()}/x") as notifier:
        with pytest.raises(ConnectionFailedError, match=r"urls\[0\]"):
            await notifier.send(_note("x"))


async def test_a_service_past_the_timeout_is_a_connection_failure(receiver):
    receiver.release = threading.Event()  # the receiver holds the request until released
    try:
        async with make(hook(receiver, "/held"), timeout=0.5) as notifier:
            with pytest.raises(ConnectionFailedError, match=r"urls\[0\]"):
                await notifier.send(_note("held"))
    finally:
        receiver.release.set()


async def test_a_retry_with_the_same_key_goes_only_to_the_urls_that_failed(receiver):
    receiver.answers["/flaky"] = (500, {})
    key = f"run-1:{uuid.uuid4().hex}"
    async with make(hook(receiver, "/steady"), hook(receiver, "/flaky")) as notifier:
        with pytest.raises(HTTPStatusError, match=r"urls\[1\].*urls \[0\] accepted it"):
            await notifier.send(_note("first", idempotency_key=key))
        receiver.answers.clear()
        receipt = await notifier.send(_note("first", idempotency_key=key))
        again = await notifier.send(_note("first", idempotency_key=key))  # all done: nothing sent
    assert receipt.id == key == again.id
    assert len([a for a in receiver.at("/steady") if a.payload["message"] == "first"]) == 1
    assert len([a for a in receiver.at("/flaky") if a.payload["message"] == "first"]) == 2


async def test_a_slow_service_does_not_block_the_event_loop(receiver):
    receiver.release = threading.Event()
    async with make(hook(receiver, "/slow")) as notifier:
        sending = asyncio.create_task(notifier.send(_note("slow")))
        # The loop keeps running while the service is in its request: this await returns.
        assert await asyncio.to_thread(receiver.entered.wait, 10)
        assert not sending.done()
        receiver.release.set()
        await asyncio.wait_for(sending, 30)


async def test_undeclared_channel_is_refused_before_sending(receiver):
    async with make(hook(receiver, "/never")) as notifier:
        assert notifier.supports("push") and not notifier.supports("email")
        with pytest.raises(UnsupportedError):
            await notifier.send(_note("x", channel="sms"))
    assert receiver.at("/never") == []


def test_options_refuse_unknown_urls_and_orphan_channels_without_echoing_them():
    secret = "slack-token-" + uuid.uuid4().hex
    with pytest.raises(PydanticValidationError) as caught:
        make(f"nosuchservice://{secret}")
    assert "does not recognise" in str(caught.value) and secret not in str(caught.value)
    with pytest.raises(PydanticValidationError, match="channel 'sms' has no URL"):
        make({"url": "json://localhost/x", "channels": ["push"]}, channels=("push", "sms"))
    with pytest.raises(PydanticValidationError, match="does not declare"):
        make({"url": "json://localhost/x", "channels": ["email"]})
    with pytest.raises(PydanticValidationError):
        make("json://localhost/x", retries=3)


def test_config_show_and_errors_hide_urls_given_as_references(monkeypatch, tmp_path):
    token = "xoxb-" + uuid.uuid4().hex
    monkeypatch.setenv("ALERT_URL", f"json://hooks.example.com/{token}")
    config = one_notifier(tmp_path, "alerts", {"provider": "apprise", "urls": ["${env:ALERT_URL}"]})
    resolved = config.resolve("notifications", "alerts", "prd")
    assert resolved.cls is AppriseNotifier
    shown = str(config.show("prd"))
    assert token not in shown and "apprise" in shown
    assert token not in str(ProviderError(f"failed at json://hooks.example.com/{token}"))


def test_urls_written_literally_are_secrets_too(tmp_path):
    token = "literal-" + uuid.uuid4().hex
    urls = [
        "json://hooks.example.com/a",
        {"url": f"json://hooks.example.com/{token}", "channels": ["sms"]},
    ]
    settings = {"provider": "apprise", "channels": ["push", "sms"], "urls": urls}
    config = one_notifier(tmp_path, "alerts", settings)
    config.resolve("notifications", "alerts", "prd")  # registers each URL, nested or not
    assert token not in str(config.show("prd"))
    assert token not in str(ProviderError(f"failed at json://hooks.example.com/{token}"))


def test_options_with_a_bad_url_name_the_option_path(tmp_path):
    config = one_notifier(tmp_path, "alerts", {"provider": "apprise", "urls": ["bogus://x"]})
    with pytest.raises(ConfigError, match=r"notifications\.alerts\.prd\.urls\.0\.url"):
        config.resolve("notifications", "alerts", "prd")


def test_registered_as_a_notifier():
    assert get_registry().get(Notifier.kind, "apprise") is AppriseNotifier
