"""``fcm`` notifier: push through Firebase Cloud Messaging's HTTP v1 API.

Features: the ``push`` channel. One ``messages:send`` request per registration token (the v1
API takes one target per request), ``concurrency`` of them at once (default 10), on one pooled
httpx client. The message: ``notification`` (``title`` = ``subject``, ``body``), ``data`` (FCM
takes string values only: strings are sent as they are, anything else as its JSON text, with
the key ``ductwork_json`` holding the JSON array of those keys, so a client restores the
types), and
the ``android_priority``, ``android_channel_id``, ``ttl`` options. FCM's message names
(``projects/…/messages/…``) are in ``Receipt.provider_ids``.

Authentication: a Google service account. Its key (JSON, ``credentials``: a secret, usually a
``${file:…}`` or ``${secret:…}`` reference) signs a JWT (RS256, with joserfc, a ductwork
dependency) for the scope ``firebase.messaging``, exchanged at the key's ``token_uri`` for an
OAuth access token, which is cached until a minute before it expires. A 401 from FCM with a
cached token drops it and sends that request once more with a new one (a credential refresh,
not a delivery retry: FCM sent nothing).

Configuration: ``credentials`` (required), ``project_id`` (default: the key's), ``token_uri``
(default: the key's), ``base_url`` (``https://fcm.googleapis.com``), ``timeout`` (30 s),
``max_connections`` (10), ``concurrency`` (10), ``android_priority``, ``android_channel_id``,
``ttl``.

Errors (nothing is retried here): per token, FCM's ``errorCode``: ``UNREGISTERED`` and
``SENDER_ID_MISMATCH`` -> :class:`NotFoundError` naming the token; ``INVALID_ARGUMENT`` ->
:class:`ValidationError`; ``QUOTA_EXCEEDED`` (429), ``UNAVAILABLE`` (503), ``INTERNAL`` (500)
-> :class:`HTTPStatusError` with ``retry_after`` (retried by the send loop);
``THIRD_PARTY_AUTH_ERROR`` (APNs/web push credentials) -> :class:`AuthenticationError`. When
some tokens were accepted and others refused for good, the receipt lists the accepted. The
token endpoint refusing the service account, or FCM refusing a fresh token ->
:class:`AuthenticationError` naming the account's email (never the key); unreachable or timed
out -> :class:`ConnectionFailedError`; a key that is not a service account's JSON ->
config error at load, a private key that does not load -> :class:`ConfigError` in ``open()``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, ClassVar, Literal, Self

from ductwork.config.durations import Duration
from ductwork.errors import AuthenticationError, ConfigError, ProviderError, ValidationError
from ductwork.providers.http_api import APINotifier, APIOptions, Kind, Refusal, settle
from ductwork.providers.notifier import Notification, Receipt
from pydantic import Field, SecretStr, model_validator

__all__ = ["JSON_KEYS", "FCMNotifier", "FCMOptions", "fcm_data", "read_fcm_data"]

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_MARGIN = 60.0  # seconds before expiry a cached access token is no longer used
_KINDS: dict[str, Kind] = {
    "UNREGISTERED": "gone",
    "SENDER_ID_MISMATCH": "gone",
    "INVALID_ARGUMENT": "invalid",
    "QUOTA_EXCEEDED": "retry",
    "UNAVAILABLE": "retry",
    "INTERNAL": "retry",
    "THIRD_PARTY_AUTH_ERROR": "auth",
}
_ACCOUNT_FIELDS = ("client_email", "private_key", "project_id")
#: The data key listing the keys whose value was sent as JSON (not a string).
JSON_KEYS = "ductwork_json"


class FCMOptions(APIOptions):
    """Options of the ``fcm`` notifier."""

    base_url: str = "https://fcm.googleapis.com"
    credentials: SecretStr
    project_id: str | None = None
    token_uri: str | None = None
    concurrency: int = Field(10, ge=1, le=1000)
    android_priority: Literal["normal", "high"] | None = None
    android_channel_id: str | None = None
    ttl: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        account = self.account
        missing = [f for f in _ACCOUNT_FIELDS if not account.get(f)]
        if account.get("type") != "service_account" or missing:
            raise ValueError(
                "credentials must be a service account key (JSON with type service_account, "
                f"client_email, private_key, project_id); missing: {', '.join(missing) or 'type'}"
            )
        return self

    @property
    def account(self) -> dict[str, Any]:
        """The service account key, parsed."""
        try:
            found = json.loads(self.credentials.get_secret_value())
        except ValueError:
            raise ValueError(
                "credentials is not JSON: give the service account key file's content "
                "(e.g. '${file:firebase-key.json}')"
            ) from None
        if not isinstance(found, dict):
            raise ValueError("credentials must be a JSON object (a service account key)")
        return found


class FCMNotifier(APINotifier[FCMOptions]):
    """Sends push notifications through FCM's HTTP v1 API."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"push"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        account = self.options.account
        self.email = str(account["client_email"])
        self.project = self.options.project_id or str(account["project_id"])
        self.token_uri = self.options.token_uri or str(
            account.get("token_uri", "https://oauth2.googleapis.com/token")
        )
        self._key: Any = None
        self._kid = str(account.get("private_key_id", ""))
        self._token: tuple[str, float] | None = None  # (access token, monotonic expiry)
        self._token_lock = asyncio.Lock()

    async def open(self) -> None:
        from joserfc.jwk import RSAKey

        pem = str(self.options.account["private_key"])
        try:
            self._key = RSAKey.import_key(pem)
        except Exception as exc:  # joserfc raises several types for a key it cannot load
            raise ConfigError(
                f"{self.context.resource}: the service account's private_key does not load as "
                f"an RSA key ({type(exc).__name__}); give the key file Google issued",
                env=self.context.env,
            ) from None
        self._token = None
        await super().open()

    def message(self, notification: Notification, token: str) -> dict[str, Any]:
        """The FCM v1 ``message`` for one registration token."""
        opts = self.options
        message: dict[str, Any] = {"token": token}
        shown = {"title": notification.subject, "body": notification.body or None}
        if any(shown.values()):
            message["notification"] = {k: v for k, v in shown.items() if v is not None}
        if notification.data:
            message["data"] = fcm_data(notification.data)
        android = {
            "priority": opts.android_priority,
            "ttl": None if opts.ttl is None else f"{opts.ttl:g}s",
            "notification": {"channel_id": opts.android_channel_id}
            if opts.android_channel_id
            else None,
        }
        android = {k: v for k, v in android.items() if v is not None}
        if android:
            message["android"] = android
        return message

    async def deliver(self, notification: Notification) -> Receipt:
        key = notification.message_id()  # the same on a retry of this notification
        done = self.accepted.done(key)
        tokens = [t for t in dict.fromkeys(notification.to) if t not in done]
        gate = asyncio.Semaphore(self.options.concurrency)

        async def one(token: str) -> str | Refusal:
            async with gate:
                return await self._send(notification, token)

        results = await asyncio.gather(*(one(t) for t in tokens), return_exceptions=True)
        accepted = {t: r for t, r in zip(tokens, results, strict=True) if isinstance(r, str)}
        self.accepted.add(key, accepted)
        for result in results:
            if isinstance(result, BaseException):  # the request itself failed (connection…)
                raise result
        refused = [r for r in results if isinstance(r, Refusal)]
        return settle(self, notification, {**done, **accepted}, refused)

    async def _send(self, notification: Notification, token: str) -> str | Refusal:
        """FCM's message name for ``token``, or why FCM refused it."""
        url = f"/v1/projects/{self.project}/messages:send"
        body = {"message": self.message(notification, token)}
        what = f"FCM send to project {self.project!r}"
        refused: str | None = None
        for fresh in (False, True):
            access = await self._access_token(refused)
            headers = {"Authorization": f"Bearer {access}"}
            response = await self.api.request("POST", url, what=what, json=body, headers=headers)
            if (
                response.status_code == 401
                and not fresh
                and _code(response) != "THIRD_PARTY_AUTH_ERROR"
            ):
                refused = access  # the cached token was refused: once more with a new one
                continue
            break
        if response.status_code < 400:
            return str(response.json().get("name", ""))
        code = _code(response)
        if response.status_code == 401 and code != "THIRD_PARTY_AUTH_ERROR":
            raise self.api.status_error(
                response, what, f"the access token of {self.email} was refused"
            )
        kind = _KINDS.get(
            code,
            "retry" if response.status_code >= 500 or response.status_code == 429 else "failed",
        )
        message = str((_error(response)).get("message", ""))
        return Refusal(
            token,
            kind,
            code or str(response.status_code),
            message,
            status=response.status_code,
            retry_after=response.headers.get("retry-after"),
        )

    async def _access_token(self, refused: str | None = None) -> str:
        """The cached OAuth access token; a new one when missing, expiring or ``refused``."""
        async with self._token_lock:
            cached = self._token
            if cached is not None and cached[0] != refused and time.monotonic() < cached[1]:
                return cached[0]
            access, lifetime = await self._exchange()
            self._token = (access, time.monotonic() + max(0.0, lifetime - _MARGIN))
            return access

    async def _exchange(self) -> tuple[str, float]:
        """Sign the service account's JWT and exchange it at the token URI."""
        from joserfc import jwt

        now = int(time.time())
        claims = {"iss": self.email, "scope": SCOPE, "aud": self.token_uri, "iat": now,
                  "exp": now + 3600}  # fmt: skip
        header = {"alg": "RS256", "typ": "JWT", **({"kid": self._kid} if self._kid else {})}
        assertion = jwt.encode(header, claims, self._key)
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
        what = f"OAuth token exchange for {self.email} at {self.token_uri}"
        response = await self.api.request("POST", self.token_uri, what=what, data=form)
        status = response.status_code
        if status == 429 or status >= 500:
            raise self.api.status_error(response, what)
        if status >= 400:
            found = _json(response)
            reason = f"{found.get('error')}: {found.get('error_description', '')}"
            raise self.error(
                f"{what} refused the service account ({status} {reason})", AuthenticationError
            )
        answer = response.json()
        access = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(access, str):
            raise self.error(f"{what} answered no access_token", ProviderError)
        return access, float(answer.get("expires_in", 3600))


