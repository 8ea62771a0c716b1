"""``dw.actions.run`` vs raw httpx against the same local HTTP server, no cache.

Starts uvicorn (a minimal ASGI JSON endpoint) in its own process on a free loopback port, then
alternates rounds, in one process and one event loop, of:

* raw httpx: one pooled ``httpx.AsyncClient``; ``GET /items/{id}?q=…`` with a bearer header,
  ``raise_for_status()`` and ``.json()`` — the least a careful caller writes by hand;
* ductwork: ``dw.actions.run("catalog", "get_item", {"id": …, "q": …})`` on an app whose action
  declares ``params: {id: int}``, ``query: {q: str}`` and bearer auth — so the input is validated,
  routed, authenticated, sent, logged (disabled level) and parsed into an ``ActionResult``.

Both run ``--concurrency`` tasks at once. Prints req/s per round and the ratio ductwork/httpx of
the medians (httpx is the library ductwork uses, so the ratio is ductwork's own overhead).

Also prints the client process's CPU time per request, which a busy machine disturbs less.

Run: ``uv run python benchmarks/bench_actions.py [--rounds 7] [--requests 1500] [--concurrency 4]``
"""

from __future__ import annotations

import json
import statistics
from typing import Any

import httpx
from _http import run, timed
from ductwork.client import Ductwork
from ductwork.config.loader import Config

TOKEN = "bench-token-0123456789"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A minimal JSON endpoint: echoes the item id and query."""
    if scope["type"] != "http":
        return
    item = scope["path"].rsplit("/", 1)[-1]
    body = json.dumps({"id": item, "query": scope["query_string"].decode(),
                       "name": "lamp", "price": 1999}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                access_log=False)


async def main(rounds: int, requests: int, concurrency: int, port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    raw = httpx.AsyncClient(base_url=base, limits=limits, timeout=30,
                            headers={"Authorization": f"Bearer {TOKEN}"})
    config = Config.from_dict({
        "product": "bench", "environments": ["dev"],
        "apps": {"catalog": {
            "dev": {"base_url": base, "auth": {"kind": "bearer", "token": TOKEN}},
            "actions": {"get_item": {"path": "/items/{id}", "params": {"id": "int"},
                                     "query": {"q": "str"}}},
        }},
    })

    async def raw_call(i: int) -> object:
        response = await raw.get(f"/items/{i}", params={"q": "desk"})
        response.raise_for_status()
        return response.json()

    async with Ductwork(config, env="dev") as dw:

        async def dw_call(i: int) -> object:
            return (await dw.actions.run("catalog", "get_item", {"id": i, "q": "desk"})).body

        assert (await dw_call(7)) == await raw_call(7)
        await timed(500, concurrency, raw_call)  # warm up both pools
        await timed(500, concurrency, dw_call)
        rates: dict[str, list[float]] = {"httpx": [], "ductwork": []}
        cpus: dict[str, list[float]] = {"httpx": [], "ductwork": []}
        for r in range(rounds):
            order = [("httpx", raw_call), ("ductwork", dw_call)]
            for name, call in order if r % 2 == 0 else order[::-1]:
                rate, cpu = await timed(requests, concurrency, call)
                rates[name].append(rate)
                cpus[name].append(cpu)
                print(f"round {r + 1}  {name:9} {rate:8.0f} req/s  {cpu:6.0f} us CPU/request")
    await raw.aclose()
    raw_median, dw_median = statistics.median(rates["httpx"]), statistics.median(rates["ductwork"])
    raw_cpu, dw_cpu = statistics.median(cpus["httpx"]), statistics.median(cpus["ductwork"])
    print(f"raw httpx  median {raw_median:8.0f} req/s  {raw_cpu:6.0f} us client CPU/request")
    print(f"ductwork   median {dw_median:8.0f} req/s  {dw_cpu:6.0f} us client CPU/request")
    print(f"ratio ductwork/httpx = {dw_median / raw_median:.3f} (req/s), "
          f"{raw_cpu / dw_cpu:.3f} (inverse client CPU per request)")


if __name__ == "__main__":
    run(
        __doc__ or "",
        __file__,
        serve,
        lambda base: httpx.get(f"{base}/items/1", timeout=1).raise_for_status(),
        main,
        rounds=7,
        requests=1500,
        concurrency=4,
    )
