"""The ``Notifier`` interface: send a notification on a channel.

Channels are capabilities: ``email``, ``push``, ``sms``, ``callback`` (a webhook). A provider
declares the ones it delivers; :meth:`Notifier.send` refuses the others with
:class:`UnsupportedError` before doing anything.
"""

from __future__ import annotations

import hashlib
import uuid
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ductwork.providers.base import Provider

__all__ = ["Attachment", "Channel", "Notification", "Notifier", "Receipt"]

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

    def message_id(self) -> str:
        """The provider's id for this message: the same for the same key, else random."""
        if self.idempotency_key is None:
            return uuid.uuid4().hex
        return hashlib.sha256(self.idempotency_key.encode()).hexdigest()[:32]

    def receipt_id(self, message_id: str) -> str:
        """The receipt's id: the idempotency key when there is one, else the message id."""
        return self.idempotency_key if self.idempotency_key is not None else message_id


@dataclass(frozen=True)
class Receipt:
    """What the provider accepted."""

    id: str
    channel: Channel
    to: list[str]


class Notifier(Provider):
    """Delivers notifications on the channels it declares."""

    kind: ClassVar[str] = "notifier"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"email", "push", "sms", "callback"})

    async def send(self, notification: Notification) -> Receipt:
        """Deliver ``notification``; :class:`UnsupportedError` for an undeclared channel."""
        self.require(notification.channel)
        if not notification.to:
            from ductwork.errors import ValidationError

            raise ValidationError("a notification needs at least one recipient in 'to'")
        return await self.deliver(notification)

    @abstractmethod
    async def deliver(self, notification: Notification) -> Receipt:
        """Send a validated notification on a declared channel."""
