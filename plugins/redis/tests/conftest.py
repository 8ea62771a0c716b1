"""Redis for the tests: the machine's server on 127.0.0.1:6379, and private ones.

The machine's Redis is started before each session and before CI (see docs/testing.md); when it
is down the tests fail, never skip. Every key and stream of this run lives under one unique
prefix, removed at the end. The password-protected server is started here on a free loopback
port, for the bad-credentials tests, and stopped by its own PID; so are the TLS-only servers
(the machine's redis-server 7 has TLS built in), with certificates of a private CA made at test
time with trustme.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from ductwork.testing.system_servers import redis_server as private_redis
from ductwork.testing.tls import TlsFiles, tls_files

HOST, PORT, DB = "127.0.0.1", 6379, 0
PASSWORD = "s3cret-Pa55word"
START = (
    "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' "
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


@pytest.fixture(scope="session")
def password() -> str:
    """The password ``auth_server`` requires."""
    return PASSWORD


@pytest.fixture(scope="session")
def redis_server() -> dict[str, object]:
    """The machine's Redis (fails, with how to start it, when it is down)."""
    client = redis.Redis(host=HOST, port=PORT, db=DB, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not running on {HOST}:{PORT} ({exc}); start it with: {START}")
    finally:
        client.close()
    return {"host": HOST, "port": PORT, "db": DB}


@pytest.fixture(scope="session")
def key_prefix(redis_server: dict[str, object]) -> Iterator[str]:
    """A prefix unique to this test run; everything under it is deleted afterwards."""
    prefix = f"dwtest:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis(host=HOST, port=PORT, db=DB)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def auth_server() -> Iterator[dict[str, object]]:
    """A redis-server that requires ``PASSWORD``, on a free loopback port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            PASSWORD,
            "--dir",
            "/tmp",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host=HOST, port=port, password=PASSWORD, socket_connect_timeout=1)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server with a password did not start on port {port}")
                time.sleep(0.02)
        yield {"host": HOST, "port": port}
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A private CA with a certificate for 127.0.0.1/localhost (and a client one)."""
    return tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def tls_redis(tls: TlsFiles) -> Iterator[dict[str, object]]:
    """A TLS-only redis-server requiring ``PASSWORD``; clients need no certificate."""
    with private_redis("--tls-auth-clients", "no", "--requirepass", PASSWORD, tls=tls) as server:
        yield {"host": HOST, "port": server.port}


@pytest.fixture(scope="session")
def mutual_tls_redis(tls: TlsFiles) -> Iterator[dict[str, object]]:
    """A TLS-only redis-server that requires a client certificate signed by the CA."""
    with private_redis(tls=tls) as server:
        yield {"host": HOST, "port": server.port}


@pytest.fixture(scope="session")
def misnamed_tls_redis(tmp_path_factory: pytest.TempPathFactory):
    """A TLS-only redis-server whose certificate names redis.example.com only: (address, CA)."""
    files = tls_files(tmp_path_factory.mktemp("tls-misnamed"), hosts=("redis.example.com",))
    with private_redis("--tls-auth-clients", "no", tls=files) as server:
        yield {"host": HOST, "port": server.port}, files
