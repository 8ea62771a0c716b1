"""What notifiers over a vendor's HTTP JSON API share: one client, errors and outcomes, once.

The push and email API plugins (``ductwork-expo``, ``ductwork-fcm``, ``ductwork-postmark``)
build an :class:`APIClient` in ``open()`` and close it in ``close()``; it holds one pooled
``httpx.AsyncClient`` and translates what goes wrong the same way for all of them:

- refused, reset, unreachable, TLS failure, timeout -> :class:`ConnectionFailedError`;
- 401 or 403 -> :class:`AuthenticationError`;
- any other status >= 400 -> :class:`HTTPStatusError` with ``status``, a redacted excerpt of the
  body and the ``Retry-After`` header (``retry_after``).

A vendor that answers per recipient (a push ticket per token, an error per address) reports each
refusal as a :class:`Refusal`, and :func:`settle` turns the whole send into a
:class:`Receipt` or one error, by the notifier contract (the processor's send loop retries only
:class:`ConnectionFailedError` and :class:`HTTPStatusError` 429/5xx). :class:`Accepted`
remembers, per message id (:meth:`Notification.message_id`: derived from the idempotency key, and
the same on every retry of one notification), the recipients that already accepted it, so a
retry after a partial failure goes only to the others. None of this retries: the send loop does.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal

import httpx
from pydantic import Field
from typing_extensions import TypeVar

from ductwork._redact import get_logger, redact
from ductwork.config.durations import Duration
from ductwork.errors import (
    AuthenticationError,
    ConnectionFailedError,
    DuctworkError,
    HTTPStatusError,
    NotFoundError,
    ProviderError,
    ValidationError,
)
from ductwork.providers.base import Options, Provider
from ductwork.providers.notifier import Notification, Notifier, Receipt

__all__ = ["APIClient", "APINotifier", "APIOptions", "Accepted", "Refusal", "settle"]

_EXCERPT = 500
_log = get_logger("ductwork.notifications")
K = TypeVar("K", bound=Hashable)

#: How a vendor refused one recipient: ``gone`` (unregistered token, unknown address: never
#: retried, :class:`NotFoundError`), ``invalid`` (this message can never go, e.g. too big:
#: :class:`ValidationError`), ``auth`` (credentials: :class:`AuthenticationError`), ``retry``
#: (rate limit, unavailable: :class:`HTTPStatusError` with ``status``, retried), ``failed``.
Kind = Literal["gone", "invalid", "auth", "retry", "failed"]


class APIOptions(Options):
    """Options every HTTP API notifier has; plugins give ``base_url`` its vendor default."""

    base_url: str = Field("", description="the API's base URL (a test server's, in tests)")
    timeout: Duration = Field(30.0, gt=0)
    max_connections: int = Field(10, ge=1, le=1000)


class APIClient:
    """One pooled ``httpx.AsyncClient``; its errors carry the provider's context."""

    def __init__(
        self,
        provider: Provider[Any],
        options: APIOptions,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        limits = httpx.Limits(
            max_connections=options.max_connections,
            max_keepalive_connections=options.max_connections,
        )
        self.http = httpx.AsyncClient(
            base_url=options.base_url,
            timeout=options.timeout,
            limits=limits,
            headers={"Accept": "application/json", **(headers or {})},
        )

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self.http.aclose()

    async def request(self, method: str, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
        """Send one request; transport failures raise :class:`ConnectionFailedError`."""
        try:
            return await self.http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise self.provider.error(f"{what} timed out", ConnectionFailedError) from exc
        except httpx.TransportError as exc:
            raise self.provider.error(
                f"{what}: could not connect ({type(exc).__name__}: {exc})", ConnectionFailedError
            ) from exc

    async def call(self, method: str, url: str, *, what: str, **kwargs: Any) -> Any:
        """:meth:`request`, then :meth:`status_error` for a status >= 400, else the JSON body."""
        response = await self.request(method, url, what=what, **kwargs)
        if response.status_code >= 400:
            raise self.status_error(response, what)
        return json_body(self.provider, response, what)

    def status_error(self, response: httpx.Response, what: str, detail: str = "") -> ProviderError:
        """The error for an answer >= 400: 401/403 refused credentials, else the status."""
        status = response.status_code
        excerpt = redact(response.text[:_EXCERPT])
        message = f"{what} answered {status}: {detail or excerpt}"
        if status in (401, 403):
            return self.provider.error(message, AuthenticationError)
        return HTTPStatusError(
            message,
            status=status,
            body=excerpt,
            retry_after=response.headers.get("retry-after"),
            **where(self.provider),
        )


APIOptionsT = TypeVar("APIOptionsT", bound=APIOptions, default=APIOptions, covariant=True)


class APINotifier(Notifier[APIOptionsT]):
    """A notifier over an HTTP JSON API: its :class:`APIClient` from ``open()`` to ``close()``.

    Subclasses give :meth:`headers` (credentials) and ``deliver``; ``self.accepted`` remembers
    per message id the recipients that took a notification (see :class:`Accepted`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: APIClient | None = None
        self.accepted: Accepted[str] = Accepted()

    @property
    def endpoint(self) -> str:
        """The API's base URL."""
        return self.options.base_url

    @property
    def native(self) -> httpx.AsyncClient:
        """The ``httpx.AsyncClient`` (after ``open()``)."""
        return self.api.http

    @property
    def api(self) -> APIClient:
        """The client; :class:`ProviderError` before ``open()`` or after ``close()``."""
        if self._client is None:
            raise self.error(f"the {self.context.provider} notifier is not open; call open()")
        return self._client

    def headers(self) -> dict[str, str]:
        """Headers of every request (credentials); none by default."""
        return {}

    async def open(self) -> None:
        """Build the client (headers from :meth:`headers`)."""
        self._client = APIClient(self, self.options, headers=self.headers())

    async def close(self) -> None:
        """Close the client's connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def where(provider: Provider[Any]) -> dict[str, Any]:
    """The context keywords of ``provider``'s errors (resource, env, provider, endpoint)."""
    return provider.error("").context()


def json_body(provider: Provider[Any], response: httpx.Response, what: str) -> Any:
    """The response's JSON, or :class:`ProviderError` saying the API answered something else."""
    try:
        return response.json()
    except ValueError:
        raise provider.error(
            f"{what} answered {response.status_code} with a body that is not JSON: "
            f"{redact(response.text[:_EXCERPT])!r}"
        ) from None


@dataclass(frozen=True)
class Refusal:
    """One recipient the vendor refused: its ``code`` and ``message``, and what kind."""

    recipient: str
    kind: Kind
    code: str
    message: str = ""
    status: int | None = None  # for ``retry``: 429 (rate) or 503 (unavailable)
    retry_after: str | None = None

    def describe(self) -> str:
        """``recipient: CODE (message)``."""
        return f"{self.recipient!r}: {self.code}" + (f" ({self.message})" if self.message else "")


def settle(
    provider: Provider[Any],
    notification: Notification,
    accepted: Mapping[str, str],
    refused: Sequence[Refusal],
) -> Receipt:
    """The receipt for what was accepted, or the one error a retry loop can act on.

    ``accepted`` maps each accepting recipient to the provider's id for it (the receipt lists
    them in the order of ``to``). Every recipient accepted -> the
    receipt. A refusal of kind ``retry`` -> :class:`HTTPStatusError` (its status, 429 before 503)
    naming every refused and accepted recipient. Otherwise, when some were accepted, the receipt
    lists them alone (the refused are logged); when none were: ``auth`` ->
    :class:`AuthenticationError`, ``failed`` -> :class:`ProviderError`, ``invalid`` ->
    :class:`ValidationError`, all ``gone`` -> :class:`NotFoundError`, each naming the recipients.
    """
    context = provider.context
    message_id = notification.message_id()
    receipt = Receipt(
        id=notification.receipt_id(message_id),
        channel=notification.channel,
        to=[to for to in notification.to if to in accepted],
        provider_ids=[accepted[to] for to in notification.to if to in accepted],
    )
    if not refused:
        return receipt
    listed = "; ".join(r.describe() for r in refused)
    took = f"; accepted by {len(accepted)} other recipient(s)" if accepted else ""
    message = f"{context.provider or type(provider).__name__} refused {listed}{took}"
    retry = [r for r in refused if r.kind == "retry"]
    if retry:
        first = min(retry, key=lambda r: (r.status != 429, r.status or 503))
        return _raise(
            HTTPStatusError(
                message,
                status=first.status or 503,
                body=listed,
                retry_after=first.retry_after,
                **where(provider),
            )
        )
    if accepted:
        _log.warning("%s: %s", context.resource, redact(message))
        return receipt
    kinds = {r.kind for r in refused}
    if "auth" in kinds:
        return _raise(provider.error(message, AuthenticationError))
    if "failed" in kinds:
        return _raise(provider.error(message))
    where_ = f"{context.resource} (env {context.env}): "
    if "invalid" in kinds:
        return _raise(ValidationError(redact(where_ + message)))
    return _raise(NotFoundError(redact(where_ + message)))


def _raise(error: DuctworkError) -> Receipt:
    raise error


class Accepted(Generic[K]):
    """Per message id, the targets that accepted a notification and the ids they gave.

    Kept in this process for the most recent notifications, up to ``keep`` of them and
    ``targets`` recipients in all (the oldest go first): a retry of the same notification (the
    send loop's, or a feature step's with the same idempotency key) skips what took it.
    """

    def __init__(self, keep: int = 10_000, targets: int = 100_000) -> None:
        self._keep = keep
        self._targets = targets
        self._held = 0
        self._done: OrderedDict[str, dict[K, str]] = OrderedDict()
        self._lock = threading.Lock()

    def done(self, key: str | None) -> dict[K, str]:
        """What already accepted the notification with message id ``key``."""
        if key is None:
            return {}
        with self._lock:
            return dict(self._done.get(key, {}))

    def add(self, key: str | None, accepted: Mapping[K, str]) -> None:
        """Remember ``accepted`` (target -> provider id) for ``key``'s notification."""
        if key is None or not accepted:
            return
        with self._lock:
            held = self._done.setdefault(key, {})
            self._held += len(accepted.keys() - held.keys())
            held.update(accepted)
            self._done.move_to_end(key)
            while len(self._done) > 1 and (
                len(self._done) > self._keep or self._held > self._targets
            ):
                _, dropped = self._done.popitem(last=False)
                self._held -= len(dropped)
