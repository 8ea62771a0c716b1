"""S3Storage passes the storage conformance suite on a real moto server, plus S3 specifics."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pydantic
import pytest
from ductwork.errors import (
    AuthenticationError,
    ConnectionFailedError,
    NotFoundError,
    ProviderError,
    ValidationError,
)
from ductwork.plugins import get_registry
from ductwork.providers import ProviderContext
from ductwork.testing import StorageSuite
from ductwork_s3.storage import S3Storage

MiB = 1024 * 1024
CONTEXT = ProviderContext(resource="storage.files", env="test", provider="s3")
ACCESS_KEY = "AKIATESTDUCTWORK"  # as in conftest.py
SECRET_KEY = "s3-test-secret-never-printed"


def options(url: str, **extra):
    return {
        "bucket": f"dw-{uuid.uuid4().hex[:12]}",
        "endpoint_url": url,
        "region": "us-east-1",
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "create_bucket": True,
        "addressing_style": "path",
    } | extra


class TestS3Storage(StorageSuite):
    @pytest.fixture
    async def provider(self, moto_url):
        async with S3Storage.from_options(CONTEXT, **options(moto_url)) as storage:
            yield storage


async def chunks(data: bytes, size: int, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        if fail_after is not None and i >= fail_after:
            raise RuntimeError("source broke")
        yield data[i : i + size]


async def test_large_streamed_save_is_a_multipart_upload(moto_url):
    opts = options(moto_url, multipart_threshold=5 * MiB, part_size=5 * MiB)
    async with S3Storage.from_options(CONTEXT, **opts) as storage:
        data = uuid.uuid4().bytes * (11 * MiB // 16 + 3)
        info = await storage.save("big.bin", chunks(data, 256 * 1024), metadata={"k": "v"})
        assert info.size == len(data)
        assert info.etag is not None and info.etag.endswith("-3")  # three parts
        assert await storage.read("big.bin") == data
        stat = await storage.stat("big.bin")
        assert (stat.size, stat.metadata) == (len(data), {"k": "v"})


async def test_large_bytes_save_is_a_multipart_upload(moto_url):
    opts = options(moto_url, multipart_threshold=5 * MiB, part_size=5 * MiB)
    async with S3Storage.from_options(CONTEXT, **opts) as storage:
        data = b"x" * (6 * MiB)
        info = await storage.save("big.bin", data)
        assert info.etag is not None and info.etag.endswith("-2")
        assert await storage.read("big.bin") == data


async def test_failed_streamed_save_leaves_no_object_and_no_upload(moto_url):
    opts = options(moto_url, multipart_threshold=5 * MiB, part_size=5 * MiB)
    async with S3Storage.from_options(CONTEXT, **opts) as storage:
        data = b"y" * (12 * MiB)
        with pytest.raises(RuntimeError, match="source broke"):
            await storage.save("broken.bin", chunks(data, MiB, fail_after=11 * MiB))
        assert await storage.exists("broken.bin") is False
        uploads = storage.native.list_multipart_uploads(Bucket=storage.options.bucket)
        assert uploads.get("Uploads", []) == []


async def test_prefix_keeps_objects_under_it_and_out_of_keys(moto_url):
    opts = options(moto_url, prefix="tenant-a")
    async with S3Storage.from_options(CONTEXT, **opts) as storage:
        assert storage.options.prefix == "tenant-a/"
        await storage.save("docs/one.txt", b"1")
        raw = storage.native.list_objects_v2(Bucket=storage.options.bucket)
        assert [o["Key"] for o in raw["Contents"]] == ["tenant-a/docs/one.txt"]
        page = await storage.list("docs/")
        assert [i.key for i in page.items] == ["docs/one.txt"]
        assert (await storage.stat("docs/one.txt")).key == "docs/one.txt"


async def test_signed_url_arguments_are_checked(moto_url):
    async with S3Storage.from_options(CONTEXT, **options(moto_url)) as storage:
        with pytest.raises(ValidationError):
            await storage.signed_url("a.txt", expires=0)
        with pytest.raises(ValidationError):
            await storage.signed_url("a.txt", method="DELETE")  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            await storage.list("", limit=0)


async def test_missing_bucket_is_a_provider_error_not_a_missing_object(moto_url):
    opts = options(moto_url, create_bucket=False)
    async with S3Storage.from_options(CONTEXT, **opts) as storage:
        with pytest.raises(ProviderError, match="bucket does not exist"):
            await storage.read("a.txt")
        with pytest.raises(ProviderError, match="bucket does not exist"):
            await storage.ping()


async def test_connection_refused_names_where_and_hides_the_secret(closed_url):
    url = closed_url
    opts = options(url, max_attempts=1, connect_timeout=2, create_bucket=False)
    async with S3Storage.from_options(CONTEXT, **opts) as storage:
        with pytest.raises(ConnectionFailedError) as caught:
            await storage.save("a.txt", b"x")
    message = str(caught.value)
    for part in ("storage.files", "env=test", "provider=s3", url, opts["bucket"]):
        assert part in message
    assert SECRET_KEY not in message
    assert isinstance(caught.value.__cause__, Exception)


async def test_bad_credentials_raise_authentication_error(moto_with_auth):
    opts = options(moto_with_auth, create_bucket=False, max_attempts=1)
    async with S3Storage.from_options(CONTEXT, **opts) as storage:
        with pytest.raises(AuthenticationError) as caught:
            await storage.save("a.txt", b"x")
        with pytest.raises(AuthenticationError):
            await storage.stat("a.txt")  # HEAD: a bare 403 without an error code
    assert SECRET_KEY not in str(caught.value)
    assert "InvalidAccessKeyId" in str(caught.value)


async def test_delete_of_a_missing_object_is_false_and_read_not_found(moto_url):
    async with S3Storage.from_options(CONTEXT, **options(moto_url)) as storage:
        assert await storage.delete("nope") is False
        with pytest.raises(NotFoundError):
            await storage.read("nope")


def test_options_reject_unknown_keys_and_bad_values():
    with pytest.raises(pydantic.ValidationError, match="colour"):
        S3Storage.Options(bucket="my-bucket", colour="red")
    with pytest.raises(pydantic.ValidationError):
        S3Storage.Options(bucket="my-bucket", part_size=1024)  # below S3's 5 MiB minimum
    with pytest.raises(pydantic.ValidationError):
        S3Storage.Options(bucket="my-bucket", prefix="../up")
    opts = S3Storage.Options(bucket="my-bucket", secret_access_key="hidden-value")
    assert "hidden-value" not in repr(opts)


async def test_calls_before_open_fail_clearly():
    storage = S3Storage.from_options(CONTEXT, bucket="my-bucket")
    with pytest.raises(ProviderError, match="not open"):
        await storage.read("a.txt")


def test_registered_through_the_entry_point():
    entry = get_registry().entries[("storage", "s3")]
    assert entry.distribution == "ductwork-s3"
    assert get_registry().get("storage", "s3") is S3Storage
