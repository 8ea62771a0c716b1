"""A real HTTP server of big bodies (raw ASGI under uvicorn, in a thread), and products using it.

``GET /bytes?size=N`` answers N bytes generated on the fly from one 1 MiB block, never held
whole. Query options: ``cl=0`` (no Content-Length: chunked); ``enc=gzip``, ``deflate``,
``rawdeflate`` or ``gzip2`` (gzip twice) encodes the body, and ``zeros=1`` makes it N zero
bytes (a gzip bomb of N/1000 bytes on the wire); ``status=…``; ``fail=K`` (503 for the first K
requests of ``id``); ``cut=M`` (stop after M bytes, dropping the connection mid-body; with
``cut_once=1`` only on the first request of ``id``). The server counts what it handed to the
connection per ``id`` until it saw the client go away, and sets ``done[id]`` when the handler
ended: how "not read whole" is checked.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.testing.servers import asgi_server

MiB = 1 << 20
BLOCK = random.Random(19).randbytes(MiB)


def pieces(size: int, *, zeros: bool = False) -> Iterator[bytes]:
    """``size`` bytes in chunks of at most 1 MiB (views of one block: nothing is allocated)."""
    block = bytes(MiB) if zeros else BLOCK
    view = memoryview(block)
    while size > 0:
        step = min(size, MiB)
        yield view[:step]  # type: ignore[misc]
        size -= step


def expected(size: int, *, zeros: bool = False) -> bytes:
    """The body ``/bytes?size=…`` sends, whole (small sizes only)."""
    return b"".join(bytes(p) for p in pieces(size, zeros=zeros))


def sha256(size: int, *, zeros: bool = False) -> str:
    digest = hashlib.sha256()
    for piece in pieces(size, zeros=zeros):
        digest.update(piece)
    return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def encoded(size: int, enc: str, zeros: bool) -> bytes:
    """The body compressed (the server's cache: a 400 MB gzip bomb is 400 KB)."""
    if enc == "gzip2":  # gzip twice ("gzip, gzip"): decoded by httpx's own decoders
        once = encoded(size, "gzip", zeros)
        return zlib.compress(once, wbits=31)
    wbits = {"gzip": 31, "deflate": 15, "rawdeflate": -15}[enc]
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    out = [packer.compress(p) for p in pieces(size, zeros=zeros)]
    out.append(packer.flush())
    return b"".join(out)


@dataclass
class BigState:
    sent: Counter[str] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)
    done: dict[str, threading.Event] = field(default_factory=dict)

    def finished(self, rid: str, timeout: float = 30.0) -> int:
        """Wait until request ``rid``'s handler ended; the bytes it handed over."""
        assert self.done.setdefault(rid, threading.Event()).wait(timeout), rid
        return self.sent[rid]


async def app(state: BigState, scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    q = dict(parse_qsl(scope["query_string"].decode()))
    rid = q.get("id", "")
    state.hits[rid] += 1
    done = state.done.setdefault(rid, threading.Event())
    gone = asyncio.Event()

    async def listen() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    listener = asyncio.create_task(listen())
    try:
        if state.hits[rid] <= int(q.get("fail", "0")):
            await _send_whole(send, 503, b'{"error": "busy"}', [(b"retry-after", b"0")])
            return
        size, zeros = int(q.get("size", "0")), q.get("zeros") == "1"
        enc = q.get("enc", "identity")
        headers = [(b"content-type", q.get("ctype", "application/octet-stream").encode())]
        if enc == "identity":
            chunks: Iterator[bytes] = pieces(size, zeros=zeros)
            length = size
        else:
            data = encoded(size, enc, zeros)
            chunks = (data[i : i + MiB] for i in range(0, len(data), MiB))
            length = len(data)
            coding = {"gzip2": b"gzip, gzip", "deflate": b"deflate", "rawdeflate": b"deflate"}
            headers.append((b"content-encoding", coding.get(enc, b"gzip")))
        if q.get("cl", "1") == "1":
            headers.append((b"content-length", str(length).encode()))
        cut = int(q.get("cut", "-1"))
        if q.get("cut_once") == "1" and state.hits[rid] > 1:
            cut = -1
        status = int(q.get("status", "200"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for chunk in chunks:
            await asyncio.sleep(0)  # lets the listener see a disconnect
            if gone.is_set():
                return
            if 0 <= cut <= state.sent[rid] + len(chunk):
                piece = chunk[: cut - state.sent[rid]]
                await send({"type": "http.response.body", "body": bytes(piece), "more_body": True})
                state.sent[rid] += len(piece)
                return  # the response is never completed: uvicorn drops the connection
            await send({"type": "http.response.body", "body": bytes(chunk), "more_body": True})
            state.sent[rid] += len(chunk)
        await send({"type": "http.response.body", "body": b""})
    finally:
        listener.cancel()
        done.set()


async def _send_whole(send: Any, status: int, body: bytes, headers: list[Any]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class BigServer:
    """The server's URL and state, and the helpers tests need (conftest is not importable)."""

    url: str
    state: BigState
    counter: int = 0
    expected = staticmethod(expected)
    sha256 = staticmethod(sha256)
    encoded = staticmethod(encoded)

    def new_id(self) -> str:
        self.counter += 1
        return f"r{self.counter}"

    def config(self, root: Any, **extra: Any) -> dict[str, Any]:
        return big_config(self.url, root, **extra)


@pytest.fixture(scope="session")
def big_server() -> Iterator[BigServer]:
    state = BigState()
    with asgi_server(functools.partial(app, state)) as url:
        yield BigServer(url, state)


def big_config(
    url: str, root: Any, *, storage: dict[str, Any] | None = None, app: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A product with app ``files`` (action ``get``: GET /bytes) and local storage ``files``."""
    files = {"dev": {"provider": "local", "path": str(root / "files")}}
    return {
        "product": "big",
        "environments": ["dev"],
        "caches": {"hot": {"dev": {"provider": "memory"}}},
        "storage": {"files": files, **(storage or {})},
        "apps": {
            "files": {
                "dev": {"base_url": url},
                "retry": {"retries": 2, "backoff": 0.0},
                "actions": {
                    "get": {
                        "path": "/bytes",
                        "query": {
                            k: "str?"
                            for k in (
                                "size",
                                "cl",
                                "enc",
                                "zeros",
                                "id",
                                "fail",
                                "cut",
                                "cut_once",
                                "status",
                                "ctype",
                            )
                        },
                    },
                    "small": {
                        "path": "/bytes",
                        "query": {"size": "str", "id": "str?", "cl": "str?"},
                        "max_response_size": "4KiB",
                    },
                    "head": {"method": "HEAD", "path": "/bytes", "query": {"size": "str"}},
                },
                **(app or {}),
            }
        },
    }


@pytest.fixture
async def big_dw(big_server: BigServer, tmp_path: Any):
    config = Config.from_dict(big_server.config(tmp_path), root=tmp_path)
    async with Ductwork(config, env="dev") as dw:
        yield dw
