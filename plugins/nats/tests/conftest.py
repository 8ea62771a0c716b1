"""NATS servers for the tests: the machine's JetStream server, and private ones.

The machine's server (127.0.0.1:4222, JetStream on) is started before sessions and CI; when it
is down the tests fail (the message says how to start it). The password-protected server, and
the TLS ones (certificates of a private CA made at test time with trustme), are ``nats-server``
processes this session starts on free loopback ports and stops by their PIDs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from ductwork.testing.system_servers import nats_server
from ductwork.testing.tls import TlsFiles, tls_files

NATS_URL = os.environ.get("DUCTWORK_TEST_NATS_URL", "nats://127.0.0.1:4222")
START = (
    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- "
    "-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def _jetstream_ready(url: str, **auth: str) -> None:
    nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False, **auth)
    try:
        await nc.jetstream(timeout=2).account_info()
    finally:
        await nc.close()


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The machine's NATS server with JetStream; fails (never skips) when it is not there."""
    deadline = time.monotonic() + 10
    while True:
        try:
            asyncio.run(_jetstream_ready(NATS_URL))
            return NATS_URL
        except Exception as exc:
            if time.monotonic() > deadline:
                pytest.fail(f"no NATS JetStream server at {NATS_URL} ({exc!r}); start it: {START}")
            time.sleep(0.1)


@dataclass
class AuthServer:
    url: str
    user: str
    password: str


@pytest.fixture(scope="session")
def auth_nats(tmp_path_factory: pytest.TempPathFactory):
    """A nats-server with JetStream that requires user ``app`` and a password."""
    port = free_port()
    store = tmp_path_factory.mktemp("nats-auth")
    server = AuthServer(f"nats://127.0.0.1:{port}", "app", "r1ght-pa55word")
    args = ["-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
    proc = _start([*args, "--user", server.user, "--pass", server.password])
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"nats-server exited with {proc.returncode}")
            try:
                asyncio.run(
                    _jetstream_ready(server.url, user=server.user, password=server.password)
                )
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield server
    finally:
        _stop(proc)


def _start(args: list[str]) -> subprocess.Popen[bytes]:
    exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(exe).exists():
        pytest.fail("nats-server is not installed (Debian package nats-server)")
    return subprocess.Popen([exe, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def plain_nats():
    """A nats-server without JetStream on a free loopback port."""
    port = free_port()
    proc = _start(["-a", "127.0.0.1", "-p", str(port)])
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nats-server did not start (exit code {proc.poll()})")
            time.sleep(0.02)
        yield f"nats://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture
def prefix() -> str:
    """Stream and subject prefix unique to one test, so its streams can be removed after."""
    return f"dwt{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def cleanup(nats_url: str, prefix: str):
    """Delete every stream made under ``prefix`` once the test is over."""
    yield
    nc = await nats.connect(nats_url, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=5)
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(f"{prefix}_"):
                await js.delete_stream(info.config.name)
    finally:
        await nc.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


TLS_USER, TLS_PASSWORD = "app", "tls-pa55word"


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A private CA with a certificate for 127.0.0.1/localhost (and a client one)."""
    return tls_files(tmp_path_factory.mktemp("tls"))


def _tls_args(files: TlsFiles) -> list[str]:
    return ["--tls", "--tlscert", str(files.server_cert), "--tlskey", str(files.server_key)]


@pytest.fixture(scope="session")
def tls_nats(tls: TlsFiles):
    """A nats-server (JetStream) requiring TLS, and user ``app`` with a password."""
    with nats_server(*_tls_args(tls), "--user", TLS_USER, "--pass", TLS_PASSWORD) as server:
        yield AuthServer(server.url, TLS_USER, TLS_PASSWORD)


@pytest.fixture(scope="session")
def mutual_tls_nats(tls: TlsFiles):
    """A nats-server (JetStream) requiring TLS and a client certificate signed by the CA."""
    with nats_server(*_tls_args(tls), "--tlsverify", "--tlscacert", str(tls.ca)) as server:
        yield server


@pytest.fixture(scope="session")
def misnamed_tls_nats(tmp_path_factory: pytest.TempPathFactory):
    """A TLS nats-server whose certificate names nats.example.com only; yields (server, files)."""
    files = tls_files(tmp_path_factory.mktemp("tls-misnamed"), hosts=("nats.example.com",))
    with nats_server(*_tls_args(files), jetstream=False) as server:
        yield server, files
