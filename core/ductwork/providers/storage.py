"""The ``Storage`` interface: objects (bytes) under string keys.

Keys are ``/``-separated relative paths. :func:`check_key` is the one rule every provider
applies before any I/O: no empty key, no absolute path, no ``.``/``..`` segment, no
backslash or control character — so a key can never escape the storage root.

Capabilities:
    ``signed_urls``: :meth:`Storage.signed_url` returns a URL usable without credentials.
"""

from __future__ import annotations

import datetime as dt
from abc import abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ductwork.errors import InvalidKeyError, UnsupportedError, ValidationError
from ductwork.providers.base import OptionsT, Provider

__all__ = ["ObjectInfo", "Page", "Storage", "check_key", "check_prefix", "check_signed_url"]

Data = bytes | AsyncIterable[bytes]

_MAX_KEY_BYTES = 1024


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise :class:`InvalidKeyError`."""
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("storage key must be a non-empty string")
    if len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
        raise InvalidKeyError(f"storage key is longer than {_MAX_KEY_BYTES} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidKeyError(f"storage key {key!r} contains a control character")
    if "\\" in key:
        raise InvalidKeyError(f"storage key {key!r} contains a backslash; use '/'")
    if key.startswith("/"):
        raise InvalidKeyError(f"storage key {key!r} is absolute; drop the leading '/'")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"storage key {key!r} is not valid UTF-8") from exc
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKeyError(
                f"storage key {key!r} has an empty, '.' or '..' segment; keys cannot leave the root"
            )
    return key


def check_signed_url(method: str, expires: int, *, longest: int = 7 * 24 * 3600) -> None:
    """Refuse a signed-URL request other than GET/PUT, or living outside 1..``longest`` s.

    Raises:
        ValidationError: what is wrong and what is allowed (before anything is signed).
    """
    if method not in ("GET", "PUT"):
        raise ValidationError(f"signed URL method must be 'GET' or 'PUT', not {method!r}")
    if not 1 <= expires <= longest:
        raise ValidationError(f"signed URL expiry must be 1..{longest} s, not {expires}")


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is empty or a safe key prefix (may end with ``/``)."""
    if prefix == "":
        return prefix
    check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


@dataclass(frozen=True)
class ObjectInfo:
    """What a provider knows of a stored object."""

    key: str
    size: int
    content_type: str | None = None
    etag: str | None = None
    modified: dt.datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """One page of a listing; pass ``cursor`` back to get the next, ``None`` when done."""

    items: list[ObjectInfo]
    cursor: str | None = None


class Storage(Provider[OptionsT]):
    """Objects under keys: save, read (whole or streamed), stat, list, delete, signed URLs."""

    kind: ClassVar[str] = "storage"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"signed_urls"})

    @abstractmethod
    async def save(
        self,
        key: str,
        data: Data,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Store ``data`` (bytes, or an async iterable of chunks) under ``key``, replacing it.

        Readers never see a partial object: it appears whole or not at all.
        """

    @abstractmethod
    def stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Yield the object's bytes in chunks; raise :class:`NotFoundError` if it is missing."""

    async def read(self, key: str) -> bytes:
        """The whole object; raise :class:`NotFoundError` if it is missing."""
        return b"".join([chunk async for chunk in self.stream(key)])

    @abstractmethod
    async def stat(self, key: str) -> ObjectInfo:
        """Size, content type, etag, modified and metadata; :class:`NotFoundError` if missing."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove the object; ``True`` if it existed."""

    @abstractmethod
    async def list(self, prefix: str = "", *, limit: int = 1000, cursor: str | None = None) -> Page:
        """Objects whose key starts with ``prefix``, in key order, at most ``limit`` per page."""

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        from ductwork.errors import NotFoundError

        try:
            await self.stat(key)
        except NotFoundError:
            return False
        return True

    async def signed_url(
        self, key: str, *, method: Literal["GET", "PUT"] = "GET", expires: int = 3600
    ) -> str:
        """A URL that reads (GET) or writes (PUT) ``key`` without credentials for ``expires`` s."""
        raise UnsupportedError(
            f"storage provider {self.context.provider or type(self).__name__!r} "
            f"for {self.context.resource} does not support signed URLs"
        )

    async def iter_all(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every object under ``prefix``, following cursors."""
        cursor: str | None = None
        while True:
            page = await self.list(prefix, cursor=cursor)
            for item in page.items:
                yield item
            if page.cursor is None:
                return
            cursor = page.cursor
