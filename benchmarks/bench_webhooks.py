"""Signed webhook delivery vs raw httpx posting the same bodies unsigned, to a local receiver.

Starts uvicorn (a minimal ASGI endpoint answering 200) in its own process on a free loopback
port, then alternates rounds, in one process and one event loop, of:

* raw httpx: one pooled ``httpx.AsyncClient``; ``POST`` of the JSON body a webhook carries with
  ``content-type: application/json`` and ``raise_for_status()``, no signature;
* ductwork: ``dw.notifications.send("hooks", "paid", to=url, data=…)`` (a configured callback
  template, ``body: "order {{ order }} paid"``) on the built-in ``webhook`` notifier
  (``allow_private: true``: the receiver is on loopback) — the notification is rendered and
  checked, goes through the one retry loop, is serialised, signed (HMAC-SHA256, Standard
  Webhooks headers) and POSTed;
* no-log: the same send on a notifier with ``log: false`` (no delivery-log writes);
* ductwork provider: ``WebhookNotifier.send`` directly (no namespace, no retry loop).

The delivery log is the default SQLite store in a temporary folder.

Each runs ``--concurrency`` deliveries at once (50 in flight by default). Prints deliveries/s per
round and the ratios of the medians against raw httpx.

Run: ``uv run python benchmarks/bench_webhooks.py [--rounds 5] [--requests 2000]
[--concurrency 50]``
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx
from _http import run, timed
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.providers.notifier import Notification, Notifier
from ductwork.webhooks import generate_secret


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the body, answers 200 ``ok``."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                access_log=False)


def _data(i: int) -> dict[str, Any]:
    return {"order": i, "status": "paid", "total": 1999, "items": ["lamp", "desk"]}


async def main(rounds: int, requests: int, concurrency: int, port: int) -> None:
    url = f"http://127.0.0.1:{port}/in"
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    raw = httpx.AsyncClient(limits=limits, timeout=30)
    hooks = {
        "dev": {"provider": "webhook", "secret": generate_secret(), "allow_private": True},
        "messages": {"paid": {"callback": {
            "subject": "order.paid", "body": "order {{ order }} paid",
        }}},
    }
    folder = tempfile.TemporaryDirectory()  # the delivery log's store (SQLite, the default)
    config = Config.from_dict({
        "product": "bench", "environments": ["dev"],
        "notifications": {"hooks": hooks, "quiet": {**hooks, "log": False}},
    }, root=Path(folder.name))

    async def raw_call(i: int) -> object:
        body = json.dumps(
            {"id": f"{i:032x}", "type": "order.paid", "timestamp": "2026-12-04T08:00:00.000000Z",
             "message": f"order {i} paid", "data": _data(i)},
            separators=(",", ":"),
        ).encode()
        response = await raw.post(url, content=body, headers={"content-type": "application/json"})
        response.raise_for_status()
        return response

    async with Ductwork(config, env="dev") as dw:
        provider = await dw.provider("notifications", "hooks")
        assert isinstance(provider, Notifier)

        async def dw_call(i: int) -> object:
            return await dw.notifications.send("hooks", "paid", to=url, data=_data(i))

        async def unlogged_call(i: int) -> object:
            return await dw.notifications.send("quiet", "paid", to=url, data=_data(i))

        async def provider_call(i: int) -> object:
            return await provider.send(Notification(
                channel="callback", to=[url], subject="order.paid", body=f"order {i} paid",
                data=_data(i),
            ))

        calls = {
            "httpx": raw_call,
            "ductwork": dw_call,
            "no-log": unlogged_call,
            "provider": provider_call,
        }
        for call in calls.values():  # warm up the pools
            await timed(300, concurrency, call)
        rates: dict[str, list[float]] = {name: [] for name in calls}
        cpus: dict[str, list[float]] = {name: [] for name in calls}
        for r in range(rounds):
            order = list(calls.items())
            for name, call in order if r % 2 == 0 else order[::-1]:
                rate, cpu = await timed(requests, concurrency, call)
                rates[name].append(rate)
                cpus[name].append(cpu)
                print(f"round {r + 1}  {name:9} {rate:8.0f} deliveries/s  "
                      f"{cpu:6.0f} us CPU/delivery")
    await raw.aclose()
    medians = {name: statistics.median(found) for name, found in rates.items()}
    cpu_medians = {name: statistics.median(found) for name, found in cpus.items()}
    for name, median in medians.items():
        print(f"{name:9} median {median:8.0f} deliveries/s  {cpu_medians[name]:6.0f} us client CPU")
    folder.cleanup()
    for name in ("ductwork", "no-log", "provider"):
        print(f"ratio {name}/httpx = {medians[name] / medians['httpx']:.3f} (deliveries/s), "
              f"{cpu_medians['httpx'] / cpu_medians[name]:.3f} (inverse client CPU per delivery)")
    print(f"({concurrency} in flight)")


if __name__ == "__main__":
    run(
        __doc__ or "",
        __file__,
        serve,
        lambda base: httpx.post(f"{base}/in", content=b"{}", timeout=1).raise_for_status(),
        main,
        rounds=5,
        requests=2000,
        concurrency=50,
    )
