"""Every embedded provider passes its interface's conformance suite."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from ductwork.builtin.local import LocalStorage
from ductwork.builtin.mailbox import MailboxNotifier, read_outbox
from ductwork.builtin.memory_broker import MemoryBroker
from ductwork.builtin.memory_cache import MemoryCache
from ductwork.builtin.sqlite_broker import SqliteBroker
from ductwork.builtin.sqlite_database import SqliteDatabase
from ductwork.providers import ProviderContext
from ductwork.testing import BrokerSuite, CacheSuite, DatabaseSuite, NotifierSuite, StorageSuite


def ctx(tmp_path: Path, name: str) -> ProviderContext:
    return ProviderContext(resource=f"test.{name}", env="test", provider=name, root=tmp_path)


class TestLocalStorage(StorageSuite):
    @pytest.fixture
    async def provider(self, tmp_path):
        async with LocalStorage.from_options(ctx(tmp_path, "local"), path="files") as p:
            yield p


class TestMemoryBroker(BrokerSuite):
    @pytest.fixture
    async def provider(self, tmp_path):
        async with MemoryBroker.from_options(
            ctx(tmp_path, "memory"), namespace=uuid.uuid4().hex
        ) as p:
            yield p


class TestSqliteBroker(BrokerSuite):
    @pytest.fixture
    async def provider(self, tmp_path):
        async with SqliteBroker.from_options(
            ctx(tmp_path, "sqlite"), path="events.db", poll_interval=0.01
        ) as p:
            yield p


class TestSqliteDatabase(DatabaseSuite):
    @pytest.fixture
    async def provider(self, tmp_path):
        async with SqliteDatabase.from_options(ctx(tmp_path, "sqlite"), path="main.db") as p:
            yield p


class TestMemoryCache(CacheSuite):
    @pytest.fixture
    async def provider(self, tmp_path):
        async with MemoryCache.from_options(
            ctx(tmp_path, "memory"), namespace=uuid.uuid4().hex
        ) as p:
            yield p


class TestMailboxNotifier(NotifierSuite):
    @pytest.fixture
    async def provider(self, tmp_path):
        async with MailboxNotifier.from_options(ctx(tmp_path, "mailbox"), path="outbox") as p:
            yield p

    @pytest.fixture
    def outbox(self, tmp_path):
        async def read():
            return read_outbox(tmp_path / "outbox")

        return read
