"""Translate google-cloud-storage, google-auth and requests exceptions into ductwork's tree."""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests
from ductwork.errors import AuthenticationError, ConnectionFailedError, DuctworkError, NotFoundError
from google.api_core import exceptions as gx
from google.auth import exceptions as ax

if TYPE_CHECKING:
    from ductwork.providers.storage import Storage

__all__ = ["translate"]

_CONNECTION = (
    requests.exceptions.ConnectionError,  # refused, unreachable, DNS
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
    ax.TransportError,  # fetching a token failed on the network
)
_OBJECT_READS = frozenset({"read", "stat", "delete"})
_AUTH = (gx.Unauthorized, gx.Forbidden, ax.RefreshError, ax.DefaultCredentialsError)


def translate(provider: Storage, exc: BaseException, what: str, key: str | None) -> DuctworkError:
    """The ductwork error for ``exc``, raised while trying to ``what`` (``key`` if any)."""
    target = f"{what} {key!r}" if key is not None else what
    if isinstance(exc, gx.RetryError) and exc.cause is not None:
        # Retries ran out: what matters is the last failure.
        return translate(provider, exc.cause, what, key)
    if isinstance(exc, gx.NotFound):
        # A 404 on an object call means a missing object, unless the server says the bucket is
        # missing (GCS does; emulators may not) or the call was an upload, which needs no object.
        bucket_missing = "bucket does not exist" in str(exc.message).lower()
        if key is not None and what in _OBJECT_READS and not bucket_missing:
            return NotFoundError(f"no object {key!r} in {provider.context.resource}")
        return provider.error(
            f"cannot {target}: the bucket does not exist (create it, or set create_bucket)"
        )
    if isinstance(exc, _AUTH):
        return provider.error(
            f"cannot {target}: credentials refused ({type(exc).__name__})", AuthenticationError
        )
    if isinstance(exc, _CONNECTION):
        return provider.error(
            f"cannot {target}: endpoint unreachable ({type(exc).__name__})", ConnectionFailedError
        )
    if isinstance(exc, gx.GoogleAPICallError):
        return provider.error(f"cannot {target}: HTTP {exc.code}: {exc.message}")
    return provider.error(f"cannot {target}: {type(exc).__name__}: {exc}")
