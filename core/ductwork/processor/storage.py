"""``dw.storage``: save, read, list, delete and sign objects in storage resources by tag."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Literal, Unpack

from ductwork.errors import ValidationError as InvalidDataError
from ductwork.processor._base import JobOptions, Namespace
from ductwork.providers.storage import ObjectInfo, Page, Storage, check_key, check_prefix

if TYPE_CHECKING:
    from ductwork.engine.spec import Job

__all__ = ["StorageNamespace"]


class StorageNamespace(Namespace):
    """Objects in the product's storage resources."""

    section = "storage"

    async def save(
        self,
        storage: str,
        key: str,
        data: bytes | str | AsyncIterable[bytes],
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        env: str | None = None,
    ) -> ObjectInfo:
        """Store ``data`` under ``key`` (``str`` is encoded as UTF-8)."""
        check_key(key)
        payload = data.encode() if isinstance(data, str) else data
        provider = await self._provider(storage, env, Storage)
        return await provider.save(key, payload, content_type=content_type, metadata=metadata)

    async def read_file(self, storage: str, key: str, *, env: str | None = None) -> bytes:
        """The whole object."""
        check_key(key)
        return await (await self._provider(storage, env, Storage)).read(key)

    async def stream(
        self, storage: str, key: str, *, chunk_size: int = 1 << 20, env: str | None = None
    ) -> AsyncIterator[bytes]:
        """The object in chunks, never whole in memory."""
        check_key(key)
        provider = await self._provider(storage, env, Storage)
        async for chunk in provider.stream(key, chunk_size=chunk_size):
            yield chunk

    async def stat(self, storage: str, key: str, *, env: str | None = None) -> ObjectInfo:
        """Size, content type, etag, modified time and metadata."""
        check_key(key)
        return await (await self._provider(storage, env, Storage)).stat(key)

    async def exists(self, storage: str, key: str, *, env: str | None = None) -> bool:
        """Whether ``key`` is stored."""
        check_key(key)
        return await (await self._provider(storage, env, Storage)).exists(key)

    async def delete(self, storage: str, key: str, *, env: str | None = None) -> bool:
        """Remove ``key``; ``True`` if it existed."""
        check_key(key)
        return await (await self._provider(storage, env, Storage)).delete(key)

    async def list(
        self,
        storage: str,
        prefix: str = "",
        *,
        limit: int = 1000,
        cursor: str | None = None,
        env: str | None = None,
    ) -> Page:
        """One page of objects under ``prefix``; pass ``page.cursor`` for the next."""
        check_prefix(prefix)
        provider = await self._provider(storage, env, Storage)
        return await provider.list(prefix, limit=limit, cursor=cursor)

    async def signed_url(
        self,
        storage: str,
        key: str,
        *,
        method: Literal["GET", "PUT"] = "GET",
        expires: int = 3600,
        env: str | None = None,
    ) -> str:
        """A URL that reads or writes ``key`` without credentials, where the provider can."""
        check_key(key)
        provider = await self._provider(storage, env, Storage)
        return await provider.signed_url(key, method=method, expires=expires)

    async def dispatch(
        self,
        storage: str,
        key: str,
        data: bytes | str,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        **opts: Unpack[JobOptions],
    ) -> Job:
        """Save ``data`` under ``key`` as a durable job (now, later or on a schedule)."""
        check_key(key)
        if not isinstance(data, bytes | str):
            raise InvalidDataError("storage.dispatch takes bytes or str data (not a stream)")
        self._checked(storage, opts.get("env"))
        payload = data.encode() if isinstance(data, str) else data
        body = {
            "key": key,
            "data_b64": base64.b64encode(payload).decode(),
            "content_type": content_type,
            "metadata": metadata,
        }
        return await self._submit("storage.save", storage, storage, body, opts)
