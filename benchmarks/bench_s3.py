"""S3 put and get of 1 KiB objects: ductwork's ``s3`` storage vs raw boto3, on one moto server.

Starts ``moto_server`` on a free loopback port, then alternates rounds of ductwork
(``S3Storage.save`` / ``S3Storage.read``, awaited one at a time) and raw boto3 (``put_object`` /
``get_object`` on a client built once, called one at a time) against the same bucket. Prints
ops/s per round and the ratio ductwork/raw of the medians. moto is slow (a few hundred requests
per second): the ratio is what matters, not the absolute figures.

Run: ``uv run python benchmarks/bench_s3.py [--rounds 5] [--ops 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from ductwork.providers import ProviderContext
from ductwork_s3.storage import S3Storage

BUCKET = "bench-bucket"
CREDS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench-secret"}
PAYLOAD = b"x" * 1024


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    probe = boto3.client("s3", endpoint_url=url, region_name="us-east-1", **CREDS)
    deadline = time.monotonic() + 20
    while True:
        try:
            probe.list_buckets()
            return proc, url
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.05)


def raw_client(url: str) -> Any:
    config = Config(signature_version="s3v4", s3={"addressing_style": "path"})
    return boto3.session.Session(region_name="us-east-1", **CREDS).client(
        "s3", endpoint_url=url, config=config
    )


def rate(n: int, fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


async def main(rounds: int, ops: int) -> None:
    proc, url = start_moto()
    try:
        raw = raw_client(url)
        context = ProviderContext(resource="storage.bench", env="bench", provider="s3")
        storage = S3Storage.from_options(
            context,
            bucket=BUCKET,
            endpoint_url=url,
            region="us-east-1",
            access_key_id=CREDS["aws_access_key_id"],
            secret_access_key=CREDS["aws_secret_access_key"],
            addressing_style="path",
            create_bucket=True,
        )
        await storage.open()
        keys = [f"obj/{i:05d}.bin" for i in range(ops)]

        def raw_put() -> None:
            for key in keys:
                raw.put_object(Bucket=BUCKET, Key=key, Body=PAYLOAD)

        def raw_get() -> None:
            for key in keys:
                raw.get_object(Bucket=BUCKET, Key=key)["Body"].read()

        async def dw_put() -> float:
            start = time.perf_counter()
            for key in keys:
                await storage.save(key, PAYLOAD)
            return ops / (time.perf_counter() - start)

        async def dw_get() -> float:
            start = time.perf_counter()
            for key in keys:
                await storage.read(key)
            return ops / (time.perf_counter() - start)

        raw_put()  # warm both paths (connections, first-call caches) and fill the keys
        await dw_put()
        results: dict[str, tuple[list[float], list[float]]] = {}
        for name, dw_fn, raw_fn in (("put", dw_put, raw_put), ("get", dw_get, raw_get)):
            dw_rates: list[float] = []
            raw_rates: list[float] = []
            for r in range(rounds):
                # Alternate which side goes first so drift on the VM hits both equally.
                order = ("dw", "raw") if r % 2 == 0 else ("raw", "dw")
                for side in order:
                    if side == "dw":
                        dw_rates.append(await dw_fn())
                    else:
                        # The raw client is run as plain blocking code in the event loop's
                        # thread, as a script would call it.
                        raw_rates.append(rate(ops, raw_fn))
                print(
                    f"{name} round {r + 1}: ductwork {dw_rates[-1]:7.1f} ops/s   "
                    f"raw boto3 {raw_rates[-1]:7.1f} ops/s"
                )
            results[name] = (dw_rates, raw_rates)
        await storage.close()
        raw.close()
        print()
        print(f"1 KiB objects, {ops} ops x {rounds} rounds, medians (moto server at {url})")
        for name, (dw_rates, raw_rates) in results.items():
            dw, rw = statistics.median(dw_rates), statistics.median(raw_rates)
            print(f"  {name}: ductwork {dw:7.1f} ops/s  raw {rw:7.1f} ops/s  ratio {dw / rw:.3f}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.ops))
