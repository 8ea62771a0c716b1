"""``dw.notifications``: send messages declared in config, or ad hoc, on a notifier by tag.

Messages hold one template per channel; ``{{ name }}`` (or ``{{ user.name }}``) placeholders are
filled from ``data``. A placeholder with no value is an error, raised before anything is sent.
Recipients, subject, sender and headers are checked after rendering (no line breaks, real
addresses on email; see :func:`ductwork.providers.notifier.check_notification`): a
``ValidationError`` names the field before any side effect.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Unpack

from ductwork.config.models import ChannelTemplate, NotificationResource
from ductwork.errors import NotFoundError, ValidationError
from ductwork.processor._base import JobOptions, Namespace, json_payload
from ductwork.providers.notifier import (
    Attachment,
    Channel,
    Notification,
    Notifier,
    Receipt,
    check_notification,
)
from ductwork.providers.notifier import recipients as recipients_of

if TYPE_CHECKING:
    from ductwork.engine.spec import Job

__all__ = ["Notifications", "render"]

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")


def render(template: str, data: Mapping[str, Any], *, where: str = "template") -> str:
    """Fill ``{{ name }}`` placeholders from ``data`` (dotted names walk nested mappings)."""

    def value(match: re.Match[str]) -> str:
        current: Any = data
        for part in match[1].split("."):
            if not isinstance(current, Mapping) or part not in current:
                raise ValidationError(f"{where}: no value for {{{{ {match[1]} }}}} in data")
            current = current[part]
        return str(current)

    return _PLACEHOLDER.sub(value, template)


class Notifications(Namespace):
    """The product's notifiers."""

    section = "notifications"

    async def send(
        self,
        notification: str,
        message: str | None = None,
        *,
        to: str | Sequence[str],
        channel: Channel | None = None,
        data: Mapping[str, Any] | None = None,
        subject: str | None = None,
        body: str | None = None,
        html: str | None = None,
        attachments: Sequence[Attachment] = (),
        env: str | None = None,
    ) -> Receipt:
        """Send ``message`` (a template from config) or an ad hoc ``body`` to ``to``."""
        built = self.build(
            notification,
            message,
            to=to,
            channel=channel,
            data=data,
            subject=subject,
            body=body,
            html=html,
            attachments=attachments,
        )
        provider = await self._provider(notification, env, Notifier)
        return await provider.send(built)

    async def dispatch(
        self,
        notification: str,
        message: str | None = None,
        *,
        to: str | Sequence[str],
        channel: Channel | None = None,
        data: Mapping[str, Any] | None = None,
        subject: str | None = None,
        body: str | None = None,
        html: str | None = None,
        **opts: Unpack[JobOptions],
    ) -> Job:
        """Send as a durable job; the message is rendered now to refuse bad input early."""
        built = self.build(
            notification,
            message,
            to=to,
            channel=channel,
            data=data,
            subject=subject,
            body=body,
            html=html,
            attachments=(),
        )
        check_notification(built)  # send checks it too; a job must not be queued to fail later
        self._checked(notification, opts.get("env"))
        payload = {
            "to": built.to,
            "channel": channel,
            "data": json_payload(dict(data or {}), "data"),
            "subject": subject,
            "body": body,
            "html": html,
        }
        target = f"{notification}:{message}" if message else notification
        return await self._submit("notifications.send", target, notification, payload, opts)

    def build(
        self,
        notification: str,
        message: str | None,
        *,
        to: str | Sequence[str],
        channel: Channel | None,
        data: Mapping[str, Any] | None,
        subject: str | None,
        body: str | None,
        html: str | None,
        attachments: Sequence[Attachment],
    ) -> Notification:
        """The notification to send, rendered and checked (no I/O)."""
        resource = self._client.config.resource(self.section, notification)
        assert isinstance(resource, NotificationResource)
        data = dict(data or {})
        recipients = recipients_of(to)
        template = ChannelTemplate()
        if message is not None:
            spec = resource.messages.get(message)
            if spec is None:
                close = difflib.get_close_matches(message, list(resource.messages), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise NotFoundError(
                    f"notification {notification!r} has no message {message!r}{hint} "
                    f"(messages: {', '.join(sorted(resource.messages)) or 'none'})"
                )
            channels = spec.channels()
            if channel is None:
                if len(channels) != 1:
                    raise ValidationError(
                        f"message {notification}:{message} has templates for "
                        f"{', '.join(channels)}; pass channel= to choose one"
                    )
                channel = channels[0]  # type: ignore[assignment]
            found = getattr(spec, channel or "", None)
            if found is None:
                raise ValidationError(
                    f"message {notification}:{message} has no {channel!r} template "
                    f"(it has: {', '.join(channels)})"
                )
            template = found
        if channel is None:
            channel = "email"
        where = f"{notification}:{message or 'ad hoc'}"
        title = subject if subject is not None else (template.subject or template.title)
        return Notification(
            channel=channel,
            to=recipients,
            subject=render(title, data, where=where) if title else None,
            body=render(body if body is not None else template.body, data, where=where),
            html=render(html or template.html or "", data, where=where) or None,
            sender=template.sender,
            data=data,
            attachments=list(attachments),
        )
