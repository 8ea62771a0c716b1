"""``dw.actions.stream`` vs raw httpx streaming the same big response, interleaved rounds.

Starts uvicorn (a minimal ASGI endpoint answering ``--mb`` MiB generated on the fly from one
1 MiB block, with Content-Length, or chunked with ``--chunked``; ``--gzip`` sends a gzip body of
zeros instead, compressed once) in its own process on a free loopback port, then alternates
rounds, in one process and one event loop, of:

* raw httpx: ``client.stream("GET", …)`` on one pooled ``httpx.AsyncClient``,
  ``raise_for_status()``, then ``aiter_bytes()`` counting the bytes — what a careful caller
  writes by hand;
* ductwork: ``async with dw.actions.stream("files", "export", …)`` and ``async for`` over it —
  input validated, the retry policy, the status check, decoded bytes counted against the
  (unset) ``max_size``.

Each round downloads the body ``--repeat`` times. Prints MB/s per round, both medians and the
ratio ductwork/httpx, and the client's CPU seconds per GB.

Run: ``uv run python benchmarks/bench_actions_stream.py [--rounds 5] [--mb 256] [--repeat 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from ductwork.client import Ductwork
from ductwork.config.loader import Config

MiB = 1 << 20
BLOCK = bytes(range(256)) * (MiB // 256)


def gzip_zeros(size: int) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    zeros = bytes(MiB)
    out = [packer.compress(zeros) for _ in range(size // MiB)]
    return b"".join([*out, packer.flush()])


def make_app(size: int, chunked: bool, gzip: bool) -> Any:
    packed = gzip_zeros(size) if gzip else b""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"application/octet-stream")]
        if gzip:
            headers += [(b"content-encoding", b"gzip")]
        length = len(packed) if gzip else size
        if not chunked:
            headers.append((b"content-length", str(length).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if gzip:
            for i in range(0, len(packed), MiB):
                piece = packed[i : i + MiB]
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        else:
            for _ in range(size // MiB):
                await send({"type": "http.response.body", "body": BLOCK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def serve(port: int, size: int, chunked: bool, gzip: bool) -> None:
    import uvicorn

    uvicorn.run(make_app(size, chunked, gzip), host="127.0.0.1", port=port, log_level="warning",
                lifespan="off", access_log=False, interface="asgi3")


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    argv = [sys.executable, __file__, "--serve", str(port), "--mb", str(args.mb)]
    argv += ["--chunked"] if args.chunked else []
    argv += ["--gzip"] if args.gzip else []
    proc = subprocess.Popen(argv)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.05)  # polling readiness of the server process


async def timed(repeat: int, call: Callable[[], Awaitable[int]]) -> tuple[float, float, int]:
    """(MB/s, client CPU seconds per GB, bytes per download)."""
    began, cpu = time.perf_counter(), time.process_time()
    total = 0
    for _ in range(repeat):
        total += await call()
    wall, used = time.perf_counter() - began, time.process_time() - cpu
    return total / MiB / wall, used / (total / 1e9), total // repeat


async def main(args: argparse.Namespace, port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    raw = httpx.AsyncClient(base_url=base, timeout=60)
    config = Config.from_dict({
        "product": "bench", "environments": ["dev"],
        "apps": {"files": {
            "dev": {"base_url": base},
            "actions": {"export": {"path": "/export", "query": {"format": "str"}}},
        }},
    })

    async def raw_call() -> int:
        n = 0
        async with raw.stream("GET", "/export", params={"format": "csv"}) as response:
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                n += len(chunk)
        return n

    async with Ductwork(config, env="dev") as dw:

        async def dw_call() -> int:
            n = 0
            async with dw.actions.stream("files", "export", {"format": "csv"}) as response:
                async for chunk in response:
                    n += len(chunk)
            return n

        assert await raw_call() == await dw_call() == args.mb * MiB  # and warms both pools
        rates: dict[str, list[float]] = {"httpx": [], "ductwork": []}
        cpus: dict[str, list[float]] = {"httpx": [], "ductwork": []}
        for r in range(args.rounds):
            order = [("httpx", raw_call), ("ductwork", dw_call)]
            for name, call in order if r % 2 == 0 else order[::-1]:
                rate, cpu, _ = await timed(args.repeat, call)
                rates[name].append(rate)
                cpus[name].append(cpu)
                print(f"round {r + 1}  {name:9} {rate:8.0f} MB/s  {cpu:6.2f} CPU s/GB")
    await raw.aclose()
    raw_median, dw_median = statistics.median(rates["httpx"]), statistics.median(rates["ductwork"])
    raw_cpu, dw_cpu = statistics.median(cpus["httpx"]), statistics.median(cpus["ductwork"])
    print(f"raw httpx  median {raw_median:8.0f} MB/s  {raw_cpu:6.2f} client CPU s/GB")
    print(f"ductwork   median {dw_median:8.0f} MB/s  {dw_cpu:6.2f} client CPU s/GB")
    print(f"ratio ductwork/httpx = {dw_median / raw_median:.3f} (MB/s), "
          f"{raw_cpu / dw_cpu:.3f} (inverse client CPU per GB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mb", type=int, default=256, help="MiB per download")
    parser.add_argument("--repeat", type=int, default=2, help="downloads per round")
    parser.add_argument("--chunked", action="store_true", help="no Content-Length")
    parser.add_argument("--gzip", action="store_true", help="a gzip body of zeros")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.mb * MiB, args.chunked, args.gzip)
        sys.exit(0)
    server, port = start_server(args)
    try:
        asyncio.run(main(args, port))
    finally:
        server.terminate()
        server.wait(timeout=10)
