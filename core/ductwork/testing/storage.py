"""``StorageSuite``: what every :class:`~ductwork.providers.Storage` must do."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import AsyncIterator
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ductwork.errors import InvalidKeyError, NotFoundError, UnsupportedError
from ductwork.providers.storage import Storage

__all__ = ["StorageSuite", "valid_keys"]

_SEGMENT = st.text(
    alphabet=st.characters(
        whitelist_categories=("L", "N"), whitelist_characters="-_ .~()!", max_codepoint=0x2FFF
    ),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", "..") and s.strip() == s)
valid_keys = st.lists(_SEGMENT, min_size=1, max_size=4).map("/".join)

BAD_KEYS = ["", "/abs", "../up", "a/../../up", "a//b", "a/./b", "a\\b", "nul\x00", "dir/", "."]


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


class StorageSuite:
    """Subclass with a ``provider`` fixture yielding an opened, empty-enough Storage."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    @pytest.fixture
    def prefix(self) -> str:
        """A fresh key prefix per test so tests never see each other's objects."""
        return f"t{uuid.uuid4().hex[:10]}/"

    async def test_save_then_read_returns_the_same_bytes(
        self, provider: Storage, prefix: str
    ) -> None:
        data = bytes(range(256)) * 10
        info = await provider.save(f"{prefix}a.bin", data, content_type="application/x-test")
        assert info.size == len(data)
        assert await provider.read(f"{prefix}a.bin") == data

    async def test_stat_reports_size_type_etag_modified_metadata(
        self, provider: Storage, prefix: str
    ) -> None:
        await provider.save(
            f"{prefix}s.txt", b"hello", content_type="text/plain", metadata={"owner": "ada"}
        )
        info = await provider.stat(f"{prefix}s.txt")
        assert info.key == f"{prefix}s.txt"
        assert info.size == 5
        assert info.content_type is not None and info.content_type.startswith("text/plain")
        assert info.etag
        assert info.modified is not None and info.modified.tzinfo is not None
        assert info.metadata.get("owner") == "ada"

    async def test_save_replaces_an_existing_object(self, provider: Storage, prefix: str) -> None:
        await provider.save(f"{prefix}r", b"first")
        await provider.save(f"{prefix}r", b"second, longer")
        assert await provider.read(f"{prefix}r") == b"second, longer"
        assert (await provider.stat(f"{prefix}r")).size == len(b"second, longer")

    async def test_streamed_save_and_read_never_need_the_whole_object(
        self, provider: Storage, prefix: str
    ) -> None:
        data = uuid.uuid4().bytes * (3 * 1024 * 1024 // 16 + 7)  # ~3 MiB, not a chunk multiple
        await provider.save(f"{prefix}big", _chunks(data, 65536))
        sizes: list[int] = []
        received = bytearray()
        async for chunk in provider.stream(f"{prefix}big", chunk_size=256 * 1024):
            sizes.append(len(chunk))
            received += chunk
        assert bytes(received) == data
        assert max(sizes) <= 256 * 1024
        assert len(sizes) > 1

    async def test_missing_object_raises_not_found(self, provider: Storage, prefix: str) -> None:
        with pytest.raises(NotFoundError):
            await provider.read(f"{prefix}missing")
        with pytest.raises(NotFoundError):
            await provider.stat(f"{prefix}missing")
        with pytest.raises(NotFoundError):
            async for _ in provider.stream(f"{prefix}missing"):
                pass
        assert await provider.exists(f"{prefix}missing") is False

    async def test_delete_reports_whether_the_object_existed(
        self, provider: Storage, prefix: str
    ) -> None:
        await provider.save(f"{prefix}d", b"x")
        assert await provider.exists(f"{prefix}d") is True
        assert await provider.delete(f"{prefix}d") is True
        assert await provider.exists(f"{prefix}d") is False
        assert await provider.delete(f"{prefix}d") is False

    async def test_list_by_prefix_in_key_order_across_pages(
        self, provider: Storage, prefix: str
    ) -> None:
        keys = [f"{prefix}dir/{n}" for n in ("c", "a", "e", "b", "d")]
        await asyncio.gather(*(provider.save(k, k.encode()) for k in keys))
        await provider.save(f"{prefix}other", b"not listed")
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await provider.list(f"{prefix}dir/", limit=2, cursor=cursor)
            pages += 1
            assert len(page.items) <= 2
            seen += [item.key for item in page.items]
            if page.cursor is None:
                break
            cursor = page.cursor
            assert pages < 10
        assert seen == sorted(keys)
        assert pages >= 3
        sizes = {i.key: i.size async for i in provider.iter_all(f"{prefix}dir/")}
        assert sizes == {k: len(k) for k in keys}

    @pytest.mark.parametrize("key", BAD_KEYS)
    async def test_unsafe_keys_are_refused_before_any_io(self, provider: Storage, key: str) -> None:
        with pytest.raises(InvalidKeyError):
            await provider.save(key, b"x")
        with pytest.raises(InvalidKeyError):
            await provider.read(key)
        with pytest.raises(InvalidKeyError):
            await provider.delete(key)

    @settings(
        max_examples=15,
        deadline=None,
        # Each example uses fresh keys, so the shared fixture is fine; and the suite is
        # inherited by many classes, which hypothesis would otherwise flag.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(key=valid_keys, data=st.binary(max_size=64))
    async def test_any_valid_key_round_trips(
        self, provider: Storage, key: str, data: bytes
    ) -> None:
        full = f"h{uuid.uuid4().hex[:8]}/{key}"
        await provider.save(full, data)
        try:
            assert await provider.read(full) == data
            listed = [i.key async for i in provider.iter_all(full.split("/", 1)[0] + "/")]
            assert listed == [full]
        finally:
            await provider.delete(full)

    async def test_signed_urls_work_or_are_unsupported(
        self, provider: Storage, prefix: str
    ) -> None:
        key = f"{prefix}signed.txt"
        if not provider.supports("signed_urls"):
            with pytest.raises(UnsupportedError):
                await provider.signed_url(key)
            return
        await provider.save(key, b"signed content", content_type="text/plain")
        url = await provider.signed_url(key, method="GET", expires=300)
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
        assert body == b"signed content"
        put_key = f"{prefix}uploaded.txt"
        put_url = await provider.signed_url(put_key, method="PUT", expires=300)
        request = urllib.request.Request(
            put_url, data=b"uploaded", method="PUT", headers={"Content-Type": "text/plain"}
        )
        await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=10).read())
        assert await provider.read(put_key) == b"uploaded"
