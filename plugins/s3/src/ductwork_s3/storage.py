"""``s3`` storage: objects in an Amazon S3 bucket or any S3-compatible endpoint, on boto3.

Features: one boto3 client built in :meth:`S3Storage.open` and reused (building one costs
milliseconds), its blocking calls run on the provider's own thread pool so the event loop never
waits; whole reads in one request; streamed reads in ``chunk_size`` pieces; saves of up to
``multipart_threshold`` bytes in one ``PutObject``, larger or longer streamed saves as a multipart
upload of ``part_size`` parts, so a streamed save holds at most ``multipart_threshold`` bytes in
memory, and a failed multipart upload is aborted; an optional ``prefix`` inside the bucket; listing
with the S3 continuation token as the cursor; presigned GET and PUT URLs (SigV4).

Configuration: ``bucket`` (required), ``region``, ``endpoint_url``, ``access_key_id``,
``secret_access_key``, ``session_token``, ``prefix``, ``create_bucket``, ``multipart_threshold``,
``part_size``, ``addressing_style``, ``max_pool_connections``, ``connect_timeout``,
``read_timeout``, ``max_attempts``, ``checksums``. Without keys, boto3's default credential chain
is used (environment, profile, instance role).

Errors: a missing object raises :class:`NotFoundError`; an unreachable endpoint
:class:`ConnectionFailedError`; rejected or missing credentials (``InvalidAccessKeyId``,
``SignatureDoesNotMatch``, ``AccessDenied``, HTTP 401/403) :class:`AuthenticationError`; anything
else :class:`ProviderError`. Messages name the resource, env, provider and endpoint, never a
credential.

Ordering and consistency: S3 is strongly read-after-write consistent; an object appears whole
when its ``PutObject`` or ``CompleteMultipartUpload`` returns, never in part. Listings are in
UTF-8 byte order of keys (the same as Python's ``str`` order). ``delete`` asks ``HeadObject``
first to report whether the object existed, since S3's ``DeleteObject`` does not say.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, ClassVar, Literal, TypeVar

import boto3  # type: ignore[import-untyped]  # boto3 ships no type hints (stubs are separate)
from botocore.config import Config  # type: ignore[import-untyped]  # same as boto3
from ductwork.errors import DuctworkError, NotFoundError, ValidationError
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
from pydantic import Field, SecretStr, field_validator

from ductwork_s3._errors import translate

__all__ = ["S3Options", "S3Storage"]

T = TypeVar("T")
MiB = 1024 * 1024
_MIN_PART = 5 * MiB  # S3's smallest part, except the last


class S3Options(Options):
    """Options of ``s3`` storage."""

    bucket: str = Field(min_length=3, max_length=63)
    region: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    prefix: str = ""
    create_bucket: bool = False
    multipart_threshold: int = Field(default=8 * MiB, ge=_MIN_PART)
    part_size: int = Field(default=8 * MiB, ge=_MIN_PART, le=5 * 1024 * MiB)
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    max_pool_connections: int = Field(default=10, ge=1)
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    checksums: Literal["when_supported", "when_required"] = "when_supported"

    @field_validator("prefix")
    @classmethod
    def _folder_prefix(cls, value: str) -> str:
        if value and not value.endswith("/"):
            value += "/"
        try:
            return check_prefix(value)
        except DuctworkError as exc:
            raise ValueError(str(exc)) from None


class S3Storage(Storage[S3Options]):
    """Objects in an S3 bucket."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"signed_urls"})

    _client: Any = None
    _pool: BlockingPool | None = None

    @property
    def endpoint(self) -> str:
        o = self.options
        if o.endpoint_url:
            return f"{o.endpoint_url.rstrip('/')}/{o.bucket}"
        return f"s3://{o.bucket}" + (f" ({o.region})" if o.region else "")

    @property
    def native(self) -> Any:
        """The boto3 S3 client."""
        return self._client

    # lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is not None:
            return
        o = self.options
        self._pool = BlockingPool(o.max_pool_connections, "ductwork-s3")
        self._client = await self._call("connect", None, self._build_client)
        if o.create_bucket:
            await self._call("create bucket", None, self._create_bucket)

    async def close(self) -> None:
        client, pool = self._client, self._pool
        self._client, self._pool = None, None
        if pool is not None:
            pool.shutdown()
        if client is not None:
            client.close()

    async def ping(self) -> None:
        await self._call(
            "reach bucket", None, self._require().head_bucket, Bucket=self.options.bucket
        )

    def _build_client(self) -> Any:
        o = self.options
        session = boto3.session.Session(
            aws_access_key_id=o.access_key_id,
            aws_secret_access_key=(
                o.secret_access_key.get_secret_value() if o.secret_access_key else None
            ),
            aws_session_token=o.session_token.get_secret_value() if o.session_token else None,
            region_name=o.region,
        )
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": o.addressing_style},
            max_pool_connections=o.max_pool_connections,
            connect_timeout=o.connect_timeout,
            read_timeout=o.read_timeout,
            retries={"max_attempts": o.max_attempts, "mode": "standard"},
            request_checksum_calculation=o.checksums,
            response_checksum_validation=o.checksums,
        )
        return session.client("s3", endpoint_url=o.endpoint_url, config=config)

    def _create_bucket(self) -> None:
        o = self.options
        kwargs: dict[str, Any] = {"Bucket": o.bucket}
        if o.region and o.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": o.region}
        with contextlib.suppress(self._client.exceptions.BucketAlreadyOwnedByYou):
            self._client.create_bucket(**kwargs)

    # plumbing ------------------------------------------------------------------------------

    def _require(self) -> Any:
        if self._client is None:
            raise self.error("storage is not open; call `await provider.open()` first")
        return self._client

    def _name(self, key: str) -> str:
        return self.options.prefix + check_key(key)

    async def _call(
        self, what: str, key: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """Run a blocking boto3 call on the provider's threads, translating its errors."""
        if self._pool is None:
            raise self.error("storage is not open; call `await provider.open()` first")
        return await self._pool.call(
            lambda exc: translate(self, exc, what, key), fn, *args, **kwargs
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
        self._require()
        ctype = content_type or mimetypes.guess_type(key)[0] or "application/octet-stream"
        meta = dict(metadata or {})
        head = {"Bucket": self.options.bucket, "Key": name, "ContentType": ctype, "Metadata": meta}
        threshold = self.options.multipart_threshold
        if isinstance(data, bytes | bytearray | memoryview):
            body = bytes(data)
            if len(body) <= threshold:
                return await self._put(key, head, body)
            etag = await self._multipart(key, head, _split(body, self.options.part_size))
            return ObjectInfo(key, len(body), ctype, etag, None, meta)
        # Streamed: buffer up to the threshold; a stream that ends before it is one PutObject.
        chunks = aiter(data)
        buffer = bytearray()
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) > threshold:
                break
        else:
            return await self._put(key, head, bytes(buffer))
        sizes = [len(buffer)]

        async def rest() -> AsyncIterator[bytes]:
            yield bytes(buffer)
            buffer.clear()
            async for chunk in chunks:
                sizes.append(len(chunk))
                yield chunk

        etag = await self._multipart(key, head, _parts(rest(), self.options.part_size))
        return ObjectInfo(key, sum(sizes), ctype, etag, None, meta)

    async def _put(self, key: str, head: dict[str, Any], body: bytes) -> ObjectInfo:
        resp = await self._call("save", key, self._require().put_object, Body=body, **head)
        return ObjectInfo(
            key, len(body), head["ContentType"], _etag(resp), None, dict(head["Metadata"])
        )

    async def _multipart(
        self, key: str, head: dict[str, Any], parts: AsyncIterator[bytes] | Iterator[bytes]
    ) -> str | None:
        """Upload ``parts`` as one multipart upload; abort it if anything fails."""
        client = self._require()
        bucket, name = head["Bucket"], head["Key"]
        created = await self._call("start upload of", key, client.create_multipart_upload, **head)
        upload_id = created["UploadId"]
        done: list[dict[str, Any]] = []
        try:
            number = 0
            async for part in _aiter(parts):
                number += 1
                resp = await self._call(
                    "upload part of", key, client.upload_part,
                    Bucket=bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=part,
                )  # fmt: skip
                done.append({"PartNumber": number, "ETag": resp["ETag"]} | _part_checksums(resp))
            resp = await self._call(
                "complete upload of", key, client.complete_multipart_upload,
                Bucket=bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": done},
            )  # fmt: skip
        except BaseException:
            # Best effort: the object never appears; the abort frees the stored parts.
            if self._pool is not None:
                await asyncio.shield(self._pool.run(_abort, client, bucket, name, upload_id))
            raise
        return _etag(resp)

    async def read(self, key: str) -> bytes:
        name = self._name(key)
        client = self._require()

        def get() -> bytes:
            body = client.get_object(Bucket=self.options.bucket, Key=name)["Body"]
            with body:
                data: bytes = body.read()
            return data

        return await self._call("read", key, get)

    async def stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        name = self._name(key)
        client = self._require()
        resp = await self._call(
            "read", key, client.get_object, Bucket=self.options.bucket, Key=name
        )
        body = resp["Body"]
        try:
            while chunk := await self._call("read", key, body.read, chunk_size):
                yield chunk
        finally:
            body.close()

    async def stat(self, key: str) -> ObjectInfo:
        name = self._name(key)
        client = self._require()
        resp = await self._call(
            "stat", key, client.head_object, Bucket=self.options.bucket, Key=name
        )
        return ObjectInfo(
            key=key,
            size=resp["ContentLength"],
            content_type=resp.get("ContentType"),
            etag=_etag(resp),
            modified=resp.get("LastModified"),
            metadata=dict(resp.get("Metadata") or {}),
        )

    async def delete(self, key: str) -> bool:
        name = self._name(key)
        client = self._require()
        try:
            await self._call("stat", key, client.head_object, Bucket=self.options.bucket, Key=name)
        except NotFoundError:
            return False
        await self._call("delete", key, client.delete_object, Bucket=self.options.bucket, Key=name)
        return True

    async def list(self, prefix: str = "", *, limit: int = 1000, cursor: str | None = None) -> Page:
        check_prefix(prefix)
        if limit < 1:
            raise ValidationError(f"list limit must be at least 1, not {limit}")
        client = self._require()
        kwargs: dict[str, Any] = {
            "Bucket": self.options.bucket,
            "Prefix": self.options.prefix + prefix,
            "MaxKeys": min(limit, 1000),
        }
        if cursor:
            kwargs["ContinuationToken"] = cursor
        resp = await self._call("list", None, client.list_objects_v2, **kwargs)
        strip = len(self.options.prefix)
        items = [
            ObjectInfo(
                key=obj["Key"][strip:],
                size=obj["Size"],
                etag=_etag(obj),
                modified=obj.get("LastModified"),
            )
            for obj in resp.get("Contents", [])
        ]
        return Page(items, resp.get("NextContinuationToken") if resp.get("IsTruncated") else None)

    async def signed_url(
        self, key: str, *, method: Literal["GET", "PUT"] = "GET", expires: int = 3600
    ) -> str:
        name = self._name(key)
        check_signed_url(method, expires)  # SigV4 presigned URLs live a week at most
        client = self._require()
        operation = "get_object" if method == "GET" else "put_object"
        # Content-Type is left out of the signature, so an uploader may send any type.
        url: str = await self._call(
            "sign", key, client.generate_presigned_url, operation,
            Params={"Bucket": self.options.bucket, "Key": name}, ExpiresIn=expires,
        )  # fmt: skip
        return url


def _etag(resp: dict[str, Any]) -> str | None:
    etag = resp.get("ETag")
    return etag.strip('"') if isinstance(etag, str) else None


def _part_checksums(resp: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resp.items() if k.startswith("Checksum") and k != "ChecksumType"}


def _abort(client: Any, bucket: str, name: str, upload_id: str) -> None:
    # The original failure is what the caller needs to see; a failed abort only leaves parts
    # that a bucket lifecycle rule for incomplete uploads cleans up.
    with contextlib.suppress(Exception):
        client.abort_multipart_upload(Bucket=bucket, Key=name, UploadId=upload_id)


def _split(body: bytes, size: int) -> Iterator[bytes]:
    """``body`` in parts of ``size``, one made at a time (not a second copy of the whole)."""
    for i in range(0, len(body), size):
        yield body[i : i + size]


async def _parts(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Regroup ``chunks`` into parts of exactly ``size`` bytes, the last one shorter."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


async def _aiter(parts: AsyncIterator[bytes] | Iterator[bytes]) -> AsyncIterator[bytes]:
    if isinstance(parts, Iterator):
        for part in parts:
            yield part
    else:
        async for part in parts:
            yield part
