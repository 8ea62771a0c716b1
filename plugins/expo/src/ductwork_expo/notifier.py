"""``expo`` notifier: push notifications through Expo's push API (``/--/api/v2/push/send``).

Features: the ``push`` channel. One Expo message per device token (``to``): ``title`` =
``subject``, ``body``, ``data``, and the optional ``sound``, ``priority``, ``ttl``,
``channel_id``, ``badge`` options. Messages go in requests of at most 100 (Expo's limit per
request), several requests at once (``concurrency``, default 6 as Expo's own SDK does). Each
message gets a push *ticket*; an ``ok`` ticket's id (which later fetches the delivery receipt
from ``/--/api/v2/push/getReceipts``, see :meth:`ExpoNotifier.receipts`) is in
``Receipt.provider_ids``.

Configuration: ``access_token`` (``SecretStr``, optional: needed when the project enables
"enhanced push security"), ``base_url`` (``https://exp.host``; a test server's in tests),
``timeout`` (30 s), ``max_connections`` (10), ``concurrency`` (6), ``batch_size`` (100), and the
message defaults above.

Errors (nothing is retried here; the processor's send loop retries 429/5xx and connection
failures): a ticket ``DeviceNotRegistered`` -> :class:`NotFoundError` naming the token;
``MessageTooBig`` -> :class:`ValidationError`; ``MessageRateExceeded`` -> :class:`HTTPStatusError`
429 (retried); ``InvalidCredentials``/``MismatchSenderId`` -> :class:`AuthenticationError`;
when some tokens were accepted and others refused for good, the receipt lists the accepted ones
(see :func:`ductwork.providers.http_api.settle`). A request Expo refuses as a whole (``errors``,
HTTP >= 400) -> :class:`HTTPStatusError` with its status, code and ``Retry-After``; 401/403 ->
:class:`AuthenticationError`; unreachable or timed out -> :class:`ConnectionFailedError`.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Literal

from ductwork.config.durations import Duration
from ductwork.providers.http_api import APINotifier, APIOptions, Kind, Refusal, json_body, settle
from ductwork.providers.notifier import Notification, Receipt
from pydantic import Field, SecretStr

__all__ = ["ExpoNotifier", "ExpoOptions"]

SEND = "/--/api/v2/push/send"
RECEIPTS = "/--/api/v2/push/getReceipts"
LIMIT = 100  # messages per request, Expo's limit
_KINDS: dict[str, Kind] = {
    "DeviceNotRegistered": "gone",
    "MessageTooBig": "invalid",
    "MessageRateExceeded": "retry",
    "InvalidCredentials": "auth",
    "MismatchSenderId": "auth",
}


class ExpoOptions(APIOptions):
    """Options of the ``expo`` notifier."""

    base_url: str = "https://exp.host"
    access_token: SecretStr | None = None
    concurrency: int = Field(6, ge=1, le=100)
    batch_size: int = Field(LIMIT, ge=1, le=LIMIT)
    sound: Literal["default"] | None = None
    priority: Literal["default", "normal", "high"] | None = None
    ttl: Duration | None = None
    channel_id: str | None = None
    badge: int | None = Field(None, ge=0)


class ExpoNotifier(APINotifier[ExpoOptions]):
    """Sends push notifications through Expo's push API."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"push"})

    def headers(self) -> dict[str, str]:
        token = self.options.access_token
        headers = {"Accept-Encoding": "gzip, deflate"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        return headers

    def message(self, notification: Notification, token: str) -> dict[str, Any]:
        """The Expo message for one device token."""
        opts = self.options
        message: dict[str, Any] = {"to": token, "body": notification.body}
        optional = {
            "title": notification.subject,
            "data": notification.data or None,
            "sound": opts.sound,
            "priority": opts.priority,
            "ttl": None if opts.ttl is None else int(opts.ttl),
            "channelId": opts.channel_id,
            "badge": opts.badge,
        }
        message.update({k: v for k, v in optional.items() if v is not None})
        return message

    async def deliver(self, notification: Notification) -> Receipt:
        key = notification.message_id()  # the same on a retry of this notification
        done = self.accepted.done(key)
        tokens = [t for t in dict.fromkeys(notification.to) if t not in done]
        size = self.options.batch_size
        batches = [tokens[i : i + size] for i in range(0, len(tokens), size)]
        gate = asyncio.Semaphore(self.options.concurrency)

        async def one(batch: list[str]) -> list[dict[str, Any]]:
            async with gate:
                return await self._send(notification, batch)

        results = await asyncio.gather(*(one(b) for b in batches), return_exceptions=True)
        accepted: dict[str, str] = {}
        refused: list[Refusal] = []
        failure: BaseException | None = None
        for batch, tickets in zip(batches, results, strict=True):
            if isinstance(tickets, BaseException):
                failure = failure or tickets
                continue
            for token, ticket in zip(batch, tickets, strict=True):
                if ticket.get("status") == "ok":
                    accepted[token] = str(ticket.get("id", ""))
                else:
                    refused.append(_refusal(token, ticket))
        self.accepted.add(key, accepted)
        if failure is not None:  # a whole request failed: its error, after keeping the rest
            raise failure
        return settle(self, notification, {**done, **accepted}, refused)

    async def _send(self, notification: Notification, batch: list[str]) -> list[dict[str, Any]]:
        api = self.api
        what = f"Expo push send of {len(batch)} message(s)"
        body = [self.message(notification, token) for token in batch]
        response = await api.request("POST", SEND, what=what, json=body)
        answer = json_body(self, response, what) if response.content else {}
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if response.status_code >= 400 or errors:
            codes = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors or [])
            if response.status_code < 400:  # errors in a 200: the request as a whole failed
                raise self.error(f"{what} failed: {codes}")
            raise api.status_error(response, what, codes)
        tickets = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(tickets, list) or len(tickets) != len(batch):
            raise self.error(f"{what}: expected {len(batch)} ticket(s), got {answer!r:.300}")
        return tickets

    async def receipts(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Expo's delivery receipts for ticket ids (``Receipt.provider_ids``), by id.

        Each is ``{"status": "ok"}`` or ``{"status": "error", "message": …, "details":
        {"error": …}}``; ids whose receipt is not ready yet are absent. Up to 1,000 ids a call.
        """
        answer = await self.api.call(
            "POST", RECEIPTS, what="Expo getReceipts", json={"ids": ids[:1000]}
        )
        data = answer.get("data") if isinstance(answer, dict) else None
        return data if isinstance(data, dict) else {}


def _refusal(token: str, ticket: dict[str, Any]) -> Refusal:
    details = ticket.get("details") if isinstance(ticket.get("details"), dict) else {}
    code = str((details or {}).get("error") or "error")
    kind = _KINDS.get(code, "failed")
    return Refusal(
        token,
        kind,
        code,
        str(ticket.get("message", "")),
        status=429 if kind == "retry" else None,
    )
