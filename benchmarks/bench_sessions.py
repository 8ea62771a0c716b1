"""Sessions: decrypt/s (revocation check off and on) and start/s on the embedded store.

The anchor is PyJWT's HS256 verify (signature, ``exp`` and ``aud`` checked) of a token of the
same length as ours, in the same run: a signed-only JWT is the cheapest thing a product could
use instead. Target: ``decrypt`` without the revocation check at least 0.5 of PyJWT's rate.
Rounds alternate between the measured calls and the median is reported, so a loaded machine
slows both sides alike. SQLite store (``synchronous=FULL``) in a temporary folder.

    uv run --with pyjwt python benchmarks/bench_sessions.py [--n 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.sessions.tokens import keygen

DATA = {"user_id": "u-1234567890", "plan": "team", "seats": 12}


def product(url: str) -> dict[str, Any]:
    users = {
        "selector": "user_id",
        "data": {"user_id": "str", "plan": "str", "seats": "int"},
        "keys": [{"id": "k1", "key": "${secret:BENCH_SESSION_KEY}"}],
    }
    return {
        "product": "bench",
        "environments": ["dev"],
        "engine": {"dev": {"url": url}},
        "caches": {"local": {"dev": {"provider": "memory", "namespace": "bench-sessions"}}},
        "sessions": {
            "users": users,
            # the same, with "live" answers kept 1 s in an in-process cache
            "cached": {**users, "revocation_cache": "local", "revocation_cache_ttl": "1s"},
        },
    }


def pyjwt_token(length: int, secret: bytes) -> tuple[str, Callable[[], Any]]:
    """An HS256 JWT of about ``length`` characters and its verify call."""
    import jwt

    claims: dict[str, Any] = {
        "aud": "bench/users",
        "sid": "ses_" + "0" * 32,
        "exp": time.time() + 3600,
        "dat": DATA,
        "pad": "",
    }
    token = jwt.encode(claims, secret, algorithm="HS256")
    claims["pad"] = "x" * max(0, (length - len(token)) * 3 // 4)
    token = jwt.encode(claims, secret, algorithm="HS256")
    return token, lambda: jwt.decode(token, secret, algorithms=["HS256"], audience="bench/users")


def rate_sync(call: Callable[[], Any], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        call()
    return n / (time.perf_counter() - started)


async def rate_async(call: Callable[[], Awaitable[Any]], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await call()
    return n / (time.perf_counter() - started)


async def main(n: int, rounds: int) -> None:
    os.environ["BENCH_SESSION_KEY"] = keygen()
    with tempfile.TemporaryDirectory() as folder:
        config = Config.from_dict(product(f"sqlite:///{folder}/engine.db"), root=Path(folder))
        async with Ductwork(config, env="dev") as dw:
            started = await dw.sessions.start("users", DATA)
            token = started.token
            cached = (await dw.sessions.start("cached", DATA)).token
            jwt_token, verify = pyjwt_token(len(token), os.urandom(32))
            print(f"token length: ours {len(token)}, PyJWT HS256 {len(jwt_token)} characters")
            results: dict[str, list[float]] = {
                "pyjwt": [],
                "plain": [],
                "revocation": [],
                "cached": [],
                "start": [],
            }
            for _ in range(rounds):
                results["pyjwt"].append(rate_sync(verify, n))
                results["plain"].append(
                    await rate_async(
                        lambda: dw.sessions.decrypt("users", token, check_revocation=False), n
                    )
                )
                results["revocation"].append(
                    await rate_async(lambda: dw.sessions.decrypt("users", token), n)
                )
                results["cached"].append(
                    await rate_async(lambda: dw.sessions.decrypt("cached", cached), n)
                )
                results["start"].append(
                    await rate_async(lambda: dw.sessions.start("users", DATA), max(n // 10, 50))
                )
    median = {k: statistics.median(v) for k, v in results.items()}
    print(f"PyJWT HS256 verify          {median['pyjwt']:9.0f} /s  (anchor)")
    print(f"decrypt, no revocation      {median['plain']:9.0f} /s")
    print(f"decrypt, revocation check   {median['revocation']:9.0f} /s  (SQLite lookup)")
    print(f"decrypt, cached check (1 s) {median['cached']:9.0f} /s  (memory revocation_cache)")
    print(f"start (SQLite, FULL sync)   {median['start']:9.0f} /s")
    ratio = median["plain"] / median["pyjwt"]
    verdict = "meets" if ratio >= 0.5 else "MISSES"
    print(f"ratio decrypt/PyJWT = {ratio:.2f} ({verdict} the 0.5 target)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.rounds))
