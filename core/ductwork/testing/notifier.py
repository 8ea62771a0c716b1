"""``NotifierSuite``: what every :class:`~ductwork.providers.Notifier` must do.

Needs two fixtures: ``provider`` (an opened Notifier) and ``outbox``: an async callable that
returns what the far end received so far, as :class:`Notification` objects (for SMTP, what the
test server got; for ``mailbox``, the files written).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import ClassVar

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
