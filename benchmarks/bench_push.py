"""Push send through an HTTP API: ductwork's ``expo`` notifier vs raw httpx, same server.

Starts a minimal Expo push API (Starlette under uvicorn, answering one ``ok`` ticket per
message, as ``/--/api/v2/push/send`` does) in its own process on a free loopback port, then
alternates rounds of:

* ductwork: ``ExpoNotifier.send`` of one notification to ``--tokens`` device tokens (split in
  requests of 100, 6 at a time, tickets mapped to a receipt);
* raw httpx: the same messages, built by hand, posted in the same batches with the same
  concurrency on one ``httpx.AsyncClient``, tickets counted.

Prints notifications/s per round and the ratio ductwork/httpx of the medians (httpx is the
client ductwork uses, so that ratio is ductwork's own overhead: message building, batching,
ticket mapping, the error boundary).

Run: ``uv run python benchmarks/bench_push.py [--rounds 5] [--sends 30] [--tokens 300]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import uuid

import httpx
from ductwork.providers import ProviderContext
from ductwork.providers.notifier import Notification
from ductwork.testing.servers import free_port
from ductwork_expo.notifier import ExpoNotifier

SEND = "/--/api/v2/push/send"


def serve(port: int) -> None:
    """The server process: one ok ticket per message."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def send(request: Request) -> JSONResponse:
        messages = await request.json()
        return JSONResponse({"data": [{"status": "ok", "id": str(uuid.uuid4())} for _ in messages]})

    app = Starlette(routes=[Route(SEND, send, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.post(url + SEND, json=[], timeout=1)
            return proc, url
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)  # polling readiness of another process


async def ductwork_round(notifier: ExpoNotifier, tokens: list[str], sends: int) -> float:
    start = time.perf_counter()
    for _ in range(sends):
        note = Notification(channel="push", to=tokens, subject="Order", body="Shipped")
        receipt = await notifier.send(note)
        assert len(receipt.to) == len(tokens)
    return sends / (time.perf_counter() - start)


async def httpx_round(client: httpx.AsyncClient, tokens: list[str], sends: int) -> float:
    gate = asyncio.Semaphore(6)

    async def post(batch: list[str]) -> int:
        body = [{"to": t, "title": "Order", "body": "Shipped"} for t in batch]
        async with gate:
            response = await client.post(SEND, json=body)
        response.raise_for_status()
        return sum(1 for ticket in response.json()["data"] if ticket["status"] == "ok")

    start = time.perf_counter()
    for _ in range(sends):
        batches = [tokens[i : i + 100] for i in range(0, len(tokens), 100)]
        done = await asyncio.gather(*(post(b) for b in batches))
        assert sum(done) == len(tokens)
    return sends / (time.perf_counter() - start)


async def main(rounds: int, sends: int, count: int) -> None:
    proc, url = start_server()
    tokens = [f"ExponentPushToken[{i:06d}]" for i in range(count)]
    context = ProviderContext(resource="notifications.push", env="bench", provider="expo")
    try:
        async with (
            ExpoNotifier.from_options(context, base_url=url) as notifier,
            httpx.AsyncClient(base_url=url, headers={"Accept": "application/json"}) as client,
        ):
            await ductwork_round(notifier, tokens, 2)  # warm both connection pools
            await httpx_round(client, tokens, 2)
            ours: list[float] = []
            raw: list[float] = []
            for i in range(rounds):
                ours.append(await ductwork_round(notifier, tokens, sends))
                raw.append(await httpx_round(client, tokens, sends))
                print(f"round {i + 1}: ductwork {ours[-1]:.1f}/s  httpx {raw[-1]:.1f}/s")
    finally:
        proc.terminate()
        proc.wait(10)
    a, b = statistics.median(ours), statistics.median(raw)
    print(f"median: ductwork {a:.1f} sends/s, httpx {b:.1f} sends/s ({count} tokens each)")
    print(f"ratio ductwork/httpx: {a / b:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sends", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--serve", type=int, default=0)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
    else:
        asyncio.run(main(args.rounds, args.sends, args.tokens))
