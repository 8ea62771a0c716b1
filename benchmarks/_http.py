"""Shared by the HTTP benchmarks: a uvicorn server process, and timed concurrent calls."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx


def start_server(
    script: str, probe: Callable[[str], object]
) -> tuple[subprocess.Popen[bytes], int]:
    """Run ``script --serve PORT`` on a free loopback port; ready once ``probe(base)`` passes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = subprocess.Popen([sys.executable, script, "--serve", str(port)])
    deadline = time.monotonic() + 20
    while True:
        try:
            probe(f"http://127.0.0.1:{port}")
            return proc, port
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.05)  # polling readiness of the server process


async def timed(
    total: int, concurrency: int, call: Callable[[int], Awaitable[object]]
) -> tuple[float, float]:
    """(calls per second, client CPU microseconds per call), ``concurrency`` at once."""

    async def worker(start: int) -> None:
        for i in range(start, total, concurrency):
            await call(i)

    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    wall, used = time.perf_counter() - began, time.process_time() - cpu
    return total / wall, used / total * 1e6


def run(
    doc: str,
    script: str,
    serve: Callable[[int], None],
    probe: Callable[[str], object],
    main: Callable[[int, int, int, int], Awaitable[None]],
    *,
    rounds: int,
    requests: int,
    concurrency: int,
) -> None:
    """The command line of an HTTP benchmark: ``--serve PORT`` serves, else benchmark rounds."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--requests", type=int, default=requests)
    parser.add_argument("--concurrency", type=int, default=concurrency)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        sys.exit(0)
    server, port = start_server(script, probe)
    try:
        asyncio.run(main(args.rounds, args.requests, args.concurrency, port))
    finally:
        server.terminate()
        server.wait(timeout=10)
