"""The ``Notifier`` interface: send a notification on a channel.

Channels are capabilities: ``email``, ``push``, ``sms``, ``callback`` (a webhook). A provider
declares the ones it delivers; :meth:`Notifier.send` refuses the others with
:class:`UnsupportedError` before doing anything, and refuses unsafe fields with
:class:`ValidationError` (see :func:`check_notification`), so every notifier gets both.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import uuid
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ductwork._lines import check_headers, check_line
from ductwork.errors import (
    ConnectionFailedError,
    HTTPStatusError,
    ValidationError,
)
from ductwork.providers.base import OptionsT, Provider
from ductwork.providers.channels import (
    DEFAULT_LIMITS,
    Limits,
    check_email_address,
    check_limits,
    check_recipient,
)

__all__ = [
    "Attachment",
    "Channel",
    "Limits",
    "Notification",
    "Notifier",
    "Receipt",
    "check_notification",
    "recipients",
    "retryable",
]

# "addr", "Name <addr>" or '"Name, with specials" <addr>'.
_MAILBOX = re.compile(
    r'(?:(?:"(?:[^"\\]|\\.)*"|[^<>,;:@"()\[\]\\]*?)\s*<(?P<inner>[^<>]*)>'
    r"|(?P<bare>.*))"
)
# Header fields ductwork writes itself.
_RESERVED = frozenset(
    {
        "from",
        "to",
        "subject",
        "message-id",
        "date",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)

Channel = Literal["email", "push", "sms", "callback"]


@dataclass(frozen=True)
class Attachment:
    """A file sent with an email."""

    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Notification:
    """One message to one or more recipients on one channel.

    ``to`` holds addresses (email), device tokens (push), phone numbers (sms) or URLs
    (callback). ``data`` is the structured payload for push and callback.
    ``idempotency_key`` (a feature step gives ``<run_id>:<step_key>``) makes a repeated send
    recognisable: it is the receipt's id, and the provider's message id derives from it.
    """

    channel: Channel
    to: list[str]
    body: str = ""
    subject: str | None = None
    html: str | None = None
    sender: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None

    @functools.cached_property
    def _random_id(self) -> str:
        """A keyless notification's id, drawn once: each retry of this object keeps it."""
        return uuid.uuid4().hex

    def message_id(self) -> str:
        """The provider's id for this message: derived from the key, else random per object.

        The same object gives the same id on every call, so a retried send keeps its id.
        """
        if self.idempotency_key is None:
            return self._random_id
        return hashlib.sha256(self.idempotency_key.encode()).hexdigest()[:32]

    def receipt_id(self, message_id: str) -> str:
        """The receipt's id: the idempotency key when there is one, else the message id."""
        return self.idempotency_key if self.idempotency_key is not None else message_id


@dataclass(frozen=True)
class Receipt:
    """What the provider accepted.

    ``provider_ids`` holds the ids the provider's API gave back, when it gives any (Expo's
    ticket ids, which fetch its delivery receipts; FCM's message names; Postmark's
    ``MessageID``s), in the order of ``to``.
    """

    id: str
    channel: Channel
    to: list[str]
    provider_ids: list[str] = field(default_factory=list)


class Notifier(Provider[OptionsT]):
    """Delivers notifications on the channels it declares."""

    kind: ClassVar[str] = "notifier"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"email", "push", "sms", "callback"})

    async def send(self, notification: Notification, *, limits: Limits | None = None) -> Receipt:
        """Deliver ``notification``.

        :class:`UnsupportedError` for an undeclared channel, :class:`ValidationError` naming
        the field for an unsafe one or one over its channel's ``limits`` (the notifier's in
        config; default :class:`Limits`), see :func:`check_notification`; both before any I/O.
        """
        self.require(notification.channel)
        check_notification(notification, limits)
        return await self.deliver(notification)

    @abstractmethod
    async def deliver(self, notification: Notification) -> Receipt:
        """Send a validated notification on a declared channel."""


