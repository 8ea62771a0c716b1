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
