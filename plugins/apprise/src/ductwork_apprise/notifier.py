"""``apprise`` notifier: the 100+ services Apprise reaches, each named by an Apprise URL.

Features: one notifier holds a list of Apprise URLs (``slack://…``, ``tgram://…``,
``mailto://…``, ``ntfy://…``, ``json://…``, …); a notification goes to every URL that serves its
channel, concurrently, through Apprise's ``async_notify`` (its worker threads; the event loop
never waits on a service). Mapping: ``title`` = ``subject``; ``body`` = ``html`` with
``body_format=html`` when the notification has HTML, else ``body`` as text; attachments are
written to a private temporary folder for the send (services that take none ignore them, as
Apprise does; a content type Python's ``mimetypes`` does not know is left for Apprise to guess
from the filename). A URL may hold
the placeholder ``{to}``: it is replaced by the notification's recipients, URL-quoted and
comma-separated (``mailto://relay?to={to}``, ``ntfy://host/{to}``); a URL without it goes to
its fixed target whatever ``to`` says.

Configuration: ``urls`` (a list; each an Apprise URL string, usually a ``${secret:…}``
reference, or ``{url, channels}`` to serve only some channels), ``channels`` (the channels this
notifier declares; default ``[push]``), ``timeout`` (the whole send, default 30 s; per-service
network timeouts are Apprise URL parameters such as ``?cto=4&rto=4``). URLs are secrets: never
in a message, a log line or ``config show``; a failing one is named by its position, its
service and the scheme and host of Apprise's privacy form of it (tokens and passwords masked,
no path).

Errors: a URL Apprise does not recognise -> config error naming ``urls[i]`` at load. A service
that fails -> the error names each failing ``urls[i]`` with Apprise's reason: an HTTP status
in the reason -> :class:`HTTPStatusError` (``status`` set); a connection error or a timeout ->
:class:`ConnectionFailedError`; anything else -> :class:`ProviderError`. Nothing is retried here
(the processor's send path retries). The URLs that accepted a notification are remembered by
its message id (in this process, for the last 10,000), so a retry of it (the send loop's, or a
feature step's with the same ``idempotency_key``) goes only to the URLs that failed.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import quote, urlsplit

import apprise
from apprise.attachment.file import AttachFile
from ductwork.config.durations import Duration
from ductwork.errors import (
    ConnectionFailedError,
    HTTPStatusError,
    ProviderError,
)
from ductwork.providers.base import Options
from ductwork.providers.http_api import Accepted, where
from ductwork.providers.notifier import Channel, Notification, Notifier, Receipt
from pydantic import Field, SecretStr, field_validator, model_validator

__all__ = ["AppriseNotifier", "AppriseOptions", "AppriseTarget"]

PLACEHOLDER = "{to}"
_REMEMBERED = 10_000  # message ids whose accepting URLs are kept for a retry
_STATUS = re.compile(r"\berror=(\d{3})\b|\((\d{3})\)")
_CONNECTION = re.compile(r"connection error|timed out|timeout", re.IGNORECASE)
_ALL: list[Channel] = ["email", "push", "sms", "callback"]
_PUSH: list[Channel] = ["push"]


def _attachments(notification: Notification, folder: Path) -> Any:
    """The attachments as files in ``folder`` (several Apprise services read them by path)."""
    if not notification.attachments:
        return None
    attach = apprise.AppriseAttachment()
    for i, att in enumerate(notification.attachments):
        path = folder / str(i)  # the filename is only the name shown: never a path on disk
        path.write_bytes(bytes(att.content))
        # Apprise takes only the types Python's mimetypes knows; else it guesses by name.
        known = att.content_type in mimetypes.types_map.values()
        mimetype = att.content_type if known else None
        attach.add(AttachFile(str(path), name=att.filename, mimetype=mimetype))  # type: ignore[no-untyped-call]
    return attach


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "?"


class AppriseTarget(Options):
    """One Apprise URL and the channels it serves (default: every channel of the notifier)."""

    url: SecretStr
    channels: list[Channel] | None = None

    @field_validator("url")
    @classmethod
    def _known(cls, url: SecretStr) -> SecretStr:
        text = url.get_secret_value().replace(PLACEHOLDER, "recipient")
        if apprise.Apprise.instantiate(text, suppress_exceptions=True) is None:
            raise ValueError(
                f"Apprise does not recognise this {_scheme(text)}:// URL (unknown scheme, or a "
                "part missing or malformed); see the Apprise wiki page of that service"
            )
        return url


class AppriseOptions(Options):
    """Options of the ``apprise`` notifier."""

    urls: list[AppriseTarget] = Field(min_length=1)
    channels: list[Channel] = Field(default_factory=lambda: list(_PUSH), min_length=1)
    timeout: Duration = Field(30.0, gt=0)

    @field_validator("urls", mode="before")
    @classmethod
    def _strings_are_targets(cls, urls: Any) -> Any:
        if isinstance(urls, list):
            return [{"url": u} if isinstance(u, str | SecretStr) else u for u in urls]
        return urls

    @model_validator(mode="after")
    def _check(self) -> Self:
        for i, target in enumerate(self.urls):
            extra = sorted(set(target.channels or ()) - set(self.channels))
            if extra:
                raise ValueError(
                    f"urls[{i}] serves {', '.join(extra)}, which the notifier does not declare "
                    f"(channels: {', '.join(self.channels)}); add it to channels"
                )
        for channel in self.channels:
            if not any(channel in (t.channels or self.channels) for t in self.urls):
                raise ValueError(f"channel {channel!r} has no URL serving it; add one to urls")
        return self


class AppriseNotifier(Notifier[AppriseOptions]):
    """Sends through Apprise to the services its URLs name."""

    capabilities: ClassVar[frozenset[str]] = frozenset(_ALL)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What this instance serves is its options' channels (the class can serve all four).
        vars(self)["capabilities"] = frozenset(self.options.channels)
        self._accepted: Accepted[int] = Accepted(_REMEMBERED)

    @property
    def endpoint(self) -> str:
        schemes = sorted({_scheme(t.url.get_secret_value()) for t in self.options.urls})
        return f"apprise ({', '.join(s + '://' for s in schemes)})"

    @property
    def native(self) -> type[apprise.Apprise]:
        """The ``apprise.Apprise`` class (one instance is built per send)."""
        return apprise.Apprise

    async def deliver(self, notification: Notification) -> Receipt:
        key = notification.message_id()  # the same on a retry of this notification
        done = self._accepted.done(key)
        targets = [
            i
            for i, t in enumerate(self.options.urls)
            if notification.channel in (t.channels or self.options.channels) and i not in done
        ]
        if targets:
            accepted, failures = await self._notify(notification, targets)
            self._accepted.add(key, dict.fromkeys(accepted, ""))
            if failures:
                raise self._failure(failures, accepted)
        return Receipt(
            id=notification.receipt_id(key),
            channel=notification.channel,
            to=list(notification.to),
        )

    async def _notify(
        self, notification: Notification, targets: list[int]
    ) -> tuple[list[int], list[tuple[int, Any]]]:
        """Send to ``targets`` (indexes into ``urls``); (accepted, [(index, failed result)])."""
        recipients = ",".join(quote(to, safe="@") for to in notification.to)
        hub = apprise.Apprise()
        for i in targets:
            url = self.options.urls[i].url.get_secret_value().replace(PLACEHOLDER, recipients)
            service = apprise.Apprise.instantiate(url, suppress_exceptions=True)
            if service is None:  # a recipient made the URL unreadable
                raise self.error(
                    f"urls[{i}] ({_scheme(url)}://) cannot carry the recipients {notification.to}"
                )
            hub.add(service)
        html = notification.html is not None
        body = (notification.html if html else notification.body) or notification.subject or ""
        with tempfile.TemporaryDirectory(prefix="ductwork-apprise-") as folder:
            attach = await asyncio.to_thread(_attachments, notification, Path(folder))
            result = await hub.async_notify(
                body=body,
                title=notification.subject or "",
                body_format=apprise.NotifyFormat.HTML if html else apprise.NotifyFormat.TEXT,
                attach=attach,
                timeout=self.options.timeout,
            )
        outcomes = list(result)
        if len(outcomes) != len(targets):  # the call itself was refused (e.g. the message)
            reasons = "; ".join(e.message for e in result.logs()) or "no service was notified"
            raise self.error(f"Apprise refused the notification: {reasons}")
        accepted = [i for i, out in zip(targets, outcomes, strict=True) if bool(out)]
        failed = [(i, out) for i, out in zip(targets, outcomes, strict=True) if not bool(out)]
        return accepted, failed

    def _failure(self, failures: list[tuple[int, Any]], accepted: list[int]) -> ProviderError:
        """One error naming every failing URL (by position and privacy form) and its reason."""
        parts: list[str] = []
        statuses: list[int] = []
        connection = True
        for i, out in failures:
            reasons = [e.message for e in out.logs() if e.level in ("WARNING", "ERROR")]
            text = " ".join(reasons)
            found = _STATUS.search(text)
            if found:
                statuses.append(int(found[1] or found[2]))
            timed_out = out.status == apprise.AppriseResultStatus.TIMEOUT
            connection = connection and not found and (timed_out or bool(_CONNECTION.search(text)))
            why = "timed out" if timed_out and not text else (text or "failed")
            # Apprise's privacy form masks passwords and tokens in the host; a path can still
            # hold one (json://host/<token>), so only scheme://host is shown.
            parsed = urlsplit(out.url or "")
            shown = f"{parsed.scheme}://{parsed.netloc}"
            parts.append(f"urls[{i}] ({out.name}, {shown}): {why}")
        sent = f"; urls {accepted} accepted it" if accepted else ""
        message = f"Apprise delivery failed: {'; '.join(parts)}{sent}"
        if statuses:
            return HTTPStatusError(message, status=max(statuses), body=message, **where(self))
        if connection:
            return self.error(message, ConnectionFailedError)
        return self.error(message)
