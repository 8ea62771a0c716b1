"""``dw.quotas.run`` and ``dw.fallbacks.run`` vs calling the same HTTP action directly.

Starts bench_actions.py's uvicorn server (a minimal ASGI JSON endpoint) in its own process on a
free loopback port, then
alternates rounds, in one process and one event loop, of:

* direct: ``dw.actions.run("sms_a", "send", {"id": …, "q": …})``;
* quota: ``dw.quotas.run("sms", {"to": …})`` — two providers (70/30, both healthy, both on
  this server), input and output mappings, an in-process circuit breaker per target;
* quota+health: the same with a healthcheck on each provider (``dw.health.healthy`` asked on
  every call; the answer is whatever the health namespace gives);
* fallback: ``dw.fallbacks.run("pay", {"to": …})`` — the first of two providers answers.

Each runs ``--concurrency`` tasks at once. Prints calls/s per round and the ratio to direct of
the medians, and the client's CPU time per call.

Run: ``uv run python benchmarks/bench_resilience.py [--rounds 5] [--requests 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from bench_actions import start_server, timed  # the same server and timing loop
from ductwork.client import Ductwork
from ductwork.config.loader import Config


def config(base: str) -> Config:
    action = {"send": {"path": "/items/{id}", "params": {"id": "int"}, "query": {"q": "str"}}}
    apps = {name: {"dev": {"base_url": base}, "actions": action} for name in ("sms_a", "sms_b")}

    def provider(name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "target": f"{name}:send",
                "input": {"id": "{{ input.to }}", "q": "sms"},
                "output": {"id": "{{ result.body.name }}"}, **extra}

    return Config.from_dict({
        "product": "bench", "environments": ["dev"], "apps": apps,
        "healthchecks": {n: {"probe": {"action": f"{n}:send"}} for n in ("sms_a", "sms_b")},
        "quotas": {
            "sms": {"input": {"to": "int"},
                    "providers": [provider("sms_a", weight=70), provider("sms_b", weight=30)]},
            "sms_health": {"input": {"to": "int"}, "providers": [
                provider("sms_a", weight=70, healthcheck="sms_a"),
                provider("sms_b", weight=30, healthcheck="sms_b")]},
        },
        "fallbacks": {"pay": {"input": {"to": "int"},
                              "providers": [provider("sms_a"), provider("sms_b")]}},
    })


async def main(rounds: int, requests: int, concurrency: int, port: int) -> None:
    async with Ductwork(config(f"http://127.0.0.1:{port}"), env="dev") as dw:

        async def direct(i: int) -> object:
            return (await dw.actions.run("sms_a", "send", {"id": i, "q": "sms"})).body["name"]

        async def quota(i: int) -> object:
            return (await dw.quotas.run("sms", {"to": i})).output["id"]

        async def quota_health(i: int) -> object:
            return (await dw.quotas.run("sms_health", {"to": i})).output["id"]

        async def fallback(i: int) -> object:
            return (await dw.fallbacks.run("pay", {"to": i})).output["id"]

        calls = {"direct": direct, "quota": quota, "quota+health": quota_health,
                 "fallback": fallback}
        for call in calls.values():
            assert await call(1) == "lamp"
            await timed(200, concurrency, call)  # warm up
        rates: dict[str, list[float]] = {name: [] for name in calls}
        cpus: dict[str, list[float]] = {name: [] for name in calls}
        for r in range(rounds):
            order = list(calls.items())
            for name, call in order if r % 2 == 0 else order[::-1]:
                rate, cpu = await timed(requests, concurrency, call)
                rates[name].append(rate)
                cpus[name].append(cpu)
                print(f"round {r + 1}  {name:13} {rate:8.0f} calls/s  {cpu:6.0f} us CPU/call")
    base, base_cpu = statistics.median(rates["direct"]), statistics.median(cpus["direct"])
    for name in calls:
        rate, cpu = statistics.median(rates[name]), statistics.median(cpus[name])
        print(f"{name:13} median {rate:8.0f} calls/s  {cpu:6.0f} us CPU/call  "
              f"ratio to direct {rate / base:.3f} (calls/s), {base_cpu / cpu:.3f} (inverse CPU)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    server, port = start_server()
    try:
        asyncio.run(main(args.rounds, args.requests, args.concurrency, port))
    finally:
        server.terminate()
        server.wait(10)
