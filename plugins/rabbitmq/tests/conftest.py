"""The machine's RabbitMQ (127.0.0.1:5672, guest/guest), started here if it is down.

If the tests start it, they stop it at the end by its own OS PID. A RabbitMQ that cannot be
reached or started fails the tests; nothing is skipped.

The machine's RabbitMQ has no TLS listener (and the tests do not reconfigure it), so the TLS
tests put a TLS-terminating proxy (:func:`ductwork.testing.servers.tls_proxy`) in front of it,
with certificates of a private CA made at test time with trustme: the client speaks real TLS to
the proxy and real AMQP through it to the broker.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid

import pytest
from ductwork.testing.tls import TlsFiles, tls_files, tls_proxy

HOST, PORT = "127.0.0.1", 5672
READY_WITHIN = 90.0


def _listening() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=0.5) as sock:
            # A node that is still booting accepts the TCP connection but not the AMQP header.
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            sock.settimeout(2.0)
            return sock.recv(1)[:1] == b"\x01"  # Connection.Start is a method frame
    except OSError:
        return False


def _node_pid() -> int:
    out = subprocess.run(
        ["rabbitmqctl", "eval", "list_to_integer(os:getpid())."],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(out.stdout.strip())


@pytest.fixture(scope="session")
def rabbitmq() -> object:
    """Make sure RabbitMQ answers on 127.0.0.1:5672; yield (host, port)."""
    started_pid: int | None = None
    if not _listening():
        server = shutil.which("rabbitmq-server")
        assert server, "RabbitMQ is down and rabbitmq-server is not installed"
        subprocess.run([server, "-detached"], check=True, timeout=60)
        deadline = time.monotonic() + READY_WITHIN
        while not _listening():
            assert time.monotonic() < deadline, "RabbitMQ did not start listening on 5672"
            time.sleep(0.2)
        started_pid = _node_pid()
    yield HOST, PORT
    if started_pid is not None:
        os.kill(started_pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(started_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)


async def _delete_exchanges(names: list[str]) -> None:
    import aio_pika

    connection = await aio_pika.connect(f"amqp://guest:guest@{HOST}:{PORT}/")
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.exchange_delete(name)


@pytest.fixture(scope="session")
def exchange(rabbitmq: object) -> object:
    """One exchange name for this run, so its queues never meet another run's.

    Tests add suffixes (``-classic``, ``-quorum``); the queues expire on their own
    (``queue_expires``), the exchanges are deleted here.
    """
    name = f"dw-test-{uuid.uuid4().hex[:8]}"
    yield name
    asyncio.run(_delete_exchanges([name, f"{name}-classic", f"{name}-quorum"]))


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A private CA with a certificate for 127.0.0.1/localhost (and a client one)."""
    return tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def tls_port(rabbitmq: object, tls: TlsFiles) -> object:
    """A loopback port where TLS (the private CA's certificate) leads to RabbitMQ."""
    with tls_proxy(PORT, tls) as port:
        yield port


@pytest.fixture(scope="session")
def mutual_tls_port(rabbitmq: object, tls: TlsFiles) -> object:
    """Like ``tls_port``, but the proxy asks for a client certificate signed by the CA."""
    with tls_proxy(PORT, tls, verify_clients=True) as port:
        yield port


@pytest.fixture(scope="session")
def misnamed_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA whose server certificate names mq.example.com only."""
    return tls_files(tmp_path_factory.mktemp("tls-misnamed"), hosts=("mq.example.com",))


@pytest.fixture(scope="session")
def misnamed_tls_port(rabbitmq: object, misnamed_tls: TlsFiles) -> object:
    """A TLS port in front of RabbitMQ whose certificate names another host."""
    with tls_proxy(PORT, misnamed_tls) as port:
        yield port
