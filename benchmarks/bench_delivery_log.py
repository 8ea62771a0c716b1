"""The delivery log: read latency at 1M entries against 1k, and what logging adds to a send.

- **reads**: each filter of ``dw.notifications.log`` (none, status, message, notifier,
  recipient, since, status + since; ``limit=100``) timed on a store holding ``--rows`` entries
  (default 1M, inserted with bulk SQL shaped like the log's own: time-ordered ids over 30 days,
  1% failed, 0.5% pending, 20 messages, 100k recipients) and on one holding 1k; samples of the
  two alternate, so the ratio big/small comes from the same minutes. O(log n) reads keep it
  near 1.
- **send**: a ``mailbox`` email send with the log on, against the same send with ``log: false``
  (interleaved rounds, medians), on an SQLite store (``synchronous=FULL``).

    uv run python benchmarks/bench_delivery_log.py [--rows 1000000] [--db sqlite|postgres]
        [--samples 15] [--sends 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.engine.deliveries import query
from ductwork.engine.store import Store, now_ms
from sqlalchemy import text

PG = "postgresql://postgres@127.0.0.1:5432"
DAY = 86_400_000

# One row per entry and one per recipient, generated inside the database.
FILL = {
    "sqlite": (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows) "
        "INSERT INTO ductwork_notification (id, notifier, message, env, channel, provider, "
        "recipients, data, status, attempts, created_at, finished_at, duration_ms) "
        "SELECT printf('ntf_%012x%020d', :start + i * :step, i), 'mail', "
        "'mail:m' || (i % 20), 'dev', 'email', 'mailbox', "
        "'[\"u' || (i % 100000) || '@example.com\"]', '{}', "
        "CASE WHEN i % 100 = 0 THEN 'failed' WHEN i % 200 = 1 THEN 'pending' ELSE 'sent' END, "
        "1, :start + i * :step, :start + i * :step + 20, 20 FROM n",
        "INSERT INTO ductwork_notification_to (notification_id, recipient) "
        "SELECT id, substr(recipients, 3, length(recipients) - 4) FROM ductwork_notification",
    ),
    "postgresql": (
        "INSERT INTO ductwork_notification (id, notifier, message, env, channel, provider, "
        "recipients, data, status, attempts, created_at, finished_at, duration_ms) "
        "SELECT 'ntf_' || lpad(to_hex(CAST(:start AS bigint) + i * :step), 12, '0') "
        "|| lpad(i::text, 20, '0'), "
        "'mail', 'mail:m' || (i % 20), 'dev', 'email', 'mailbox', "
        "'[\"u' || (i % 100000) || '@example.com\"]', '{}', "
        "CASE WHEN i % 100 = 0 THEN 'failed' WHEN i % 200 = 1 THEN 'pending' ELSE 'sent' END, "
        "1, CAST(:start AS bigint) + i * :step, CAST(:start AS bigint) + i * :step + 20, 20 "
        "FROM generate_series(CAST(1 AS bigint), CAST(:rows AS bigint)) i",
        "INSERT INTO ductwork_notification_to (notification_id, recipient) "
        "SELECT id, substr(recipients, 3, length(recipients) - 4) FROM ductwork_notification",
    ),
}


async def filled(url: str, rows: int) -> Store:
    store = await Store.open(url)
    now = now_ms()
    params = {"rows": rows, "start": now - 30 * DAY, "step": 30 * DAY // rows}
    async with store.tx() as conn:
        for statement in FILL[store.dialect]:
            await conn.execute(text(statement), params)
        if store.dialect == "postgresql":
            await conn.execute(text("ANALYZE ductwork_notification"))
            await conn.execute(text("ANALYZE ductwork_notification_to"))
    return store


def filters() -> dict[str, dict[str, Any]]:
    hour = datetime.now(UTC) - timedelta(hours=1)
    return {
        "newest": {},
        "status=failed": {"status": "failed"},
        "message": {"message": "mail:m7"},
        "notifier": {"message": "mail"},
        "recipient": {"recipient": "u4242@example.com"},
        "since 1h": {"since": hour},
        "failed since 1h": {"status": "failed", "since": hour},
    }


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await fn()
    return time.perf_counter() - started


async def reads(big: Store, small: Store, samples: int) -> None:
    print(f"{'filter':<18} {'1M p50 ms':>10} {'1k p50 ms':>10} {'ratio':>6}")
    for name, given in filters().items():
        on_big: list[float] = []
        on_small: list[float] = []
        for _ in range(samples):
            on_big.append(await timed(lambda g=given: query(big, **g, limit=100)))
            on_small.append(await timed(lambda g=given: query(small, **g, limit=100)))
        b, s = statistics.median(on_big) * 1000, statistics.median(on_small) * 1000
        print(f"{name:<18} {b:>10.2f} {s:>10.2f} {b / s:>6.2f}")


def product(root: Path, log: bool) -> Config:
    raw = {
        "product": "bench",
        "environments": ["dev"],
        "engine": {"dev": {"url": f"sqlite:///{root}/engine.db"}},
        "notifications": {
            "mail": {
                "dev": {"provider": "mailbox", "path": "outbox"},
                "log": log,
                "messages": {"hi": {"email": {"subject": "Hi {{ n }}", "body": "Hello {{ n }}"}}},
            }
        },
    }
    return Config.from_dict(raw, root=root)


async def sends(n: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        clients = {
            "log on": Ductwork(product(root / "on", True), env="dev"),
            "log off": Ductwork(product(root / "off", False), env="dev"),
        }
        per: dict[str, list[float]] = {name: [] for name in clients}
        for dw in clients.values():
            await dw.__aenter__()
            await dw.notifications.send("mail", "hi", to="a@example.com", data={"n": 0})
        try:
            for _ in range(rounds):
                for name, dw in clients.items():
                    started = time.perf_counter()
                    for i in range(n):
                        await dw.notifications.send("mail", "hi", to="a@example.com", data={"n": i})
                    per[name].append((time.perf_counter() - started) / n)
        finally:
            for dw in clients.values():
                await dw.__aexit__(None, None, None)
        on, off = statistics.median(per["log on"]), statistics.median(per["log off"])
        print(f"send, log on  {on * 1000:.2f} ms")
        print(f"send, log off {off * 1000:.2f} ms   ratio on/off {on / off:.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["reads", "send"], default=None)
    args = parser.parse_args()
    if args.only != "send":
        with tempfile.TemporaryDirectory() as folder:
            names: list[str] = []
            if args.db == "postgres":
                import asyncpg

                admin = await asyncpg.connect(f"{PG}/postgres")
                names = [f"dw_bench_log_{uuid.uuid4().hex[:8]}" for _ in range(2)]
                for name in names:
                    await admin.execute(f"CREATE DATABASE {name}")
                urls = [f"{PG}/{name}" for name in names]
            else:
                urls = [f"sqlite:///{folder}/big.db", f"sqlite:///{folder}/small.db"]
            started = time.perf_counter()
            big = await filled(urls[0], args.rows)
            small = await filled(urls[1], 1000)
            took = time.perf_counter() - started
            print(f"{args.db}: filled {args.rows:,} entries in {took:.0f}s")
            try:
                await reads(big, small, args.samples)
            finally:
                await big.close()
                await small.close()
                if names:
                    for name in names:
                        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                    await admin.close()
    if args.only != "reads":
        await sends(args.sends, args.rounds)


if __name__ == "__main__":
    asyncio.run(main())
