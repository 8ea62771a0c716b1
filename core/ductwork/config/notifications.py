"""The ``notifications:`` section: notifiers, their messages per channel, limits and retries."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from ductwork.config.resource import Model as _Model
from ductwork.config.resource import Resource
from ductwork.config.sizes import Size

__all__ = [
    "AttachmentTemplate",
    "ChannelTemplate",
    "NotificationLimits",
    "NotificationMessage",
    "NotificationResource",
]


class AttachmentTemplate(_Model):
    """A file from a storage resource attached to an email; ``key`` and ``filename`` templates."""

    storage: str = Field(description="tag of a storage resource")
    key: str = Field(min_length=1, description="object key, a template ({{ order.id }})")
    filename: str | None = Field(
        None, description="file name the recipient sees, a template; default: the key's last part"
    )
    content_type: str | None = Field(
        None, description="default: the stored object's content type, else from the file name"
    )


class ChannelTemplate(_Model):
    """A message on one channel: templates (``{{ name }}``) filled from the send's data."""

    subject: str | None = None
    title: str | None = None
    body: str = ""
    html: str | None = None
    sender: str | None = None
    attachments: list[AttachmentTemplate] = Field(
        default_factory=list, description="files from storage (email only; see notifications.md)"
    )


class NotificationMessage(_Model):
    """A message, one template per channel it can go out on."""

    email: ChannelTemplate | None = None
    push: ChannelTemplate | None = None
    sms: ChannelTemplate | None = None
    callback: ChannelTemplate | None = None

    def channels(self) -> list[str]:
        """The channels this message has a template for."""
        return [c for c in ("email", "push", "sms", "callback") if getattr(self, c) is not None]

    @model_validator(mode="after")
    def _attachments_on_email_only(self) -> NotificationMessage:
        for channel in ("push", "sms", "callback"):
            template = getattr(self, channel)
            if template is not None and template.attachments:
                raise ValueError(f"{channel}.attachments: only email messages carry attachments")
        return self


class NotificationLimits(_Model):
    """How large a message may be on each channel, refused before sending (notifications.md)."""

    sms_max_segments: int = Field(
        10, ge=1, le=255, description="SMS segments per message (GSM-7 153, UCS-2 67 chars each)"
    )
    push_max_bytes: int = Field(
        4096, ge=1, description="push payload (title, body, data as JSON) in bytes"
    )
    max_attachment_size: Size = Field(
        10 * 1024 * 1024,
        ge=1,
        description="bytes per attachment (10MB, 512KB, or a number of bytes)",
    )


class NotificationResource(Resource):
    """A notifier and its messages."""

    section: ClassVar[str] = "notifications"
    kind: ClassVar[str] = "notifier"
    messages: dict[str, NotificationMessage] = Field(default_factory=dict)
    limits: NotificationLimits = Field(default_factory=NotificationLimits)
    log: bool = Field(
        True, description="record every send in the delivery log (ductwork notify log)"
    )
    retries: int | dict[str, Any] | None = Field(
        None,
        description="sends retried on connection errors, 429 and 5xx; as dispatch retries "
        "(default: {max: 3, backoff: 0.5s, cap: 10s})",
    )

    @field_validator("retries")
    @classmethod
    def _retries(cls, value: int | dict[str, Any] | None) -> int | dict[str, Any] | None:
        from ductwork.engine.spec import parse_retries
        from ductwork.errors import ValidationError

        try:
            parse_retries(value)
        except ValidationError as exc:
            raise ValueError(str(exc)) from None
        return value
