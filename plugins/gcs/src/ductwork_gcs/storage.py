"""``gcs`` storage: objects in a Google Cloud Storage bucket, on google-cloud-storage.

Features: one client built in :meth:`GCSStorage.open` and reused, its blocking calls run on the
provider's own thread pool so the event loop never waits; whole reads in one request with the
library's checksum check; streamed reads as ranged requests of ``chunk_size`` bytes pinned to the
generation first seen, so a concurrent replace never mixes two versions; saves of up to
``chunk_size`` bytes in one request, larger or longer streamed saves as a resumable upload in
``chunk_size`` chunks (a streamed save holds about two chunks in memory, and a failed one is
cancelled, never finalised); an optional ``prefix`` inside the bucket; listing by page token.

Configuration: ``bucket`` (required), ``project``, ``endpoint`` (an emulator or private endpoint;
the library also honours ``STORAGE_EMULATOR_HOST``), ``credentials_file`` (a service-account JSON
file) or ``anonymous`` (no credentials, for emulators), else Application Default Credentials;
``prefix``, ``create_bucket``, ``chunk_size`` (a multiple of 256 KiB), ``timeout`` (seconds per
request), ``retry_deadline`` (seconds of retrying transient failures; 0 turns retries off).

Errors: a missing object raises :class:`NotFoundError`; an unreachable endpoint
:class:`ConnectionFailedError`; refused or unloadable credentials (HTTP 401/403, a bad
``credentials_file``, no default credentials) :class:`AuthenticationError`; anything else
:class:`ProviderError`. Messages name the resource, env, provider and endpoint, never a credential.

Ordering and consistency: GCS is strongly consistent; an object appears whole when its upload is
finalised, never in part. Listings are in lexicographic key order. Pages honour ``limit`` even
against servers that ignore ``maxResults`` (the emulator does): the surplus is cut client-side
and the cursor remembers where to resume.

Signed URLs: V4 GET and PUT URLs (up to 7 days) signed offline with a service-account key,
``signing_credentials_file`` or else ``credentials_file``; without either, ``signed_url`` raises
:class:`AuthenticationError` saying what to set (Application Default Credentials hold no key).
The emulator used in tests serves signed URLs without checking their signatures: the tests prove
the URLs address the object and carry a V4 signature by the configured account, not that Google
accepts it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import mimetypes
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any, ClassVar, Literal, TypeVar

from ductwork.errors import (
    AuthenticationError,
    DuctworkError,
    NotFoundError,
    ValidationError,
)
from ductwork.providers.base import Options
from ductwork.providers.blocking import BlockingPool
from ductwork.providers.storage import (
    Data,
    ObjectInfo,
    Page,
    Storage,
    check_key,
    check_prefix,
    check_signed_url,
)
from google.api_core import exceptions as gx
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import DefaultCredentialsError
from pydantic import Field, field_validator

from ductwork_gcs._errors import translate

__all__ = ["GCSOptions", "GCSStorage"]

T = TypeVar("T")
MiB = 1024 * 1024
_CHUNK_MULTIPLE = 256 * 1024  # resumable upload chunks must be multiples of this


class GCSOptions(Options):
    """Options of ``gcs`` storage."""

    bucket: str = Field(min_length=3, max_length=222)
    project: str | None = None
    endpoint: str | None = None
    credentials_file: str | None = None
    anonymous: bool = False
    signing_credentials_file: str | None = None
    prefix: str = ""
    create_bucket: bool = False
    chunk_size: int = Field(default=8 * MiB, ge=_CHUNK_MULTIPLE, multiple_of=_CHUNK_MULTIPLE)
    timeout: float = Field(default=60.0, gt=0)
    retry_deadline: float = Field(default=30.0, ge=0)
    max_workers: int = Field(default=8, ge=1)

    @field_validator("prefix")
    @classmethod
    def _folder_prefix(cls, value: str) -> str:
        if value and not value.endswith("/"):
            value += "/"
        try:
            return check_prefix(value)
        except DuctworkError as exc:
            raise ValueError(str(exc)) from None


class GCSStorage(Storage[GCSOptions]):
    """Objects in a Google Cloud Storage bucket."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"signed_urls"})

    _client: Any = None
    _bucket: Any = None
    _signer: Any = None
    _pool: BlockingPool | None = None
    _retry: Retry | None = None

    @property
    def endpoint(self) -> str:
        o = self.options
        if o.endpoint:
            return f"{o.endpoint.rstrip('/')}/{o.bucket}"
        return f"gs://{o.bucket}"

    @property
    def native(self) -> Any:
        """The ``google.cloud.storage.Client``."""
        return self._client

    # lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is not None:
            return
        o = self.options
        self._pool = BlockingPool(o.max_workers, "ductwork-gcs")
        if o.retry_deadline > 0:
            from google.cloud.storage.retry import (  # type: ignore[import-untyped]  # no py.typed
                DEFAULT_RETRY,
            )

            self._retry = DEFAULT_RETRY.with_timeout(o.retry_deadline)
        self._client = await self._call("connect", None, self._build_client)
        self._bucket = self._client.bucket(o.bucket)
        if o.create_bucket:
            await self._call("create bucket", None, self._create_bucket)

    async def close(self) -> None:
        client, pool = self._client, self._pool
        self._client = self._bucket = self._pool = None
        if pool is not None:
            pool.shutdown()
        if client is not None:
            client.close()

    async def ping(self) -> None:
        bucket = self._require()
        await self._call("reach bucket", None, bucket.reload, **self._kw())

    def _build_client(self) -> Any:
        from google.cloud import storage  # type: ignore[import-untyped]  # ships no py.typed

        o = self.options
        credentials: Any = None
        if o.anonymous:
            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]  # google-auth
        elif o.credentials_file:
            credentials = self._service_account("credentials_file", o.credentials_file)
        kwargs: dict[str, Any] = {"credentials": credentials}
        if o.project:
            kwargs["project"] = o.project
        if o.endpoint:
            kwargs["client_options"] = {"api_endpoint": o.endpoint}
        return storage.Client(**kwargs)

    def _service_account(self, option: str, file: str) -> Any:
        """The service-account credentials in ``file`` (blocking: reads the key)."""
        from google.oauth2 import service_account

        path = self.context.resolve(file)
        try:
            return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]  # google-auth leaves it unannotated
                str(path)
            )
        except (OSError, ValueError, DefaultCredentialsError) as exc:
            # The parser's message may quote the file's content: name only the type.
            raise self.error(
                f"cannot load {option} {str(path)!r}: {type(exc).__name__}", AuthenticationError
            ) from exc

    def _signing_credentials(self) -> Any:
        """The key that signs URLs, loaded once (blocking)."""
        if self._signer is None:
            o = self.options
            if o.signing_credentials_file:
                option, file = "signing_credentials_file", o.signing_credentials_file
            elif o.credentials_file and not o.anonymous:
                option, file = "credentials_file", o.credentials_file
            else:
                raise self.error(
                    "signing a URL needs a service-account key: set signing_credentials_file "
                    "(or credentials_file) to its JSON file",
                    AuthenticationError,
                )
            self._signer = self._service_account(option, file)
        return self._signer

    def _create_bucket(self) -> None:
        with contextlib.suppress(gx.Conflict):  # it exists already
            self._client.create_bucket(self.options.bucket, **self._kw())

    # plumbing ------------------------------------------------------------------------------

    def _require(self) -> Any:
        if self._bucket is None:
            raise self.error("storage is not open; call `await provider.open()` first")
        return self._bucket

    def _kw(self) -> dict[str, Any]:
        return {"retry": self._retry, "timeout": self.options.timeout}

    def _name(self, key: str) -> str:
        return self.options.prefix + check_key(key)

    async def _call(
        self, what: str, key: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """Run a blocking library call on the provider's threads, translating its errors."""
        if self._pool is None:
            raise self.error("storage is not open; call `await provider.open()` first")
        return await self._pool.call(
            lambda exc: translate(self, exc, what, key), fn, *args, **kwargs
        )

    def _info(self, key: str, blob: Any) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=int(blob.size or 0),
            content_type=blob.content_type,
            etag=blob.etag,
            modified=blob.updated,
            metadata=dict(blob.metadata or {}),
        )

    # Storage -------------------------------------------------------------------------------

    async def save(
        self,
        key: str,
        data: Data,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        name = self._name(key)
        bucket = self._require()
        ctype = content_type or mimetypes.guess_type(key)[0] or "application/octet-stream"
        blob = bucket.blob(name)
        blob.metadata = dict(metadata) if metadata else None
        chunk_size = self.options.chunk_size
        if isinstance(data, bytes | bytearray | memoryview):
            if len(data) > chunk_size:
                blob.chunk_size = chunk_size  # the library then uploads resumably in chunks
            await self._call(
                "save", key, blob.upload_from_string, bytes(data), content_type=ctype, **self._kw()
            )
            return self._info(key, blob)
        # Streamed: buffer up to one chunk; a stream that ends before it is one request.
        chunks = aiter(data)
        buffer = bytearray()
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) > chunk_size:
                break
        else:
            await self._call(
                "save", key, blob.upload_from_string, bytes(buffer), content_type=ctype,
                **self._kw(),
            )  # fmt: skip
            return self._info(key, blob)
        writer = blob.open(
            "wb", chunk_size=chunk_size, ignore_flush=True, content_type=ctype, **self._kw()
        )
        try:
            await self._call("save", key, writer.write, bytes(buffer))
            buffer.clear()
            async for chunk in chunks:
                await self._call("save", key, writer.write, chunk)
            await self._call("save", key, writer.close)  # finalises: the object appears
        except BaseException:
            if self._pool is not None:
                await asyncio.shield(self._pool.run(_cancel, writer))
            raise
        fresh = await self._call("stat", key, bucket.get_blob, name, **self._kw())
        if fresh is None:
            raise NotFoundError(f"object {key!r} vanished right after its upload")
        return self._info(key, fresh)

    async def read(self, key: str) -> bytes:
        name = self._name(key)
        blob = self._require().blob(name)
        data: bytes = await self._call(
            "read", key, blob.download_as_bytes, raw_download=True, **self._kw()
        )
        return data

    async def stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        name = self._name(key)
        bucket = self._require()
        # get_blob sets the generation: every ranged request below reads that same version.
        blob = await self._call("read", key, bucket.get_blob, name, **self._kw())
        if blob is None:
            raise NotFoundError(f"no object {key!r} in {self.context.resource}")
        size = int(blob.size or 0)
        for start in range(0, size, chunk_size):
            end = min(start + chunk_size, size) - 1  # inclusive
            chunk: bytes = await self._call(
                "read", key, blob.download_as_bytes,
                start=start, end=end, checksum=None, raw_download=True, **self._kw(),
            )  # fmt: skip
            yield chunk

    async def stat(self, key: str) -> ObjectInfo:
        name = self._name(key)
        bucket = self._require()
        blob = await self._call("stat", key, bucket.get_blob, name, **self._kw())
        if blob is None:
            raise NotFoundError(f"no object {key!r} in {self.context.resource}")
        return self._info(key, blob)

    async def delete(self, key: str) -> bool:
        blob = self._require().blob(self._name(key))
        try:
            await self._call("delete", key, blob.delete, **self._kw())
        except NotFoundError:
            return False
        return True

    async def list(self, prefix: str = "", *, limit: int = 1000, cursor: str | None = None) -> Page:
        check_prefix(prefix)
        if limit < 1:
            raise ValidationError(f"list limit must be at least 1, not {limit}")
        bucket = self._require()
        token, after = _decode_cursor(cursor) if cursor else (None, None)
        full = self.options.prefix + prefix
        strip = len(self.options.prefix)
        items: list[ObjectInfo] = []
        while True:
            blobs, next_token = await self._call(
                "list", None, _list_page, bucket, full, limit, token, self._kw()
            )
            fresh = [b for b in blobs if after is None or b.name > after]
            room = limit - len(items)
            if len(fresh) > room:
                # The server sent more than asked for: hand out ``room``, resume after the last.
                items += [self._info(b.name[strip:], b) for b in fresh[:room]]
                return Page(items, _encode_cursor(token, fresh[room - 1].name))
            items += [self._info(b.name[strip:], b) for b in fresh]
            if not next_token:
                return Page(items, None)
            if len(items) == limit:
                return Page(items, _encode_cursor(next_token, None))
            token, after = next_token, None

    async def signed_url(
        self, key: str, *, method: Literal["GET", "PUT"] = "GET", expires: int = 3600
    ) -> str:
        name = self._name(key)
        check_signed_url(method, expires)  # V4 signed URLs live a week at most
        blob = self._require().blob(name)
        signer = await self._call("sign a URL for", key, self._signing_credentials)
        where = {"api_access_endpoint": self.options.endpoint} if self.options.endpoint else {}
        url: str = await self._call(
            "sign a URL for", key, blob.generate_signed_url,
            version="v4", expiration=timedelta(seconds=expires), method=method,
            credentials=signer, **where,
        )  # fmt: skip
        return url


def _list_page(
    bucket: Any, prefix: str, limit: int, token: str | None, kw: dict[str, Any]
) -> tuple[list[Any], str | None]:
    """One listing request: its blobs (sorted) and the next page token."""
    iterator = bucket.client.list_blobs(
        bucket, prefix=prefix, page_size=min(limit, 1000), page_token=token, **kw
    )
    page = next(iterator.pages, None)
    blobs = sorted(page or [], key=lambda b: b.name)
    return blobs, iterator.next_page_token


def _encode_cursor(token: str | None, after: str | None) -> str:
    raw = json.dumps([token, after], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str | None, str | None]:
    try:
        token, after = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not all(v is None or isinstance(v, str) for v in (token, after)):
            raise TypeError(cursor)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"not a cursor from this storage: {cursor!r}") from exc
    return token, after


def _cancel(writer: Any) -> None:
    """Cancel a resumable upload so that nothing (not even garbage collection) finalises it."""
    with contextlib.suppress(Exception):
        writer.terminate()
    if not writer.closed:
        # terminate() failed before closing: close the buffer so a later close() or __del__
        # has nothing to finalise (BlobWriter.close uploads whatever is buffered).
        writer._buffer.close()
