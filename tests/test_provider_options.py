"""A provider is generic in its options class: ``Cache[MyOptions]`` sets ``Options``."""

from __future__ import annotations

import pytest
from ductwork.builtin.local import LocalOptions
from ductwork.builtin.memory_cache import MemoryCache, MemoryCacheOptions
from ductwork.providers import Cache, Options


class KvOptions(Options):
    path: str = "kv.db"


class Kv(Cache[KvOptions]):
    async def get(self, key: str) -> bytes | None:
        return self.options.path.encode()  # typed: a KvOptions

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        return None

    async def delete(self, key: str) -> bool:
        return False

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        return amount


async def test_the_type_argument_is_the_options_class():
    assert Kv.Options is KvOptions and MemoryCache.Options is MemoryCacheOptions
    assert await Kv.from_options(path="x.db").get("k") == b"x.db"
    assert isinstance(Kv().options, KvOptions)
    with pytest.raises(ValueError, match="nope"):  # pydantic names the unknown option
        Kv.from_options(nope=1)


def test_options_of_another_provider_are_refused():
    with pytest.raises(TypeError, match="Kv takes KvOptions, not LocalOptions"):
        Kv(LocalOptions())
