"""``NotifierSuite``: what every :class:`~ductwork.providers.Notifier` must do.

Needs two fixtures: ``provider`` (an opened Notifier) and ``outbox``: an async callable that
returns what the far end received so far, as :class:`Notification` objects (for SMTP, what the
test server got; for ``mailbox``, the files written).

Each channel's cases run when the provider declares the channel (email: subject, both bodies,
attachments; push: title, body and data; sms: body to an E.164 number; callback: data), and
an undeclared channel must be refused. Recipients a channel cannot take and messages over its
limits are refused before anything is sent. A property test (hypothesis) renders any string
into a subject and an HTML body through the expression language: the HTML escapes it, and a
string that would break a header line is refused, never sent.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest

from ductwork.errors import UnsupportedError, ValidationError
from ductwork.providers.notifier import Attachment, Notification, Notifier

__all__ = ["NotifierSuite", "Outbox"]

Outbox = Callable[[], Awaitable[list[Notification]]]
CHANNELS = ("email", "push", "sms", "callback")
RECIPIENT = {
    "email": "ada@example.com",
    "push": "device-token-1",
    "sms": "+15550100",
    "callback": "https://hooks.example.com/in",
}


class NotifierSuite:
    """Subclass with ``provider`` and ``outbox`` fixtures."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    async def _find(self, outbox: Outbox, marker: str) -> Notification:
        for item in await outbox():
            if marker in (item.subject or "") or marker in item.body:
                return item
        raise AssertionError(f"nothing received with {marker!r}")

    async def test_email_arrives_with_subject_both_bodies_and_attachments(
        self, provider: Notifier, outbox: Outbox
    ) -> None:
        marker = uuid.uuid4().hex
        note = Notification(
            channel="email",
            to=["ada@example.com", "bob@example.com"],
            subject=f"Hello {marker}",
            body=f"plain {marker}",
            html=f"<p>html {marker}</p>",
            attachments=[Attachment("report.csv", b"a,b\n1,2\n", "text/csv")],
        )
        if not provider.supports("email"):
            with pytest.raises(UnsupportedError):
                await provider.send(note)
            return
        receipt = await provider.send(note)
        assert receipt.channel == "email" and receipt.id
        got = await self._find(outbox, marker)
        assert got.subject == f"Hello {marker}"
        assert f"plain {marker}" in got.body
        assert got.html is not None and f"<p>html {marker}</p>" in got.html
        assert sorted(got.to) == ["ada@example.com", "bob@example.com"]
        assert [(a.filename, a.content) for a in got.attachments] == [("report.csv", b"a,b\n1,2\n")]

    @pytest.mark.parametrize("channel", ["push", "sms", "callback"])
    async def test_other_channels_deliver_or_are_unsupported(
        self, provider: Notifier, outbox: Outbox, channel: str
    ) -> None:
        marker = uuid.uuid4().hex
        note = Notification(
            channel=channel,  # type: ignore[arg-type]  # parametrized with valid channels
            to=[RECIPIENT[channel]],
            subject=f"t {marker}",
            body=f"b {marker}",
            data={"k": marker},
        )
        if not provider.supports(channel):
            with pytest.raises(UnsupportedError):
                await provider.send(note)
            return
        receipt = await provider.send(note)
        assert receipt.channel == channel
        got = await self._find(outbox, marker)
        assert got.channel == channel
        assert got.to == [RECIPIENT[channel]]

    async def test_no_recipient_is_refused(self, provider: Notifier, outbox: Outbox) -> None:
        channel = next(c for c in CHANNELS if provider.supports(c))
        before = len(await outbox())
        with pytest.raises(ValidationError):
            await provider.send(Notification(channel=channel, to=[], body="x"))  # type: ignore[arg-type]
        assert len(await outbox()) == before

    @pytest.mark.parametrize(
        ("fields", "named"),
        [
            ({"subject": "Hi\r\nBcc: victim@example.com"}, "'subject'"),
            ({"subject": "Hi\nthere"}, "'subject'"),
            ({"to": ["ada@example.com\r\nBcc: victim@example.com"]}, "'to'[0]"),
            ({"to": ["not-an-email"]}, "'to'[0]"),
            ({"to": [""]}, "'to'[0]"),
            ({"to": ["ada@example.com", "  "]}, "'to'[1]"),
            ({"to": ["ada@example.com, eve@example.com"]}, "'to'[0]"),
            ({"sender": "me@example.com\r\nBcc: victim@example.com"}, "'sender'"),
            ({"sender": "nobody"}, "'sender'"),
            ({"headers": {"X-Tag": "a\r\nBcc: victim@example.com"}}, "'headers'['X-Tag']"),
            ({"headers": {"X Bad: name": "v"}}, "'headers'['X Bad: name']"),
            ({"headers": {"Subject": "second"}}, "'headers'['Subject']"),
            ({"attachments": [Attachment("a\r\n.csv", b"x")]}, "'attachments'[0].filename"),
        ],
    )
    async def test_unsafe_email_fields_are_refused_naming_the_field_before_sending(
        self, provider: Notifier, outbox: Outbox, fields: dict[str, object], named: str
    ) -> None:
        if not provider.supports("email"):
            return
        marker = uuid.uuid4().hex
        note = {"channel": "email", "to": ["ada@example.com"], "subject": marker, "body": marker}
        before = len(await outbox())
        with pytest.raises(ValidationError, match=re.escape(named)):
            await provider.send(Notification(**{**note, **fields}))  # type: ignore[arg-type]
        assert len(await outbox()) == before

    async def test_display_names_and_quoted_names_are_addresses(
        self, provider: Notifier, outbox: Outbox
    ) -> None:
        if not provider.supports("email"):
            return
        marker = uuid.uuid4().hex
        to = ["Ada Lovelace <ada@example.com>", '"Babbage, Charles" <charles@example.com>']
        await provider.send(Notification(channel="email", to=to, subject=marker, body=marker))
        got = await self._find(outbox, marker)
        assert len(got.to) == 2

    async def _delivered(
        self, provider: Notifier, outbox: Outbox, channel: str, **fields: Any
    ) -> Notification | None:
        """Send on ``channel`` and return what arrived; None when it is undeclared (refused)."""
        marker = uuid.uuid4().hex
        fields.setdefault("body", f"b {marker}")
        note = Notification(channel=channel, to=[RECIPIENT[channel]], **fields)  # type: ignore[arg-type]
        if not provider.supports(channel):
            with pytest.raises(UnsupportedError):
                await provider.send(note)
            return None
        receipt = await provider.send(note)
        assert receipt.channel == channel and receipt.id
        return await self._find(outbox, fields["body"] if fields["body"] else marker)

    async def test_push_carries_title_body_and_data(
        self, provider: Notifier, outbox: Outbox
    ) -> None:
        marker = uuid.uuid4().hex
        data = {"order": {"id": 7, "items": ["a", "b"]}, "marker": marker, "ok": True}
        got = await self._delivered(
            provider, outbox, "push", subject="Shipped", body=f"Order 7 {marker}", data=data
        )
        if got is not None:
            assert got.channel == "push" and got.to == [RECIPIENT["push"]]
            assert (got.subject, got.body, got.data) == ("Shipped", f"Order 7 {marker}", data)

    async def test_sms_carries_its_body_to_an_e164_number(
        self, provider: Notifier, outbox: Outbox
    ) -> None:
        body = f"Your code is 4242 ({uuid.uuid4().hex}) — ünïcode ok"
        got = await self._delivered(provider, outbox, "sms", body=body)
        if got is not None:
            assert (got.channel, got.to, got.body) == ("sms", [RECIPIENT["sms"]], body)

    async def test_callback_carries_its_data(self, provider: Notifier, outbox: Outbox) -> None:
        marker = uuid.uuid4().hex
        data = {"event": "order.shipped", "id": 7, "marker": marker}
        got = await self._delivered(provider, outbox, "callback", body=marker, data=data)
        if got is not None:
            assert got.channel == "callback" and got.data == data

    @pytest.mark.parametrize(
        ("channel", "fields", "named"),
        [
            ("sms", {"to": ["555-0100"]}, "'to'[0]"),
            ("sms", {"to": ["+1 415 555 0100"]}, "'to'[0]"),
            ("sms", {"body": "a" * (153 * 10 + 1)}, "'body' needs 11 SMS segments"),
            ("sms", {"body": "ж" * (67 * 10 + 1)}, "'body' needs 11 SMS segments (UCS-2"),
            ("push", {"data": {"blob": "x" * 5000}}, "push payload"),
            ("callback", {"to": ["ftp://hooks.example.com/in"]}, "'to'[0]"),
            ("callback", {"to": ["hooks.example.com/in"]}, "'to'[0]"),
            ("email", {"to": ["ada@@example.com"]}, "'to'[0]"),
            (
                "email",
                {"attachments": [Attachment("big.bin", b"x" * (10 * 1024 * 1024 + 1))]},
                "'attachments'[0]",
            ),
        ],
    )
    async def test_bad_recipients_and_messages_over_limits_are_refused_before_sending(
        self, provider: Notifier, outbox: Outbox, channel: str, fields: dict[str, Any], named: str
    ) -> None:
        if not provider.supports(channel):
            return
        note = {"channel": channel, "to": [RECIPIENT[channel]], "subject": "s", "body": "b"}
        before = len(await outbox())
        with pytest.raises(ValidationError, match=re.escape(named)):
            await provider.send(Notification(**{**note, **fields}))
        assert len(await outbox()) == before

    async def test_any_data_is_escaped_in_html_and_never_breaks_a_header(
        self, provider: Notifier, outbox: Outbox
    ) -> None:
        if not provider.supports("email"):
            return
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st
        from markupsafe import escape

        from ductwork.expressions import compile_template

        loop = asyncio.get_running_loop()
        subject = compile_template("{{ marker }} {{ value }}", where="subject")
        html = compile_template("<p>{{ marker }}: {{ value }}</p>", where="html", html=True)

        def run(coro: Awaitable[Any]) -> Any:  # hypothesis drives from a thread; I/O stays here
            return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)  # type: ignore[arg-type]

        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        @given(value=st.text(max_size=40), where=st.sampled_from(["subject", "sender", "header"]))
        def check(value: str, where: str) -> None:
            marker = uuid.uuid4().hex
            data = {"marker": marker, "value": value}
            fields: dict[str, Any] = {
                "channel": "email",
                "to": [RECIPIENT["email"]],
                "subject": subject.render(data, where="subject"),
                "body": marker,
                "html": html.render(data, where="html"),
            }
            if where == "sender":
                fields["sender"] = f"{value} <app@example.com>".strip()
            elif where == "header":
                fields["headers"] = {"X-Value": value}
                # a line break or another control character (tab aside) is refused in a header
            breaks = any(
                (ord(c) < 32 and c != "\t") or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029"
                for c in value
            )
            before = len(run(outbox()))
            if breaks:
                with pytest.raises(ValidationError):
                    run(provider.send(Notification(**fields)))
                assert len(run(outbox())) == before
                return
            try:
                run(provider.send(Notification(**fields)))
            except ValidationError:  # a sender display name email syntax refuses; sent nothing
                assert where == "sender"
                assert len(run(outbox())) == before
                return
            got = run(self._find(outbox, marker))
            assert got.to == [RECIPIENT["email"]]  # nothing injected as a recipient
            assert got.html is not None and f"<p>{marker}: {escape(value)}</p>" in got.html
            assert marker in (got.subject or "")

        await asyncio.to_thread(check)
