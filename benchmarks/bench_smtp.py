"""SMTP send on a reused connection: ductwork's ``smtp`` notifier vs raw aiosmtplib and smtplib.

Starts an aiosmtpd server (``aiosmtpd.handlers.Sink``, which accepts and discards) in its own
process on a free loopback port, then alternates rounds of:

* ductwork: ``SMTPNotifier.send`` of a text + HTML notification, one at a time, on the
  notifier's held connection (the message is built by ductwork's shared ``build_email``);
* raw aiosmtplib: an ``EmailMessage`` with the same headers and bodies built by hand and sent
  with ``SMTP.send_message`` on one connected client;
* raw smtplib (for context): the same, synchronously, on one ``smtplib.SMTP`` connection.

Prints ops/s per round and the ratio ductwork/aiosmtplib of the medians (aiosmtplib is the
library ductwork uses, so that ratio is ductwork's own overhead).

Run: ``uv run python benchmarks/bench_smtp.py [--rounds 5] [--ops 500]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import smtplib
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from email.message import EmailMessage

import aiosmtplib
from ductwork.providers import ProviderContext
from ductwork.providers.notifier import Notification
from ductwork_smtp.notifier import SMTPNotifier

SENDER = "bench@example.com"
TO = ["ada@example.com"]
TEXT = "Hello Ada,\n\nyour report is ready.\n" * 4
HTML = "<p>Hello Ada,</p><p>your report is ready.</p>" * 4


def start_server() -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    listen = f"127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink", "-l", listen],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=1) as client:
                client.noop()
            return proc, port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.05)


def raw_message(subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = ", ".join(TO)
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@bench>"
    msg["Date"] = dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    msg.set_content(TEXT)
    msg.add_alternative(HTML, subtype="html")
    return msg


async def timed(ops: int, send: Callable[[int], Awaitable[object]]) -> float:
    start = time.perf_counter()
    for i in range(ops):
        await send(i)
    return ops / (time.perf_counter() - start)


async def main(rounds: int, ops: int) -> None:
    proc, port = start_server()
    try:
        context = ProviderContext(resource="notifiers.bench", env="bench", provider="smtp")
        notifier = SMTPNotifier.from_options(context, host="127.0.0.1", port=port, sender=SENDER)
        await notifier.open()
        raw = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await raw.connect()
        sync = smtplib.SMTP("127.0.0.1", port)

        async def ductwork_send(i: int) -> object:
            note = Notification(channel="email", to=TO, subject=f"m{i}", body=TEXT, html=HTML)
            return await notifier.send(note)

        async def raw_send(i: int) -> object:
            return await raw.send_message(raw_message(f"m{i}"), sender=SENDER, recipients=TO)

        async def smtplib_send(i: int) -> object:
            return sync.send_message(raw_message(f"m{i}"), from_addr=SENDER, to_addrs=TO)

        await timed(50, ductwork_send)  # warm up both paths and the server
        await timed(50, raw_send)
        results: dict[str, list[float]] = {"ductwork": [], "aiosmtplib": [], "smtplib": []}
        for r in range(rounds):
            for name, fn in (
                (
                    ("ductwork", ductwork_send),
                    ("aiosmtplib", raw_send),
                    ("smtplib", smtplib_send),
                )
                if r % 2 == 0
                else (
                    ("aiosmtplib", raw_send),
                    ("ductwork", ductwork_send),
                    ("smtplib", smtplib_send),
                )
            ):
                results[name].append(await timed(ops, fn))
            print(
                f"round {r + 1}: "
                + "  ".join(f"{k} {v[-1]:8.0f} ops/s" for k, v in results.items())
            )
        med = {k: statistics.median(v) for k, v in results.items()}
        print(
            f"median: ductwork {med['ductwork']:.0f} ops/s, aiosmtplib {med['aiosmtplib']:.0f} "
            f"ops/s, smtplib {med['smtplib']:.0f} ops/s"
        )
        print(f"ratio ductwork/aiosmtplib: {med['ductwork'] / med['aiosmtplib']:.3f}")
        print(f"ratio ductwork/smtplib:    {med['ductwork'] / med['smtplib']:.3f}")
        await notifier.close()
        await raw.quit()
        sync.quit()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.ops))
