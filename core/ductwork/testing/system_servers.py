"""Private servers from system binaries, for tests: nats-server, redis-server, a RabbitMQ node.

Each starts on free loopback ports with its own data folder and is stopped by its own PID::

    with nats_server("--tls", ...) as n:   # a private nats-server with JetStream
    with redis_server(tls=files) as r:     # a private redis-server, TLS-only when given files
    with rabbitmq_node() as node:          # a private RabbitMQ node (restartable)

Readiness is polled, never slept for; a binary that is missing raises ``RuntimeError`` naming
it (see docs/testing.md), so the test run fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ductwork.testing.servers import (
    HOST,
    Server,
    _launch,
    _system_executable,
    _wait_ready,
    free_port,
    start_server,
)

if TYPE_CHECKING:
    from ductwork.testing.tls import TlsFiles

__all__ = ["nats_server", "rabbitmq_node", "redis_server"]

def _nats_ready(port: int, jetstream: bool) -> Callable[[], bool]:
    def check() -> bool:
        # The server sends INFO in clear text first, TLS or not; it lists JetStream once enabled.
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as sock:
                line = sock.makefile("rb").readline(65536)
        except OSError:
            return False
        if not line.startswith(b"INFO "):
            return False
        return not jetstream or bool(json.loads(line[5:]).get("jetstream"))

    return check


@contextlib.contextmanager
def nats_server(*extra_args: str, jetstream: bool = True) -> Iterator[Server]:
    """A private ``nats-server`` on a free port (JetStream on, in a temporary folder).

    ``extra_args`` go to the server, e.g. ``"--tls", "--tlscert", …, "--tlskey", …``;
    ``url`` is ``nats://host:port``.
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ductwork-nats-") as store:
        argv = [_system_executable("nats-server"), "-a", HOST, "-p", str(port)]
        if jetstream:
            argv += ["-js", "-sd", store]
        with start_server(
            [*argv, *extra_args],
            port,
            f"nats://{HOST}:{port}",
            ready=_nats_ready(port, jetstream),
            timeout=20,
        ) as server:
            yield server


def _redis_ready(port: int, tls: TlsFiles | None) -> Callable[[], bool]:
    context = None
    if tls is not None:
        context = tls.client_context()
        context.check_hostname = False  # the certificate may name another host on purpose

    def check() -> bool:
        try:
            with contextlib.ExitStack() as stack:
                sock = stack.enter_context(socket.create_connection((HOST, port), timeout=0.5))
                if context is not None:
                    sock = stack.enter_context(context.wrap_socket(sock, server_hostname=HOST))
                sock.sendall(b"PING\r\n")
                # +PONG, or -NOAUTH from a server with a password: either way it answers.
                return sock.recv(16)[:1] in (b"+", b"-")
        except OSError:
            return False

    return check


@contextlib.contextmanager
def redis_server(*extra_args: str, tls: TlsFiles | None = None) -> Iterator[Server]:
    """A private ``redis-server`` on a free port, in memory; ``url`` is its ``redis(s)://`` URL.

    With ``tls`` it listens with TLS only (``--port 0 --tls-port``) and asks clients for a
    certificate unless ``extra_args`` say ``"--tls-auth-clients", "no"``.
    """
    port = free_port()
    argv = [_system_executable("redis-server"), "--bind", HOST, "--save", "", "--appendonly", "no"]
    if tls is None:
        argv += ["--port", str(port)]
    else:
        argv += [
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(tls.server_cert),
            "--tls-key-file",
            str(tls.server_key),
            "--tls-ca-cert-file",
            str(tls.ca),
        ]
    with tempfile.TemporaryDirectory(prefix="ductwork-redis-") as folder:
        scheme = "redis" if tls is None else "rediss"
        with start_server(
            [*argv, "--dir", folder, *extra_args],
            port,
            f"{scheme}://{HOST}:{port}/0",
            ready=_redis_ready(port, tls),
            timeout=20,
        ) as server:
            yield server


@dataclass
class _RabbitMQNode(Server):
    pid_file: Path = field(default=Path("/nonexistent"), repr=False)

    def kill(self) -> None:
        """``kill -9`` the node: it runs in a session of its own (``su`` made it), not ours."""
        with contextlib.suppress(OSError, ValueError):
            os.killpg(os.getsid(int(self.pid_file.read_text().strip())), signal.SIGKILL)
        super().kill()

    def stop(self) -> None:
        self.kill()

    def settle(self) -> None:
        """Write the node's metadata tables to disk, as a node running for minutes has.

        RabbitMQ saves the Ra directory (which quorum queues exist) every few minutes: a queue
        declared just before a ``kill -9`` would not come back without this.
        """
        subprocess.run(
            [
                _system_executable("rabbitmqctl"),
                "-n",
                (self.env or {})["RABBITMQ_NODENAME"],
                "eval",
                "[dets:sync(T) || T <- dets:all()].",
            ],
            env={**os.environ, **(self.env or {})},
            check=True,
            capture_output=True,
            timeout=60,
        )


@contextlib.contextmanager
def rabbitmq_node() -> Iterator[Server]:
    """A private RabbitMQ node on a free port, its data in a temporary folder; ``url`` is AMQP.

    Needs root: ``rabbitmq-server`` runs the node as the ``rabbitmq`` user, which must own the
    folder. :meth:`Server.kill` kills the node's session; :meth:`Server.restart` starts it again
    on the same port and data. Login ``guest``/``guest`` (allowed on loopback).
    """
    import pwd

    port, dist = free_port(), free_port()
    user = pwd.getpwnam("rabbitmq")
    with tempfile.TemporaryDirectory(prefix="ductwork-rabbitmq-") as folder:
        base = Path(folder)
        (base / "rabbitmq.conf").write_text(f"listeners.tcp.default = {HOST}:{port}\n")
        (base / "enabled_plugins").write_text("[].\n")
        for path in (base, base / "rabbitmq.conf", base / "enabled_plugins"):
            os.chown(path, user.pw_uid, user.pw_gid)
        env = {
            "RABBITMQ_NODENAME": f"ductwork{port}@localhost",
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "pid"),
        }
        log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the node; closed below
        argv = [_system_executable("rabbitmq-server")]
        node = _RabbitMQNode(
            port,
            _launch(argv, log, env),
            f"amqp://guest:guest@{HOST}:{port}/",
            argv,
            env,
            None,
            log,
            base / "pid",
        )
        try:
            _wait_ready(node, 120)
            yield node
        finally:
            node.kill()
            log.close()
