"""``dw.notifications``: send messages declared in config, or ad hoc, on a notifier by tag.

Messages hold one template per channel, in the product's one expression language
(:mod:`ductwork.expressions`): ``{{ name }}``, ``{{ user.name }}``, filters
(``{{ name | title }}``), conditions, filled from ``data``. Configured templates are compiled
when the config loads (``config validate`` names a bad one); an ``html`` template escapes what
it inserts. A name with no value in ``data`` is an error, raised before anything is sent.
Recipients, subject, sender and headers are checked after rendering (no line breaks; an
email address, an E.164 number or an http(s) URL by channel; the notifier's ``limits``: see
:func:`ductwork.providers.notifier.check_notification`): a ``ValidationError`` names the field
before any side effect. An email message's ``attachments`` are read from storage, bounded by
``limits.max_attachment_size`` (:mod:`ductwork.processor._attachments`).

Every send is recorded in the delivery log (:mod:`ductwork.engine.deliveries`) unless the
notifier says ``log: false``: ``pending`` before the provider is called, then ``sent`` with
the provider's message id or ``failed`` with the error; :meth:`Notifications.log` reads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Unpack

from ductwork._hints import did_you_mean
from ductwork.config.models import ChannelTemplate, NotificationResource
from ductwork.errors import NotFoundError, ValidationError
from ductwork.processor._attachments import (
    StoredAttachment,
    read_attachments,
    render_attachments,
)
from ductwork.processor._base import JobOptions, Namespace
from ductwork.processor._deliver import Attempt, OnAttempt, deliver, send_policy
from ductwork.providers.notifier import (
    Attachment,
    Channel,
    Limits,
    Notification,
    Notifier,
    Receipt,
    check_notification,
)
from ductwork.providers.notifier import recipients as recipients_of

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.config.loader import ResolvedResource
    from ductwork.config.models import Product
    from ductwork.engine.deliveries import NotificationRecord, Pending
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
                for i, att in enumerate(template.attachments):
                    for field, text in (("key", att.key), ("filename", att.filename)):
                        if text:
                            key = f"attachments[{i}].{field}"
                            where = f"notifications.{tag}.messages.{name}.{channel}.{key}"
                            compiled[tag, name, channel, key] = compile_template(text, where=where)
    return compiled


def limits_of(resource: NotificationResource) -> Limits:
    """The notifier's channel limits (``limits:`` in config)."""
    return Limits(**resource.limits.model_dump())


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
        repeated send is recognisable; it also keeps one delivery-log entry for every try.
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
        stored = self._stored(notification, message, built)
        if idempotency_key is not None:
            built = dataclasses.replace(built, idempotency_key=idempotency_key)
        resource = self._resource(notification)
        limits = limits_of(resource)
        check_notification(built, limits)  # refused here is not a delivery: nothing is logged
        resolved = self._client.resolve(self.section, notification, env)
        resolved.build().require(built.channel)  # an undeclared channel: refused, not logged
        entry = await self._start(resolved, message, built) if resource.log else None
        try:
            provider = await self._provider(notification, env, Notifier)
            if stored:
                found = await read_attachments(
                    self._client, stored, limits.max_attachment_size, env
                )
                built = dataclasses.replace(built, attachments=[*built.attachments, *found])

            async def attempted(attempt: Attempt) -> None:
                if entry is not None:  # the delivery log: one entry, every try counted
                    retrying = attempt.outcome == "retrying"
                    await entry.attempt(
                        receipt=attempt.receipt, error=attempt.exception, retrying=retrying
                    )
                if self.on_attempt is not None:
                    await self.on_attempt(attempt)

            return await deliver(
                lambda n: provider.send(n, limits=limits),
                built,
                self._policy(notification),
                notifier=notification,
                env=resolved.env,
                on_attempt=attempted,
            )
        except Exception as exc:
            if entry is not None:  # failed before a try (provider, attachments): recorded once
                await entry.attempt(error=exc)
            raise

    async def _start(
        self, resolved: ResolvedResource, message: str | None, built: Notification
    ) -> Pending:
        """A pending entry in the delivery log of the notifier's env."""
        from ductwork.engine import deliveries

        return await deliveries.start(
            await self._client.jobs.store(resolved.env),
            notifier=resolved.tag,
            message=message,
            env=resolved.env,
            channel=built.channel,
            provider=resolved.provider,
            to=built.to,
            data=built.data,
            idempotency_key=built.idempotency_key,
        )

    async def log(
        self,
        *,
        status: str | None = None,
        message: str | None = None,
        recipient: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        env: str | None = None,
    ) -> list[NotificationRecord]:
        """Sends from the delivery log, newest first.

        ``status``: ``pending``, ``sent`` or ``failed``; ``message``: ``notifier:message``, or a
        notifier's tag for all its sends; ``recipient``: one address, number, token or URL (an
        email address matches whatever its case or display name); ``since``/``until``:
        timezone-aware datetimes (creation time, ``until`` excluded).
        """
        from ductwork.engine import deliveries

        store = await self._client.jobs.store(env)
        return await deliveries.query(
            store,
            status=status,
            message=message,
            recipient=recipient,
            since=since,
            until=until,
            limit=limit,
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
        # send checks it too; a job must not be queued to fail later
        check_notification(built, limits_of(self._resource(notification)))
        self._stored(notification, message, built)  # a bad attachment key, refused now
        self._checked(notification, opts.get("env"))
        payload = {
            "to": built.to,
            "channel": channel,
            "data": dict(data or {}),
            "subject": subject,
            "body": body,
            "html": html,
        }
        target = f"{notification}:{message}" if message else notification
        return await self._submit("notifications.send", target, notification, payload, opts)

    def _resource(self, notification: str) -> NotificationResource:
        resource = self._client.config.resource(self.section, notification)
        assert isinstance(resource, NotificationResource)
        return resource

    def _stored(
        self, notification: str, message: str | None, built: Notification
    ) -> list[StoredAttachment]:
        """The email message's attachments from storage, rendered (no I/O)."""
        spec = self._resource(notification).messages.get(message or "")
        if built.channel != "email" or spec is None or spec.email is None:
            return []
        compiled = self._client.config.product.message_templates
        where = f"{notification}:{message}"
        prefix = (notification, message or "", "email")
        return render_attachments(spec.email.attachments, compiled, prefix, built.data, where)

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
        """The notification to send, rendered (no I/O; attachments from storage not read)."""
        resource = self._resource(notification)
        data = dict(data or {})
        recipients = recipients_of(to)
        template = ChannelTemplate()
        if message is not None:
            spec = resource.messages.get(message)
            if spec is None:
                hint = did_you_mean(message, resource.messages)
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
