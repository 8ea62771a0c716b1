"""What a provider does not translate is translated at its boundary, once, for every plugin.

A third-party plugin ("ductwork-flaky") whose provider lets ``sqlite3.OperationalError`` escape
``open()``: the caller gets a ``ProviderError`` naming resource, env, provider and distribution,
the original chained. Cancellation, interrupts and ductwork's own errors pass untouched.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import types
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
from ductwork import Ductwork, NotFoundError, ProviderError, hookimpl
from ductwork._redact import register_secret
from ductwork.builtin.local import LocalStorage
from ductwork.builtin.memory_broker import MemoryBroker
from ductwork.builtin.sqlite_database import SqliteDatabase
from ductwork.config.loader import Config
from ductwork.plugins import Registry
from ductwork.providers import Cache, Options

SECRET = "flaky-Token-8c1e"


class FlakyOptions(Options):
    path: str = "flaky.db"
    fail: str = ""  # which method lets a raw exception escape


class FlakyCache(Cache):
    """A plugin's cache that forgot to translate its driver's errors."""

    Options: ClassVar[type[Options]] = FlakyOptions

    def __init__(self, options: Options | None = None, **kwargs: Any) -> None:
        if isinstance(options, FlakyOptions) and options.fail == "init":
            raise LookupError("no such driver")
        super().__init__(options, **kwargs)

    async def open(self) -> None:
        assert isinstance(self.options, FlakyOptions)
        if self.options.fail == "open":  # a folder is not a database file
            self.conn = sqlite3.connect(self.context.resolve(self.options.path))
            self.conn.execute("CREATE TABLE t (v)")
        if self.options.fail == "cancel":
            raise asyncio.CancelledError

    async def get(self, key: str) -> bytes | None:
        assert isinstance(self.options, FlakyOptions)
        if self.options.fail == "get":
            raise KeyError(f"{key} with token {SECRET} at redis://u:{SECRET}x@h/0")
        if self.options.fail == "interrupt":
            raise KeyboardInterrupt
        if self.options.fail == "own":
            raise NotFoundError("the plugin's own tree error")
        return None

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        return None

    async def delete(self, key: str) -> bool:
        return False

    async def exists(self, key: str) -> bool:
        return False

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        return amount

    async def close(self) -> None:
        assert isinstance(self.options, FlakyOptions)
        if self.options.fail == "close":
            raise RuntimeError("pool already closed")


@pytest.fixture
def flaky_registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The process registry with the built-ins and a plugin from the ``ductwork-flaky`` dist."""
    module = types.ModuleType("ductwork_flaky_plugin")
    module.FlakyCache = FlakyCache  # type: ignore[attr-defined]

    @hookimpl
    def register_providers(register: Any) -> None:
        register(Cache, "flaky", "ductwork_flaky_plugin:FlakyCache")

    module.register_providers = register_providers  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ductwork_flaky_plugin", module)
    registry = Registry()
    registry.load_defaults()
    registry.add_plugin(module, "flaky", distribution="ductwork-flaky", version="0.1")
    monkeypatch.setattr("ductwork.plugins._registry", registry)
    return registry


def _client(tmp_path: Path, fail: str) -> Ductwork:
    (tmp_path / "a-folder.db").mkdir(exist_ok=True)
    settings = {"provider": "flaky", "path": "a-folder.db", "fail": fail}
    config = Config.from_dict(
        {"product": "p", "environments": ["dev"], "caches": {"sessions": {"dev": settings}}},
        root=tmp_path,
    )
    return Ductwork(config, env="dev")


async def test_a_raw_error_from_open_becomes_a_provider_error_naming_the_plugin(
    flaky_registry, tmp_path
):
    async with _client(tmp_path, "open") as dw:
        with pytest.raises(ProviderError) as info:
            await dw.caches.get("sessions", "k")
    err = info.value
    assert type(err) is ProviderError
    assert (err.resource, err.env, err.provider) == ("caches.sessions", "dev", "flaky")
    assert err.distribution == "ductwork-flaky 0.1"
    assert isinstance(err.__cause__, sqlite3.OperationalError)
    text = str(err)
    assert "OperationalError" in text and "open()" in text and "FlakyCache" in text
    assert "distribution=ductwork-flaky 0.1" in text
    assert err.context()["distribution"] == "ductwork-flaky 0.1"


async def test_a_raw_error_from_the_constructor_is_translated(flaky_registry, tmp_path):
    async with _client(tmp_path, "init") as dw:
        with pytest.raises(ProviderError, match=r"LookupError escape __init__\(\)") as info:
            await dw.caches.get("sessions", "k")
    err = info.value
    assert (err.resource, err.env, err.distribution) == (
        "caches.sessions",
        "dev",
        "ductwork-flaky 0.1",
    )


