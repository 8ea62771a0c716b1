"""The one error tree every ductwork call raises from.

::

    DuctworkError
    ├── ConfigError                  the product config is wrong (file, env, resource, field)
    │   └── ReferenceResolutionError a ${env:…}/${file:…}/${secret:…} reference cannot resolve
    ├── PluginError                  a plugin failed to load or registered something invalid
    ├── UnknownProviderError         no provider of that name (suggests the closest)
    ├── MissingDependencyError       the provider's SDK is not installed (names the command)
    ├── UnsupportedError             the provider does not declare the capability asked for
    ├── ValidationError              input to a call is invalid, refused before any side effect
    │   ├── InvalidKeyError          a storage key is empty, absolute or escapes its root
    │   ├── DecodeError              a stored value is not in the format ductwork writes
    │   └── WebhookVerificationError a webhook delivery is unsigned, forged, tampered or replayed
    ├── NotFoundError                the object, message, action or resource does not exist
    ├── FeatureFailedError           a feature run failed (the step, its error; run id)
    ├── SessionInvalidError          a session token is malformed, forged, or not for this tag
    │   ├── SessionExpiredError      a genuine token (or refresh token) past its expiry
    │   ├── SessionRevokedError      the session was revoked (logout, revoke_all, reuse)
    │   └── RefreshReuseError        a used refresh token came back: its session is revoked
    ├── RateLimitedError             a usage limit is reached; ``retry_after`` says when to retry
    └── ProviderError                the backend failed (names resource, env, provider, endpoint)
        ├── ConnectionFailedError    refused, unreachable, timed out
        ├── AuthenticationError      bad credentials
        ├── HTTPStatusError          an HTTP app or webhook answered >= 400 (status, body excerpt)
        ├── AllProvidersFailedError  every provider of a quota or fallback failed (each failure)
        └── TooManyRowsError         a database or graph action's result passed its max_rows

Provider exceptions never leak: providers translate them at their boundary with
``raise ProviderError(...) from exc`` so the original stays chained for debugging, and what a
provider misses is translated under it (:mod:`ductwork.providers._boundary`, naming the plugin's
distribution).
Messages never contain secret values; see :mod:`ductwork.config.secrets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ductwork._redact import redact

__all__ = [
    "AllProvidersFailedError",
    "AuthenticationError",
    "ConfigError",
    "ConnectionFailedError",
    "DecodeError",
    "DuctworkError",
    "FeatureFailedError",
    "HTTPStatusError",
    "InvalidKeyError",
    "MissingDependencyError",
    "NotFoundError",
    "PluginError",
    "ProviderError",
    "ProviderFailure",
    "RateLimitedError",
    "ReferenceResolutionError",
    "RefreshReuseError",
    "SessionExpiredError",
    "SessionInvalidError",
    "SessionRevokedError",
    "TooManyRowsError",
    "UnknownProviderError",
    "UnsupportedError",
    "ValidationError",
    "WebhookVerificationError",
]


class DuctworkError(Exception):
    """Root of every error ductwork raises."""


class ConfigError(DuctworkError):
    """The product config is invalid.

    Attributes:
        file: the config file, when known.
        env: the environment being resolved, when relevant.
        path: the dotted resource path (``storage.files.prd.bucket``), when relevant.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        env: str | None = None,
        path: str | None = None,
    ) -> None:
        self.file = file
        self.env = env
        self.path = path
        self.message = redact(message)
        where = []
        if file:
            where.append(str(file))
        if env:
            where.append(f"env {env!r}")
        if path:
            where.append(path)
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(redact(f"{prefix}{message}"))


class ReferenceResolutionError(ConfigError):
    """A ``${env:…}``, ``${file:…}`` or ``${secret:…}`` reference cannot be resolved."""


class PluginError(DuctworkError):
    """A plugin failed to load or registered an invalid provider."""


class UnknownProviderError(DuctworkError):
    """No provider is registered under that name for that interface."""


class MissingDependencyError(DuctworkError):
    """The provider is known but its distribution or SDK is not installed.

    Attributes:
        install: the command that fixes it, e.g. ``pip install "ductwork[s3]"``.
    """

    def __init__(self, message: str, *, install: str | None = None) -> None:
        self.install = install
        super().__init__(message)


class UnsupportedError(DuctworkError):
    """The provider does not declare the capability the call needs."""


class ValidationError(DuctworkError):
    """Input to a call is invalid; nothing was done."""


class InvalidKeyError(ValidationError):
    """A storage key is empty, absolute, or would escape the storage root."""


class WebhookVerificationError(ValidationError):
    """A webhook delivery is refused: unsigned, forged, tampered with or replayed.

    A header is missing, no signature matches, or the timestamp is outside the tolerance (see
    :func:`ductwork.webhooks.verify`).
    """


class NotFoundError(DuctworkError):
    """The object, message, action or resource does not exist."""


class DecodeError(ValidationError):
    """A stored value is not in the format ductwork writes (another client wrote it).

    A :class:`ValidationError`: the data coming in is invalid, not the backend. Nothing was
    changed; the message names the resource and key and what to do.

    Attributes:
        resource: the resource path, e.g. ``caches.sessions``.
        key: the key as the caller passed it.
    """

    def __init__(self, message: str, *, resource: str, key: str) -> None:
        self.resource = resource
        self.key = key
        super().__init__(redact(message))


