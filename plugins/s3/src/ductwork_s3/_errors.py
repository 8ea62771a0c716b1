"""Translate boto3/botocore exceptions into ductwork's error tree (and nothing else leaks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore import exceptions as bx  # type: ignore[import-untyped]  # botocore has no hints
from ductwork.errors import (
    AuthenticationError,
    ConnectionFailedError,
    DuctworkError,
    NotFoundError,
)

if TYPE_CHECKING:
    from ductwork.providers.storage import Storage

__all__ = ["translate"]

_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404"})
_AUTH = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "401",
        "403",
    }
)
_CONNECTION = (
    bx.ConnectionError,  # refused, unreachable, connect/read timeouts, closed connections
    bx.HTTPClientError,
)
_CREDENTIALS = (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError)


def translate(provider: Storage, exc: BaseException, what: str, key: str | None) -> DuctworkError:
    """The ductwork error for ``exc``, raised while trying to ``what`` (``key`` if any)."""
    target = f"{what} {key!r}" if key is not None else what
    if isinstance(exc, bx.ClientError):
        response: dict[str, Any] = getattr(exc, "response", {}) or {}
        error = response.get("Error") or {}
        code = str(error.get("Code", ""))
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        message = error.get("Message") or "no message"
        if key is not None and code in _NOT_FOUND:
            return NotFoundError(f"no object {key!r} in {provider.context.resource}")
        if code == "NoSuchBucket" or (key is None and code in _NOT_FOUND):
            return provider.error(
                f"cannot {target}: the bucket does not exist (create it, or set create_bucket)"
            )
        if code in _AUTH or status in (401, 403):
            return provider.error(
                f"cannot {target}: credentials refused ({code}: {message})", AuthenticationError
            )
        return provider.error(f"cannot {target}: {code}: {message}")
    if isinstance(exc, _CREDENTIALS):
        return provider.error(f"cannot {target}: {exc}", AuthenticationError)
    if isinstance(exc, _CONNECTION):
        return provider.error(
            f"cannot {target}: endpoint unreachable ({type(exc).__name__})", ConnectionFailedError
        )
    return provider.error(f"cannot {target}: {type(exc).__name__}: {exc}")