async def test_a_provider_that_failed_to_open_is_not_kept(flaky_registry, tmp_path):
    async with _client(tmp_path, "open") as dw:
        for _ in range(2):  # each call tries to open again and fails the same clean way
            with pytest.raises(ProviderError, match=r"escape open\(\)"):
                await dw.caches.exists("sessions", "k")


async def test_a_raw_error_from_a_call_is_translated_without_leaking_secrets(
    flaky_registry, tmp_path
):
    register_secret(SECRET)
    async with _client(tmp_path, "get") as dw:
        with pytest.raises(ProviderError, match=r"KeyError escape get\(\)") as info:
            await dw.caches.get("sessions", "k")
    assert isinstance(info.value.__cause__, KeyError)
    assert SECRET not in str(info.value) and "***" in str(info.value)


async def test_a_raw_error_from_close_is_translated(flaky_registry, tmp_path):
    dw = _client(tmp_path, "close")
    await dw.caches.get("sessions", "k")
    with pytest.raises(ProviderError, match=r"RuntimeError escape close\(\)") as info:
        await dw.close()
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_ductwork_errors_and_cancellation_pass_untouched(flaky_registry, tmp_path):
    async with _client(tmp_path, "own") as dw:
        with pytest.raises(NotFoundError, match="own tree error") as info:
            await dw.caches.get("sessions", "k")
        assert info.value.__cause__ is None
    async with _client(tmp_path, "cancel") as dw:
        with pytest.raises(asyncio.CancelledError):
            await dw.caches.get("sessions", "k")


def test_keyboard_interrupt_passes_untouched():
    cache = FlakyCache(FlakyOptions(fail="interrupt"))
    call = cache.get("k")
    with pytest.raises(KeyboardInterrupt):
        call.send(None)


def test_each_method_is_wrapped_once_when_the_class_is_defined():
    class Sub(FlakyCache):
        async def get(self, key: str) -> bytes | None:
            return await super().get(key)

    assert Sub.get is not FlakyCache.get and Sub.set is FlakyCache.set
    assert getattr(Sub.get, "__ductwork_guarded__", False)
    assert Sub.get.__wrapped__.__qualname__.endswith("Sub.get")  # type: ignore[attr-defined]
    # The interfaces' own defaults are not wrapped (they call wrapped methods).
    assert not getattr(Cache.__dict__.get("get"), "__ductwork_guarded__", False)

    class Restating(FlakyCache):  # a plugin that restates its kind is still a provider
        kind: ClassVar[str] = "cache"

        async def exists(self, key: str) -> bool:
            return False

    assert getattr(Restating.exists, "__ductwork_guarded__", False)


class BrokenStreamStorage(LocalStorage):
    async def stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        yield b"first"
        raise ConnectionResetError("peer went away mid-object")


async def test_an_async_generator_is_translated_mid_stream(tmp_path):
    storage = BrokenStreamStorage.from_options(path=str(tmp_path))
    seen: list[bytes] = []
    with pytest.raises(ProviderError, match=r"ConnectionResetError escape stream\(\)") as info:
        async for chunk in storage.stream("k"):
            seen.append(chunk)
    assert seen == [b"first"] and isinstance(info.value.__cause__, ConnectionResetError)


class BrokenTransactionDatabase(SqliteDatabase):
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        if getattr(self, "fail_begin", False):
            raise sqlite3.OperationalError("database is locked")
        async with super().transaction() as conn:
            yield conn


async def test_a_context_manager_is_translated_but_the_callers_own_error_passes(tmp_path):
    async with BrokenTransactionDatabase.from_options(path=str(tmp_path / "x.db")) as db:
        with pytest.raises(ValueError, match="the caller's"):
            async with db.transaction():
                raise ValueError("the caller's own bug")
        db.fail_begin = True  # type: ignore[attr-defined]
        with pytest.raises(ProviderError, match=r"OperationalError escape transaction\(\)"):
            async with db.transaction():
                pass


async def test_what_the_callers_own_stream_raises_passes_as_it_is(tmp_path):
    async def source() -> AsyncIterator[bytes]:
        yield b"a"
        raise RuntimeError("the caller's source broke")

    def bodies() -> Iterator[bytes]:
        yield b"1"
        raise KeyError("the caller's generator broke")

    storage = LocalStorage.from_options(path=str(tmp_path))
    with pytest.raises(RuntimeError, match="the caller's source broke"):
        await storage.save("k", source())
    assert not await storage.exists("k")

    class Batching(MemoryBroker):
        async def publish_many(self, topic: str, bodies: Iterable[bytes], **kw: Any) -> int:
            return len([await self.publish(topic, b, **kw) for b in bodies])

    async with Batching.from_options() as broker:
        with pytest.raises(KeyError, match="the caller's generator broke"):
            await broker.publish_many("t", bodies())
