"""``dw.notifications``: send messages declared in config, or ad hoc, on a notifier by tag.

Messages hold one template per channel, in the product's one expression language
(:mod:`ductwork.expressions`): ``{{ name }}``, ``{{ user.name }}``, filters
(``{{ name | title }}``), conditions, filled from ``data``. Configured templates are compiled
when the config loads (``config validate`` names a bad one); an ``html`` template escapes what
it inserts. A name with no value in ``data`` is an error, raised before anything is sent.
Recipients, subject, sender and headers are checked after rendering (no line breaks, real
addresses on email; see :func:`ductwork.providers.notifier.check_notification`): a
``ValidationError`` names the field before any side effect.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Unpack

from ductwork.config.models import ChannelTemplate, NotificationResource
from ductwork.errors import NotFoundError, ValidationError
from ductwork.processor._base import JobOptions, Namespace, json_payload
from ductwork.processor._deliver import Attempt, OnAttempt, deliver, send_policy
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
    from ductwork.client import Ductwork
    from ductwork.config.models import Product
    from ductwork.engine.spec import Job, RetryPolicy
    from ductwork.expressions import Template

__all__ = ["Attempt", "Notifications", "OnAttempt", "compile_messages", "render"]

TEMPLATE_FIELDS = ("subject", "title", "body", "html")
Compiled = dict[tuple[str, str, str, str], "Template"]


def compile_messages(product: Product) -> Compiled:
    """Every configured message template, compiled, keyed ``(notifier, message, channel, field)``.

    Raises:
        ExpressionError: a template does not parse; the message names
            ``notifications.<notifier>.messages.<message>.<channel>.<field>``.
    """
    from ductwork.expressions import compile_template

    compiled: Compiled = {}
    for tag, resource in product.notifications.items():
        for name, spec in resource.messages.items():
            for channel in spec.channels():
                template = getattr(spec, channel)
                for field in TEMPLATE_FIELDS:
                    text = getattr(template, field)
                    if text:
                        where = f"notifications.{tag}.messages.{name}.{channel}.{field}"
                        compiled[tag, name, channel, field] = compile_template(
                            text, where=where, html=field == "html"
                        )
    return compiled


@lru_cache(maxsize=256)
def _ad_hoc(text: str, html: bool) -> Template:
    from ductwork.expressions import compile_template

    return compile_template(text, where="ad hoc template", html=html)


def render(
    template: str, data: Mapping[str, Any], *, where: str = "template", html: bool = False
) -> str:
    """Render a template given at run time (an ad hoc body) with ``data``.

    Raises:
        ExpressionError: it does not parse. ValidationError: a name has no value in ``data``.
    """
    return _ad_hoc(template, html).render(data, where=where)


class Notifications(Namespace):
    """The product's notifiers.

    Attributes:
        on_attempt: an async hook called with each send attempt's
            :class:`~ductwork.processor._deliver.Attempt` (the delivery log's seam), or ``None``.
    """

    section = "notifications"
    on_attempt: OnAttempt | None = None

    def __init__(self, client: Ductwork) -> None:
        super().__init__(client)
        self._policies: dict[str, RetryPolicy] = {}

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
        idempotency_key: str | None = None,
        env: str | None = None,
    ) -> Receipt:
        """Send ``message`` (a template from config) or an ad hoc ``body`` to ``to``.

        ``idempotency_key`` (feature steps give ``<run_id>:<step_key>``) is the receipt's id,
        and the provider's message id (an email's ``Message-ID``) derives from it, so a
        repeated send is recognisable.
        """
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
        if idempotency_key is not None:
            built = dataclasses.replace(built, idempotency_key=idempotency_key)
        provider = await self._provider(notification, env, Notifier)
        return await deliver(
            provider.send,
            built,
            self._policy(notification),
            notifier=notification,
            env=provider.context.env,
            on_attempt=self.on_attempt,
        )

    def _policy(self, notification: str) -> RetryPolicy:
        """The resource's ``retries``, parsed once (checked when the config loaded)."""
        found = self._policies.get(notification)
        if found is None:
            resource = self._client.config.resource(self.section, notification)
            assert isinstance(resource, NotificationResource)
            found = self._policies[notification] = send_policy(resource.retries)
        return found

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
        compiled = self._client.config.product.message_templates

        def fill(given: str | None, field: str, *fields: str) -> str:
            if given is not None:  # given with the call: its own template
                return render(given, data, where=where, html=field == "html")
            for name in (field, *fields):
                found: Template | None = compiled.get(
                    (notification, message or "", channel or "", name)
                )
                if found is not None:
                    return found.render(data, where=f"{where}.{name}")
            return ""

        title = fill(subject, "subject", "title")
        return Notification(
            channel=channel,
            to=recipients,
            subject=title or None,
            body=fill(body, "body"),
            html=fill(html or None, "html") or None,
            sender=template.sender,
            data=data,
            attachments=list(attachments),
        )