def fcm_data(data: dict[str, Any]) -> dict[str, str]:
    """``data`` as FCM takes it: string values only.

    Strings go as they are, other values as compact JSON, and the key ``JSON_KEYS`` holds the
    JSON array of the keys whose value is JSON, so a client restores the types
    (:func:`read_fcm_data`). A ``data`` key named ``JSON_KEYS`` is refused.
    """
    if JSON_KEYS in data:
        raise ValidationError(
            f"notification field 'data' has the key {JSON_KEYS!r}, which the fcm notifier "
            "writes itself (it lists the keys sent as JSON); rename it"
        )
    wire = {
        str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        for k, v in data.items()
    }
    typed = [str(k) for k, v in data.items() if not isinstance(v, str)]
    if typed:
        wire[JSON_KEYS] = json.dumps(typed, separators=(",", ":"))
    return wire


def read_fcm_data(wire: dict[str, str]) -> dict[str, Any]:
    """The inverse of :func:`fcm_data` (what a client does with a received ``data``)."""
    typed = set(json.loads(wire.get(JSON_KEYS, "[]")))
    return {k: json.loads(v) if k in typed else v for k, v in wire.items() if k != JSON_KEYS}


def _json(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(response: Any) -> dict[str, Any]:
    found = _json(response).get("error")
    return found if isinstance(found, dict) else {}


def _code(response: Any) -> str:
    """FCM's ``errorCode`` from the error's details, else the error's ``status``."""
    error = _error(response)
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            return str(detail["errorCode"])
    return str(error.get("status", ""))
