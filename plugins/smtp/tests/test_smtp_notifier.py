"""The smtp notifier against a real aiosmtpd server: conformance, auth, errors, reuse."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from ductwork.errors import AuthenticationError, ConnectionFailedError, UnsupportedError
from ductwork.plugins import get_registry
from ductwork.providers import ProviderContext
from ductwork.providers.notifier import Notification
from ductwork.testing import NotifierSuite
from ductwork_smtp.notifier import SMTPNotifier
from pydantic import ValidationError as PydanticValidationError

# aiosmtpd warns on every session of a server requiring AUTH without TLS: on loopback, on purpose.
AUTH_WITHOUT_TLS = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
CONTEXT = ProviderContext(resource="notifiers.mail", env="test", provider="smtp")


def make(port: int, **options) -> SMTPNotifier:
    return SMTPNotifier.from_options(CONTEXT, host="127.0.0.1", port=port, **options)


class TestSMTPNotifier(NotifierSuite):
    @pytest.fixture
    async def provider(self, smtp_server):
        async with make(smtp_server.port) as notifier:
            yield notifier

    @pytest.fixture
    def outbox(self, smtp_server):
        async def read():
            return smtp_server.recorder.notifications()

        return read


def _note(marker: str, **fields) -> Notification:
    return Notification(channel="email", to=["ada@example.com"], subject=marker, **fields)


def _received(server, marker):
    return [n for n in server.recorder.notifications() if n.subject == marker]


async def test_sends_reuse_one_connection(smtp_server):
    markers = [uuid.uuid4().hex for _ in range(3)]
    async with make(smtp_server.port) as notifier:
        for marker in markers:
            await notifier.send(_note(marker))
    peers = {
        m.peer
        for m in smtp_server.recorder.messages
        if any(k in m.content.decode() for k in markers)
    }
    assert len(peers) == 1


async def test_concurrent_sends_share_the_connection(smtp_server):
    markers = [uuid.uuid4().hex for _ in range(10)]
    async with make(smtp_server.port) as notifier:
        receipts = await asyncio.gather(*(notifier.send(_note(m)) for m in markers))
    assert len({r.id for r in receipts}) == 10
    for marker in markers:
        assert len(_received(smtp_server, marker)) == 1


async def test_reconnects_after_the_server_drops_the_connection(smtp_server):
    async with make(smtp_server.port) as notifier:
        first = uuid.uuid4().hex
        await notifier.send(_note(first))
        server_side = smtp_server.recorder.sessions[-1]
        server_side.loop.call_soon_threadsafe(server_side.transport.close)
        second = uuid.uuid4().hex
        await notifier.send(_note(second))
    assert len(_received(smtp_server, second)) == 1


async def test_sender_option_and_per_message_sender(smtp_server):
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    async with make(smtp_server.port, sender="App <app@example.com>") as notifier:
        await notifier.send(_note(a))
        await notifier.send(_note(b, sender="Ops <ops@example.com>"))
    got_a = _received(smtp_server, a)[0]
    got_b = _received(smtp_server, b)[0]
    assert got_a.sender == "app@example.com" and "app@example.com" in got_a.headers["From"]
    assert got_b.sender == "ops@example.com" and "ops@example.com" in got_b.headers["From"]


async def test_custom_headers_and_message_id(smtp_server):
    marker = uuid.uuid4().hex
    async with make(smtp_server.port) as notifier:
        receipt = await notifier.send(_note(marker, headers={"X-Campaign": "spring"}))
    got = _received(smtp_server, marker)[0]
    assert got.headers["X-Campaign"] == "spring"
    assert receipt.id in got.headers["Message-ID"]
    assert receipt.to == ["ada@example.com"]


@AUTH_WITHOUT_TLS
async def test_auth_with_the_right_password(auth_smtp_server):
    marker = uuid.uuid4().hex
    server = auth_smtp_server
    async with make(server.port, username=server.user, password=server.password) as notifier:
        await notifier.ping()
        await notifier.send(_note(marker))
    assert len(_received(auth_smtp_server, marker)) == 1


@AUTH_WITHOUT_TLS
async def test_wrong_password_is_an_authentication_error_without_the_password(auth_smtp_server):
    wrong = "not-the-pa55word"
    server = auth_smtp_server
    notifier = make(server.port, username=server.user, password=wrong)
    with pytest.raises(AuthenticationError) as info:
        await notifier.open()
    text = str(info.value)
    assert wrong not in text and server.password not in text
    assert server.user in text and "notifiers.mail" in text
    await notifier.close()


async def test_connection_refused_is_connection_failed(closed_port):
    port = closed_port
    notifier = make(port, username="mailer", password="pa55word-x", timeout=2)
    with pytest.raises(ConnectionFailedError) as info:
        await notifier.open()
    text = str(info.value)
    for part in ("notifiers.mail", "env=test", "provider=smtp", f"smtp://127.0.0.1:{port}"):
        assert part in text
    assert "pa55word-x" not in text
    await notifier.close()


async def test_send_without_open_to_a_closed_port_is_connection_failed(closed_port):
    notifier = make(closed_port, timeout=2)
    with pytest.raises(ConnectionFailedError):
        await notifier.send(_note("never"))


async def test_unsupported_channels_are_refused_before_connecting(closed_port):
    notifier = make(closed_port)
    with pytest.raises(UnsupportedError):
        await notifier.send(Notification(channel="sms", to=["+15550100"], body="x"))


def test_options_reject_unknown_keys_and_contradictions():
    with pytest.raises(PydanticValidationError):
        SMTPNotifier.Options(hots="x")
    with pytest.raises(PydanticValidationError):
        SMTPNotifier.Options(use_tls=True, starttls=True)
    with pytest.raises(PydanticValidationError):
        SMTPNotifier.Options(username="u")


def test_ports_default_from_the_tls_mode_and_secrets_stay_hidden():
    assert make(25).endpoint == "smtp://127.0.0.1:25"
    assert SMTPNotifier.from_options(host="h", use_tls=True).endpoint == "smtps://h:465"
    assert SMTPNotifier.from_options(host="h", starttls=True).endpoint == "smtp://h:587"
    assert SMTPNotifier.from_options(host="h").endpoint == "smtp://h:25"
    options = SMTPNotifier.Options(username="u", password="hunter22", timeout="1m")
    assert "hunter22" not in repr(options)
    assert options.timeout == 60.0


def test_registered_through_the_entry_point():
    entry = get_registry().entries[("notifier", "smtp")]
    assert entry.distribution == "ductwork-smtp"
    assert get_registry().get("notifier", "smtp") is SMTPNotifier
