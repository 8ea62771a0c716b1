"""``webhook`` notifier: the ``callback`` channel, signed per Standard Webhooks.

Each recipient in ``to`` is an http(s) URL; the notification is POSTed to each (at once) as
JSON::

    {"id": "<message id>", "type": "<subject, or 'notification'>",
     "timestamp": "2026-12-04T07:50:12.123456Z", "message": "<body>", "data": {...}}

with the headers ``webhook-id`` (the message id: derived from the idempotency key when there is
one, so a retried or repeated send keeps it), ``webhook-timestamp`` (unix seconds) and
``webhook-signature`` (``v1,<base64 HMAC-SHA256>``, one per secret; see
:mod:`ductwork.webhooks`), plus ``content-type: application/json``, the resource's ``headers``
and the notification's own ``headers``.

Configuration: ``secret`` (one ``whsec_…`` secret or a list of them: during a rotation every
one signs; a secret reference such as ``${secret:hooks}``, never shown), ``timeout`` (seconds
per request, default 10), ``allow_private`` (default false: loopback, private, link-local,
multicast and unspecified targets are refused, see :mod:`ductwork.builtin._targets`),
``headers`` (sent with every delivery), ``max_connections`` (default 100) and the TLS options
``ca_file``/``cert_file``/``key_file``/``key_password``. Redirects are not followed (a redirect
could lead to a private address): point the URL at the final endpoint. Proxies from the
environment are not used.

Errors: a bad URL, a refused address -> :class:`ValidationError` naming the recipient, before
anything is sent; refused, unreachable or timed out -> :class:`ConnectionFailedError`; a
status >= 400 -> :class:`HTTPStatusError` (with ``retry_after``); the send loop retries the
first and 429/5xx (see :func:`ductwork.providers.notifier.retryable`). A recipient that already
accepted the message (same id, in this process) is not posted again when the send is retried.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections import OrderedDict
from typing import ClassVar, Self

import httpcore
from pydantic import Field, SecretStr, field_validator, model_validator

from ductwork._lines import check_headers
from ductwork._redact import redact, register_secret
from ductwork.builtin._targets import CheckedBackend, Target, resolve_checked, target
from ductwork.config.durations import Duration
from ductwork.errors import (
    ConnectionFailedError,
    HTTPStatusError,
    ProviderError,
    ValidationError,
)
from ductwork.providers.base import ProviderContext
from ductwork.providers.notifier import Notification, Notifier, Receipt, retryable
from ductwork.providers.tls import TlsOptions, client_context, tls_failure
from ductwork.webhooks import secret_key, sign

__all__ = ["WebhookNotifier", "WebhookOptions", "webhook_body"]

# Headers ductwork writes itself; neither the resource nor a notification may set them.
RESERVED = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
    }
)
_EXCERPT = 500
_READ_MAX = 64 * 1024
_REMEMBERED = 10_000


class WebhookOptions(TlsOptions):
    """Options of the ``webhook`` notifier."""

    secret: SecretStr | list[SecretStr]
    timeout: Duration = Field(10.0, gt=0)
    allow_private: bool = False
    headers: dict[str, str] = Field(default_factory=dict)
    max_connections: int = Field(100, ge=1)

    @field_validator("secret")
    @classmethod
    def _secrets(cls, value: SecretStr | list[SecretStr]) -> SecretStr | list[SecretStr]:
        given = value if isinstance(value, list) else [value]
        if not given:
            raise ValueError("give at least one whsec_… secret")
        for i, one in enumerate(given):
            text = one.get_secret_value()
            register_secret(text)  # hidden everywhere, literal or from a reference
            register_secret(text.strip().removeprefix("whsec_"))
            where = "secret" if not isinstance(value, list) else f"secret[{i}]"
            try:
                secret_key(text, where=where, strict=True)
            except ValidationError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _headers(self) -> Self:
        _check_headers(self.headers, "option 'headers'")
        return self

    def keys(self) -> list[bytes]:
        """The HMAC keys, in the order given."""
        given = self.secret if isinstance(self.secret, list) else [self.secret]
        return [secret_key(s.get_secret_value()) for s in given]


def _check_headers(headers: dict[str, str], what: str) -> None:
    try:
        check_headers(headers, what)
    except ValidationError as exc:
        raise ValueError(str(exc)) from None
    for name in headers:
        if name.lower() in RESERVED:
            raise ValueError(f"{what}[{name!r}]: ductwork writes {name} itself")


def webhook_body(notification: Notification, message_id: str) -> bytes:
    r"""The JSON a webhook delivery carries (compact; non-ASCII text as ``\u`` escapes)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(
        {
            "id": message_id,
            "type": notification.subject or "notification",
            "timestamp": now,
            "message": notification.body,
            "data": notification.data,
        },
        separators=(",", ":"),  # ASCII: text JSON allows (a lone surrogate too) as \u escapes
        default=str,
    ).encode()