class FeatureFailedError(DuctworkError):
    """A feature run failed: a step's retries were spent (and it was not ``allow_fail``).

    Attributes:
        run_id: the run, for ``features.output`` / ``features.resume``, when known.
    """

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        self.run_id = run_id
        super().__init__(message)


class SessionInvalidError(DuctworkError):
    """A session token or refresh token is refused: malformed, modified, unknown key, wrong tag.

    Session errors never carry the token, the refresh token, a key or the session's data.
    Catch this class to answer "401": the three below are subclasses.
    """


class SessionExpiredError(SessionInvalidError):
    """The token is genuine but past its expiry (refresh it, or start a new session)."""


class SessionRevokedError(SessionInvalidError):
    """The session was revoked (``revoke``, ``revoke_all``, or refresh-token reuse)."""


class RefreshReuseError(SessionInvalidError):
    """An already-used refresh token was presented: the whole session has been revoked."""


class ProviderError(DuctworkError):
    """The backend failed.

    Carries where it happened (resource, env, provider, endpoint) and never a secret:
    endpoints are passed through :func:`ductwork._redact.redact` on the way in. When a provider
    let an exception of its own escape untranslated, ``distribution`` names the plugin that
    shipped it (``"ductwork-foo 1.2"``) and the original is ``__cause__``.
    """

    def __init__(
        self,
        message: str,
        *,
        resource: str | None = None,
        env: str | None = None,
        provider: str | None = None,
        endpoint: str | None = None,
        distribution: str | None = None,
    ) -> None:
        self.resource = resource
        self.env = env
        self.provider = provider
        self.endpoint = endpoint
        self.distribution = distribution
        self.message = redact(message)
        parts: list[str] = []
        for name, value in (
            ("resource", resource),
            ("env", env),
            ("provider", provider),
            ("endpoint", endpoint),
            ("distribution", distribution),
        ):
            if value:
                parts.append(f"{name}={value}")
        suffix = f" [{' '.join(parts)}]" if parts else ""
        super().__init__(redact(f"{message}{suffix}"))

    def context(self) -> dict[str, Any]:
        """Where the failure happened, as data."""
        return {
            "resource": self.resource,
            "env": self.env,
            "provider": self.provider,
            "endpoint": self.endpoint,
            "distribution": self.distribution,
        }


class ConnectionFailedError(ProviderError):
    """The backend could not be reached: refused, unreachable or timed out."""


class AuthenticationError(ProviderError):
    """The backend refused the credentials."""


class HTTPStatusError(ProviderError):
    """An HTTP app answered with a status >= 400 (after the retries its policy allows).

    Attributes:
        status: the final HTTP status.
        body: an excerpt of the response body, with secrets redacted.
        attempts: how many requests were sent.
        retry_after: the response's ``Retry-After`` header (seconds or an HTTP date), when it
            had one: a notifier's send loop waits that long before retrying a 429 or 5xx.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: str = "",
        attempts: int = 1,
        retry_after: str | None = None,
        resource: str | None = None,
        env: str | None = None,
        provider: str | None = None,
        endpoint: str | None = None,
        distribution: str | None = None,
    ) -> None:
        self.status = status
        self.body = redact(body)
        self.attempts = attempts
        self.retry_after = retry_after
        super().__init__(
            message,
            resource=resource,
            env=env,
            provider=provider,
            endpoint=endpoint,
            distribution=distribution,
        )


class RateLimitedError(DuctworkError):
    """A usage limit (``limits:`` on a quota, fallback or app action) is reached.

    Raised before any provider is called. Attributes:
        retry_after: seconds until the limit's window ends and calls pass again.
        limit: where the limit is declared (``quotas.sms.limits``).
    """

    def __init__(self, message: str, *, retry_after: float, limit: str) -> None:
        self.retry_after = retry_after
        self.limit = limit
        super().__init__(redact(message))


@dataclass(frozen=True)
class ProviderFailure:
    """Why one provider of a quota or fallback did not answer (no secrets: redacted text)."""

    provider: str
    target: str
    error: str  # "HTTPStatusError: …", "circuit open", "unhealthy (healthcheck sms-a)"
    attempts: int = 0  # calls made (0: skipped without a call)


class AllProvidersFailedError(ProviderError):
    """Every provider of a quota or fallback failed or was skipped.

    Attributes:
        failures: one :class:`ProviderFailure` per provider, in the order they were tried.
    """

    def __init__(
        self, message: str, *, failures: list[ProviderFailure], resource: str, env: str
    ) -> None:
        self.failures = failures
        lines = "; ".join(
            f"{f.provider} ({f.target}): {f.error}"
            + (f" after {f.attempts} attempt(s)" if f.attempts > 1 else "")
            for f in failures
        )
        super().__init__(f"{message}: {lines}", resource=resource, env=env)


class TooManyRowsError(ProviderError):
    """A query returned more rows than its action's ``max_rows`` allows.

    Raised as soon as row ``max_rows + 1`` arrives (through a cursor: the rest is never read).

    Attributes:
        limit: the ``max_rows`` that was passed.
    """

    def __init__(self, message: str, *, limit: int | None = None, **where: str | None) -> None:
        self.limit = limit
        super().__init__(message, **where)