def retryable(error: BaseException) -> bool:
    """Whether a failed send may succeed if tried again (the notifier retry contract).

    The one retry loop every send goes through (:mod:`ductwork.processor._deliver`) asks this.
    Retried: :class:`ConnectionFailedError` (refused, reset, unreachable, timed out) and
    :class:`HTTPStatusError` with status 429 or >= 500 (its ``retry_after`` is honoured).
    Never: any other 4xx, :class:`ValidationError`, other ductwork errors, other exceptions.
    """
    if isinstance(error, HTTPStatusError):
        return error.status == 429 or error.status >= 500
    return isinstance(error, ConnectionFailedError)


def recipients(to: str | Sequence[str]) -> list[str]:
    """``to`` as a list: one recipient or a sequence of them, each a string."""
    found = [to] if isinstance(to, str) else list(to) if isinstance(to, Sequence) else None
    if found is None or not all(isinstance(one, str) for one in found):
        raise ValidationError("notification field 'to' takes a string or a list of strings")
    return found


def _line(name: str, value: str) -> None:
    check_line(value, f"notification field {name}")


def _address(name: str, value: str) -> None:
    _line(name, value)
    match = _MAILBOX.fullmatch(value.strip())
    addr = (match["inner"] if match["inner"] is not None else match["bare"]) if match else ""
    check_email_address(name, addr.strip(), value)


def _payload(data: Any) -> None:
    """A push or callback channel's ``data`` is sent as JSON: refuse what cannot be."""
    try:
        json.dumps(data, sort_keys=True, default=str)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(
            f"notification field 'data' must be JSON data with string keys: {exc}"
        ) from None


def check_notification(notification: Notification, limits: Limits | None = None) -> Notification:
    """``notification`` if every field is safe to put in a message, else :class:`ValidationError`.

    Refused, naming the field: no recipient; an empty recipient; CR, LF or another control
    character in ``to``, ``subject``, ``sender``, a header or an attachment's filename; a
    recipient its channel cannot take (an email address, an E.164 phone number, an http(s)
    URL: see :mod:`ductwork.providers.channels`); an email sender that is not an address; a
    header name that is not a field name or that ductwork writes itself (``From``, ``To``,
    ``Subject``, ``Date``, …); on push, sms and callback, ``data`` that JSON cannot hold; a
    message over its channel's ``limits`` (SMS segments, push payload bytes, attachment size).
    """
    n = notification
    email = n.channel == "email"
    if not isinstance(n.to, list) or not n.to:
        raise ValidationError("notification field 'to' needs at least one recipient")
    for i, to in enumerate(n.to):
        where = f"'to'[{i}]"
        if not isinstance(to, str) or not to.strip():
            raise ValidationError(f"notification field {where} is empty")
        if email:
            _address(where, to)
        else:
            _line(where, to)
            check_recipient(n.channel, where, to)
    if n.subject is not None:
        _line("'subject'", n.subject)
    if n.sender is not None:
        if email:
            _address("'sender'", n.sender)
        else:
            _line("'sender'", n.sender)
    for field_name, text in (("'body'", n.body), ("'html'", n.html)):
        if text is not None and not isinstance(text, str):
            raise ValidationError(f"notification field {field_name} must be a string")
    if not email:
        _payload(n.data)
    check_headers(n.headers, "notification field 'headers'")
    for key in n.headers:
        if key.lower() in _RESERVED:
            raise ValidationError(
                f"notification field 'headers'[{key!r}]: ductwork writes {key} itself; use the "
                "notification's own field"
            )
    for i, att in enumerate(n.attachments):
        _line(f"'attachments'[{i}].filename", att.filename)
        if not att.filename.strip():
            raise ValidationError(f"notification field 'attachments'[{i}].filename is empty")
        if not isinstance(att.content, bytes | bytearray):
            raise ValidationError(f"notification field 'attachments'[{i}].content must be bytes")
        _line(f"'attachments'[{i}].content_type", att.content_type)
    check_limits(n, DEFAULT_LIMITS if limits is None else limits)
    return n