class WebhookNotifier(Notifier[WebhookOptions]):
    """POSTs signed JSON to each recipient URL."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"callback"})

    def __init__(
        self, options: WebhookOptions | None = None, *, context: ProviderContext | None = None
    ) -> None:
        super().__init__(options, context=context)
        self._keys = self.options.keys()
        self._pool: httpcore.AsyncConnectionPool | None = None
        self._accepted: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        await self._client()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()

    async def _client(self) -> httpcore.AsyncConnectionPool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = httpcore.AsyncConnectionPool(
                        ssl_context=client_context(self.options, self.context),
                        max_connections=self.options.max_connections,
                        keepalive_expiry=30.0,
                        network_backend=self._backend(),
                    )
        return self._pool

    def _backend(self) -> httpcore.AsyncNetworkBackend:
        """How connections are made: to checked addresses only, unless ``allow_private``."""
        return CheckedBackend(None if self.options.allow_private else self._addresses)

    async def _addresses(self, host: str, port: int) -> list[str]:
        where = f"'to' (connecting to {host})"
        return await resolve_checked(host, port, where=where, timeout=self.options.timeout)

    async def resolve(self, target: Target) -> None:
        """Refuse ``target`` unless every address of its host may be sent to."""
        if not self.options.allow_private:
            await resolve_checked(
                target.host, target.port, where=target.where, timeout=self.options.timeout
            )

    async def deliver(self, notification: Notification) -> Receipt:
        targets = [target(url, f"'to'[{i}]") for i, url in enumerate(notification.to)]
        extra = dict(notification.headers)
        try:
            _check_headers(extra, "notification field 'headers'")
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        await asyncio.gather(*(self.resolve(t) for t in targets))  # all refused before any POST
        message_id = notification.message_id()
        body = webhook_body(notification, message_id)
        pool = await self._client()
        todo = [t for t in targets if (message_id, t.url) not in self._accepted]
        results = await asyncio.gather(
            *(self._post(pool, t, message_id, body, extra) for t in todo),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:  # one that a retry can fix first: the others are not sent twice anyway
            raise next((f for f in failures if retryable(f)), failures[0])
        return Receipt(
            id=notification.receipt_id(message_id),
            channel=notification.channel,
            to=list(notification.to),
        )

    async def _post(
        self,
        pool: httpcore.AsyncConnectionPool,
        to: Target,
        message_id: str,
        body: bytes,
        extra: dict[str, str],
    ) -> None:
        stamp = int(time.time())
        headers = [
            ("host", to.host_header),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("user-agent", "ductwork-webhook"),
            *self.options.headers.items(),
            *extra.items(),
            ("webhook-id", message_id),
            ("webhook-timestamp", str(stamp)),
            ("webhook-signature", sign(message_id, stamp, body, self._keys)),
        ]
        timeout = self.options.timeout
        url = httpcore.URL(scheme=to.scheme, host=to.host, port=to.port, target=to.target)
        try:
            async with pool.stream(
                "POST",
                url,
                headers=headers,
                content=body,
                extensions={
                    "timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)
                },
            ) as response:
                status = response.status
                excerpt = b""
                async for chunk in response.aiter_stream():
                    if len(excerpt) < _READ_MAX:
                        excerpt += chunk
                retry_after = next(
                    (
                        v.decode("latin-1")
                        for k, v in response.headers
                        if k.lower() == b"retry-after"
                    ),
                    None,
                )
        except httpcore.TimeoutException as exc:
            raise self._failed(to, f"timed out after {timeout:g}s", ConnectionFailedError) from exc
        except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
            why = tls_failure(exc) or f"could not connect ({type(exc).__name__}: {exc})"
            raise self._failed(to, why, ConnectionFailedError) from exc
        except httpcore.UnsupportedProtocol as exc:
            raise ValidationError(f"notification field {to.where}: {exc}") from None
        if 200 <= status < 300:
            self._remember(message_id, to.url)
            return
        text = redact(excerpt[:_EXCERPT].decode("utf-8", "replace"))
        if status < 400:
            raise self._failed(
                to,
                f"answered {status} (a redirect); webhooks do not follow redirects: use the "
                "final URL",
                ProviderError,
            )
        raise HTTPStatusError(
            f"webhook POST to {to.origin} ({to.where}) answered {status}: {text}",
            status=status,
            body=text,
            retry_after=retry_after,
            resource=self.context.resource,
            env=self.context.env,
            provider=self.context.provider or "webhook",
            endpoint=to.origin,
        )

    def _failed(self, to: Target, why: str, cls: type[ProviderError]) -> ProviderError:
        return cls(
            f"webhook POST to {to.origin} ({to.where}) {why}",
            resource=self.context.resource,
            env=self.context.env,
            provider=self.context.provider or "webhook",
            endpoint=to.origin,
        )

    def _remember(self, message_id: str, url: str) -> None:
        self._accepted[message_id, url] = None
        while len(self._accepted) > _REMEMBERED:
            self._accepted.popitem(last=False)
