"""``postmark`` notifier: email through Postmark's HTTP API (``/email/batch``).

Features: the ``email`` channel: ``From`` (the notification's ``sender`` or the ``sender``
option), ``To``, ``Subject``, ``TextBody``, ``HtmlBody``, the notification's extra ``Headers``,
``Attachments`` (base64), ``MessageStream``, ``Tag``, ``TrackOpens``, ``TrackLinks``. Every send
goes to the batch endpoint, which answers per message. ``recipients: together`` (default, as
SMTP does) sends one message to all of ``to`` (in messages of at most 50 recipients, Postmark's
limit); ``recipients: each`` sends one message per recipient, so recipients do not see each
other and each is accepted or refused on its own. Postmark's ``MessageID``s are in
``Receipt.provider_ids`` (in ``to`` order).

Configuration: ``server_token`` (``SecretStr``, required: the server's API token, sent as
``X-Postmark-Server-Token``), ``sender``, ``message_stream`` (``outbound``), ``tag``,
``track_opens``, ``track_links``, ``recipients``, ``base_url`` (``https://api.postmarkapp.com``; a
test server's in tests), ``timeout`` (30 s), ``max_connections`` (10).

Errors (nothing is retried here): a message refused with ``ErrorCode`` 406 (inactive recipient:
hard bounce or spam complaint) -> :class:`NotFoundError` naming the addresses; 300 (invalid
request) or 411 (forbidden attachment type) -> :class:`ValidationError`; 429 -> HTTP 429 and 100
(maintenance) -> 503 as :class:`HTTPStatusError` (retried); other codes -> :class:`ProviderError`.
When some recipients were accepted and others refused for good, the receipt lists the accepted.
A request refused as a whole -> :class:`HTTPStatusError` with Postmark's ``ErrorCode`` and
``Message``; 401 (``ErrorCode`` 10, bad token) -> :class:`AuthenticationError`; unreachable or
timed out -> :class:`ConnectionFailedError`.
"""

from __future__ import annotations

import base64
import re
from typing import Any, ClassVar, Literal

from ductwork.providers.http_api import APINotifier, APIOptions, Kind, Refusal, settle
from ductwork.providers.notifier import Notification, Receipt
from pydantic import Field, SecretStr

__all__ = ["PostmarkNotifier", "PostmarkOptions"]

BATCH = "/email/batch"
MAX_RECIPIENTS = 50  # To + Cc + Bcc of one message
MAX_MESSAGES = 500  # per batch request
_KINDS: dict[int, tuple[Kind, int | None]] = {
    406: ("gone", None),
    300: ("invalid", None),
    411: ("invalid", None),
    429: ("retry", 429),
    100: ("retry", 503),
}
_INACTIVE = re.compile(r"inactive addresses: (.+?)\.(?:\s|$)")


class PostmarkOptions(APIOptions):
    """Options of the ``postmark`` notifier."""

    base_url: str = "https://api.postmarkapp.com"
    server_token: SecretStr
    sender: str = "ductwork@localhost"
    message_stream: str = "outbound"
    tag: str | None = Field(None, max_length=1000)
    track_opens: bool | None = None
    track_links: Literal["None", "HtmlAndText", "HtmlOnly", "TextOnly"] | None = None
    recipients: Literal["together", "each"] = "together"


class PostmarkNotifier(APINotifier[PostmarkOptions]):
    """Sends email through Postmark's API."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"email"})

    def headers(self) -> dict[str, str]:
        return {"X-Postmark-Server-Token": self.options.server_token.get_secret_value()}

    def message(self, notification: Notification, to: list[str]) -> dict[str, Any]:
        """The Postmark message for ``to``."""
        opts = self.options
        message: dict[str, Any] = {
            "From": notification.sender or opts.sender,
            "To": ", ".join(to),
            "Subject": notification.subject or "",
            "TextBody": notification.body,
            "MessageStream": opts.message_stream,
        }
        optional = {
            "HtmlBody": notification.html,
            "Tag": opts.tag,
            "TrackOpens": opts.track_opens,
            "TrackLinks": opts.track_links,
            "Headers": [{"Name": k, "Value": v} for k, v in notification.headers.items()],
            "Attachments": [
                {
                    "Name": att.filename,
                    "Content": base64.b64encode(bytes(att.content)).decode("ascii"),
                    "ContentType": att.content_type,
                }
                for att in notification.attachments
            ],
        }
        message.update({k: v for k, v in optional.items() if v not in (None, [])})
        return message

    async def deliver(self, notification: Notification) -> Receipt:
        key = notification.message_id()  # the same on a retry of this notification
        done = self.accepted.done(key)
        todo = [to for to in dict.fromkeys(notification.to) if to not in done]
        step = 1 if self.options.recipients == "each" else MAX_RECIPIENTS
        groups = [todo[i : i + step] for i in range(0, len(todo), step)]
        accepted: dict[str, str] = {}
        refused: list[Refusal] = []
        for start in range(0, len(groups), MAX_MESSAGES):
            chunk = groups[start : start + MAX_MESSAGES]
            body = [self.message(notification, group) for group in chunk]
            try:
                results = await self._send(body)
            finally:
                self.accepted.add(key, accepted)
            for group, result in zip(chunk, results, strict=True):
                if result.get("ErrorCode") == 0:
                    accepted.update(dict.fromkeys(group, str(result.get("MessageID", ""))))
                else:
                    refused.extend(_refusals(group, result))
        self.accepted.add(key, accepted)
        return settle(self, notification, {**done, **accepted}, refused)

    async def _send(self, body: list[dict[str, Any]]) -> list[dict[str, Any]]:
        api = self.api
        what = f"Postmark batch of {len(body)} message(s)"
        response = await api.request("POST", BATCH, what=what, json=body)
        if response.status_code >= 400:
            detail = ""
            try:
                error = response.json()
                detail = f"ErrorCode {error.get('ErrorCode')}: {error.get('Message')}"
            except (ValueError, AttributeError):
                pass
            raise api.status_error(response, what, detail)
        results = response.json() if response.content else None
        if not isinstance(results, list) or len(results) != len(body):
            raise self.error(f"{what}: expected {len(body)} result(s), got {results!r:.300}")
        return results


def _refusals(group: list[str], result: dict[str, Any]) -> list[Refusal]:
    """Why Postmark refused the message to ``group``: per recipient where it says so."""
    code = int(result.get("ErrorCode", -1))
    text = str(result.get("Message", ""))
    kind, status = _KINDS.get(code, ("failed", None))
    named = _INACTIVE.search(text)
    if code == 406 and named and len(group) > 1:
        inactive = {a.strip().lower() for a in named[1].split(",")}
        # The message was not sent: the inactive ones are gone, the others refused with them.
        return [
            Refusal(to, "gone", "406", text)
            if _address(to) in inactive
            else Refusal(to, "failed", "406", "not sent: it also went to inactive recipients")
            for to in group
        ]
    return [Refusal(to, kind, str(code), text, status=status) for to in group]


def _address(mailbox: str) -> str:
    found = re.search(r"<([^<>]+)>\s*$", mailbox)
    return (found[1] if found else mailbox).strip().lower()
