"""GCSStorage passes the storage conformance suite on a real GCS emulator, plus GCS specifics."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, unquote, urlsplit

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
from ductwork_gcs.storage import GCSStorage

KiB = 1024
MiB = 1024 * KiB
CONTEXT = ProviderContext(resource="storage.files", env="test", provider="gcs")


def options(url: str, **extra):
    return {
        "bucket": f"dw-{uuid.uuid4().hex[:12]}",
        "project": "test",
        "endpoint": url,
        "anonymous": True,
        "create_bucket": True,
        # Small chunks, so the suite's 3 MiB streamed save is a resumable upload.
        "chunk_size": 1 * MiB,
    } | extra


class TestGCSStorage(StorageSuite):
    @pytest.fixture
    async def provider(self, gcs_url, service_account_file):
        opts = options(gcs_url, signing_credentials_file=str(service_account_file))
        async with GCSStorage.from_options(CONTEXT, **opts) as storage:
            yield storage


async def chunks(data: bytes, size: int, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        if fail_after is not None and i >= fail_after:
            raise RuntimeError("source broke")
        yield data[i : i + size]


async def test_limit_is_honoured_although_the_emulator_ignores_max_results(gcs_url):
    async with GCSStorage.from_options(CONTEXT, **options(gcs_url)) as storage:
        keys = [f"p/{n:02d}" for n in range(7)]
        for k in keys:
            await storage.save(k, b"x")
        pages = []
        cursor = None
        while True:
            page = await storage.list("p/", limit=3, cursor=cursor)
            pages.append([i.key for i in page.items])
            if page.cursor is None:
                break
            cursor = page.cursor
        assert pages == [keys[0:3], keys[3:6], keys[6:7]]
        with pytest.raises(ValidationError):
            await storage.list("p/", cursor="not-a-cursor")


async def test_listing_reports_type_and_metadata(gcs_url):
    async with GCSStorage.from_options(CONTEXT, **options(gcs_url)) as storage:
        await storage.save("m.txt", b"hi", content_type="text/plain", metadata={"a": "b"})
        (item,) = (await storage.list("")).items
        assert (item.key, item.size, item.content_type, item.metadata) == (
            "m.txt",
            2,
            "text/plain",
            {"a": "b"},
        )


async def test_large_bytes_save_is_chunked_and_round_trips(gcs_url):
    async with GCSStorage.from_options(CONTEXT, **options(gcs_url, chunk_size=256 * KiB)) as s:
        data = uuid.uuid4().bytes * (MiB // 16 + 5)
        info = await s.save("big.bin", data, metadata={"k": "v"})
        assert info.size == len(data) and info.etag
        assert await s.read("big.bin") == data
        assert (await s.stat("big.bin")).metadata == {"k": "v"}


async def test_failed_streamed_save_leaves_no_object(gcs_url):
    async with GCSStorage.from_options(CONTEXT, **options(gcs_url, chunk_size=256 * KiB)) as s:
        data = b"y" * (2 * MiB)
        with pytest.raises(RuntimeError, match="source broke"):
            await s.save("broken.bin", chunks(data, 64 * KiB, fail_after=MiB))
        assert await s.exists("broken.bin") is False


async def test_prefix_keeps_objects_under_it_and_out_of_keys(gcs_url):
    async with GCSStorage.from_options(CONTEXT, **options(gcs_url, prefix="tenant-a")) as s:
        assert s.options.prefix == "tenant-a/"
        await s.save("docs/one.txt", b"1")
        raw = [b.name for b in s.native.list_blobs(s.options.bucket)]
        assert raw == ["tenant-a/docs/one.txt"]
        assert [i.key for i in (await s.list("docs/")).items] == ["docs/one.txt"]
        assert (await s.stat("docs/one.txt")).key == "docs/one.txt"


async def test_signed_urls_are_v4_urls_of_the_object_signed_by_the_configured_account(
    gcs_url, service_account_file
):
    opts = options(gcs_url, signing_credentials_file=str(service_account_file), prefix="t/")
    async with GCSStorage.from_options(CONTEXT, **opts) as storage:
        url = await storage.signed_url("docs/a b.txt", method="PUT", expires=600)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}" == gcs_url
    assert unquote(parts.path) == f"/{opts['bucket']}/t/docs/a b.txt"
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    signer = json.loads(service_account_file.read_text())["client_email"]
    assert query["X-Goog-Credential"][0].startswith(f"{signer}/")
    assert query["X-Goog-Expires"] == ["600"]
    assert re.fullmatch(r"[0-9a-f]{512}", query["X-Goog-Signature"][0])  # RSA-2048, hex


async def test_signing_without_a_key_says_what_to_set(gcs_url):
    async with GCSStorage.from_options(CONTEXT, **options(gcs_url)) as storage:
        assert storage.supports("signed_urls")
        with pytest.raises(AuthenticationError, match="signing_credentials_file"):
            await storage.signed_url("a.txt")


@pytest.mark.parametrize(
    ("method", "expires"), [("DELETE", 60), ("GET", 0), ("PUT", 7 * 24 * 3600 + 1)]
)
async def test_signed_url_requests_are_checked_before_signing(gcs_url, method, expires):
    async with GCSStorage.from_options(CONTEXT, **options(gcs_url)) as storage:
        with pytest.raises(ValidationError):
            await storage.signed_url("a.txt", method=method, expires=expires)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            await storage.signed_url("../escape.txt")


async def test_missing_bucket_is_a_provider_error_not_a_missing_object(gcs_url):
    async with GCSStorage.from_options(CONTEXT, **options(gcs_url, create_bucket=False)) as s:
        with pytest.raises(ProviderError, match="bucket does not exist"):
            await s.ping()
        with pytest.raises(ProviderError, match="bucket does not exist"):
            await s.list("")


async def test_connection_refused_names_where(closed_url):
    opts = options(closed_url, create_bucket=False, retry_deadline=0)
    async with GCSStorage.from_options(CONTEXT, **opts) as storage:
        with pytest.raises(ConnectionFailedError) as caught:
            await storage.save("a.txt", b"x")
        with pytest.raises(ConnectionFailedError):
            await storage.read("a.txt")
    message = str(caught.value)
    for part in ("storage.files", "env=test", "provider=gcs", closed_url, opts["bucket"]):
        assert part in message


async def test_connection_refused_after_retries_is_still_connection_failed(closed_url):
    opts = options(closed_url, create_bucket=False, retry_deadline=0.5)
    async with GCSStorage.from_options(CONTEXT, **opts) as storage:
        with pytest.raises(ConnectionFailedError):
            await storage.stat("a.txt")


async def test_unusable_credentials_file_is_an_authentication_error(tmp_path, gcs_url):
    secret = "-----BEGIN PRIVATE KEY-----not-really"
    (tmp_path / "sa.json").write_text(f'{{"type": "service_account", "private_key": "{secret}"}}')
    context = ProviderContext(resource="storage.files", env="test", provider="gcs", root=tmp_path)
    opts = options(gcs_url, anonymous=False, credentials_file="sa.json")
    with pytest.raises(AuthenticationError) as caught:
        await GCSStorage.from_options(context, **opts).open()
    assert "sa.json" in str(caught.value)
    assert secret not in str(caught.value)


async def test_delete_of_a_missing_object_is_false_and_read_not_found(gcs_url):
    async with GCSStorage.from_options(CONTEXT, **options(gcs_url)) as storage:
        assert await storage.delete("nope") is False
        with pytest.raises(NotFoundError):
            await storage.read("nope")


def test_options_reject_unknown_keys_and_bad_values():
    with pytest.raises(pydantic.ValidationError, match="colour"):
        GCSStorage.Options(bucket="my-bucket", colour="red")
    with pytest.raises(pydantic.ValidationError):
        GCSStorage.Options(bucket="my-bucket", chunk_size=1000)  # not a multiple of 256 KiB
    with pytest.raises(pydantic.ValidationError):
        GCSStorage.Options(bucket="my-bucket", prefix="a/../b")


async def test_calls_before_open_fail_clearly():
    storage = GCSStorage.from_options(CONTEXT, bucket="my-bucket")
    with pytest.raises(ProviderError, match="not open"):
        await storage.read("a.txt")


def test_registered_through_the_entry_point():
    entry = get_registry().entries[("storage", "gcs")]
    assert entry.distribution == "ductwork-gcs"
    assert get_registry().get("storage", "gcs") is GCSStorage
