"""Private SQL servers for tests: a PostgreSQL cluster and a MariaDB, each in a temporary folder.

Features: :func:`postgres_server` runs ``initdb`` and ``pg_ctl`` from the newest
``/usr/lib/postgresql/*/bin``; :func:`mariadb_server` runs ``mariadb-install-db`` and
``mariadbd`` with ``--no-defaults``. Both listen on a free loopback port, optionally with TLS
(:class:`~ductwork.testing.tls.TlsFiles`), run as the database's own OS user when the tests run
as root, and are stopped and removed at exit::

    with postgres_server(tls=files, hba=["hostssl all app 127.0.0.1/32 scram-sha-256"]) as pg:
        ...pg.url...
    with mariadb_server(tls=files) as my:
        ...my.url...

Errors: missing server binaries, or a server that cannot start, raise ``RuntimeError`` with its
output, so the test run fails instead of skipping.

Ordering: readiness is polled (``pg_ctl -w``; MariaDB's greeting), never slept for.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ductwork.testing.servers import HOST, Server, _system_executable, free_port, start_server

if TYPE_CHECKING:
    from ductwork.testing.tls import TlsFiles

__all__ = ["PostgresServer", "mariadb_server", "postgres_server"]


def _postgres_bin() -> Path:
    # Debian's layout, one folder per major version: the newest wins.
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed (see docs/testing.md)"
        )
    return Path(initdb).parent


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster on ``HOST:port``, in its own temporary folder."""

    port: int
    folder: Path
    _run: Callable[..., None] = field(repr=False)

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """The superuser ``postgres`` (trusted) on database ``postgres``."""
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut; returns once it accepts again."""
        self._run("pg_ctl", "-m", "fast", "-w", "-t", "60", "restart")


@contextlib.contextmanager
def postgres_server(
    *,
    tls: TlsFiles | None = None,
    hba: Sequence[str] = (),
    settings: Mapping[str, str] | None = None,
) -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster (``initdb``) on a free loopback port, removed at exit.

    Every role is trusted over TCP from ``HOST`` unless ``hba`` lines (``pg_hba.conf``, read
    before that default, first match wins) say otherwise; ``settings`` go to
    ``postgresql.conf``. With ``tls`` the server also speaks TLS (``ssl = on``) with
    ``tls.server_cert``, and trusts ``tls.ca`` for client certificates (``hostssl … cert``).

    initdb and postgres refuse to run as root: as root they run as the ``postgres`` OS user
    (the server packages create it), and the files they need are copied into the cluster's
    folder, owned by that user (the key readable by it alone, as the server insists).
    """
    bindir = _postgres_bin()
    as_user: dict[str, Any] = {}
    if os.geteuid() == 0:
        as_user = {"user": "postgres", "group": "postgres", "extra_groups": []}
    folder = Path(tempfile.mkdtemp(prefix="ductwork-pg-"))
    data, log = folder / "data", folder / "server.log"

    def own(path: Path) -> None:
        if as_user:
            shutil.chown(path, "postgres", "postgres")

    def run(program: str, *args: str) -> None:
        argv = [str(bindir / program), "-D", str(data)]
        if program == "pg_ctl":
            argv += ["-l", str(log)]  # the server must not hold our pipes
        try:
            subprocess.run(
                [*argv, *args], check=True, capture_output=True, timeout=90, cwd=folder, **as_user
            )
        except (OSError, subprocess.SubprocessError) as exc:
            said = getattr(exc, "stderr", None) or b""
            output = said.decode(errors="replace") if isinstance(said, bytes) else str(said)
            with contextlib.suppress(OSError):
                output += "\n" + log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"{program} {' '.join(args)} failed: {exc}\n{output}") from exc

    port = free_port()
    try:
        own(folder)
        run("initdb", "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync")
        conf: dict[str, str] = {
            "listen_addresses": HOST,
            "port": str(port),
            "unix_socket_directories": str(folder),
            # Throwaway data, but what a commit acknowledges survives a server crash (crash
            # tests stop it with -m immediate): only the flush to disk is skipped.
            "fsync": "off",
        }
        if tls is not None:
            for name, source in (
                ("ssl_cert_file", tls.server_cert),
                ("ssl_key_file", tls.server_key),
                ("ssl_ca_file", tls.ca),
            ):
                copy = folder / source.name
                shutil.copyfile(source, copy)
                copy.chmod(0o600)
                own(copy)
                conf[name] = str(copy)
            conf["ssl"] = "on"
        conf.update(settings or {})
        with (data / "postgresql.conf").open("a") as out:
            out.writelines(f"{name} = {_quoted(value)}\n" for name, value in conf.items())
        lines = [*hba, "local all all trust", f"host all all {HOST}/32 trust"]
        (data / "pg_hba.conf").write_text("".join(f"{line}\n" for line in lines))
        run("pg_ctl", "-w", "-t", "60", "start")  # -w polls until connections are accepted
        yield PostgresServer(port, folder, run)
    finally:
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                run("pg_ctl", "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def _mariadb_ready(port: int) -> bool:
    # The server greets every client first, in clear text: protocol version 10 once it serves
    # connections (an error packet, 0xff, when it refuses them). Its socket listens before it
    # serves (and before --init-file has run): a connection waits there for the greeting.
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.settimeout(2)
            header = sock.recv(4, socket.MSG_WAITALL)
            payload = sock.recv(1) if len(header) == 4 else b""
    except OSError:
        return False
    return payload == b"\x0a"


@contextlib.contextmanager
def mariadb_server(
    *,
    tls: TlsFiles | None = None,
    settings: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """A private MariaDB (``mariadb-install-db``) on a free loopback port, removed at exit.

    ``url`` is ``mysql://root@host:port/test``: ``root`` has no password over TCP from ``HOST``,
    and the database ``test`` exists (made by ``--init-file`` before the server accepts
    connections); create users through that url. ``settings`` are more server options
    (``{"max-connections": "20"}`` becomes ``--max-connections=20``). With ``tls`` the
    server also speaks TLS with ``tls.server_cert`` and asks clients for a certificate signed by
    ``tls.ca`` (for ``REQUIRE X509``/``SUBJECT`` users); without it TLS is off (``--skip-ssl``).

    No option file is read (``--no-defaults``): the machine's MariaDB and its configuration are
    untouched. The data directory, socket, pid file and temporary files live in one temporary
    folder. As root the server runs as the ``mysql`` OS user (``--user``; the server packages
    create it), owning that folder and copies of the TLS files (the key readable by it alone).
    """
    install = _system_executable("mariadb-install-db", "mysql_install_db")
    server = _system_executable("mariadbd", "mysqld")
    as_root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="ductwork-my-"))
    data = folder / "data"

    def own(path: Path) -> None:
        if as_root:
            shutil.chown(path, "mysql", "mysql")

    port = free_port()
    # Throwaway data: InnoDB small, a commit written to the log but not flushed to disk.
    common = [
        "--innodb-buffer-pool-size=32M",
        "--innodb-log-file-size=16M",
        "--innodb-flush-log-at-trx-commit=2",
        "--skip-name-resolve",
    ]
    if as_root:
        common.append("--user=mysql")
    try:
        own(folder)
        argv = [install, "--no-defaults", f"--datadir={data}", "--skip-test-db", *common]
        # ``normal``: root@localhost, root@127.0.0.1 and root@::1 without a password.
        argv.append("--auth-root-authentication-method=normal")
        try:
            subprocess.run(argv, check=True, capture_output=True, timeout=90, cwd=folder)
        except (OSError, subprocess.SubprocessError) as exc:
            said = [getattr(exc, name, None) or b"" for name in ("stdout", "stderr")]
            joined = b"".join(part for part in said if isinstance(part, bytes))
            output = joined.decode(errors="replace")[-4000:]
            raise RuntimeError(f"{Path(install).name} failed: {exc}\n{output}") from exc
        init_file = folder / "init.sql"
        init_file.write_text("CREATE DATABASE IF NOT EXISTS test;\n")
        init_file.chmod(0o600)
        own(init_file)
        argv = [
            server,
            "--no-defaults",
            f"--datadir={data}",
            *common,
            f"--bind-address={HOST}",
            f"--port={port}",
            f"--socket={folder / 'mysqld.sock'}",
            f"--pid-file={folder / 'mysqld.pid'}",
            f"--tmpdir={folder}",
            f"--init-file={init_file}",
            "--innodb-fast-shutdown=2",  # stop without tidying up: the folder is removed next
        ]
        if tls is None:
            argv.append("--skip-ssl")
        else:
            for option, source in (
                ("ssl-cert", tls.server_cert),
                ("ssl-key", tls.server_key),
                ("ssl-ca", tls.ca),
            ):
                copy = folder / source.name
                shutil.copyfile(source, copy)
                copy.chmod(0o600)
                own(copy)
                argv.append(f"--{option}={copy}")
        argv += [f"--{name}={value}" for name, value in (settings or {}).items()]
        with start_server(
            argv,
            port,
            f"mysql://root@{HOST}:{port}/test",
            ready=lambda: _mariadb_ready(port),
            timeout=60,
        ) as running:
            yield running
    finally:
        shutil.rmtree(folder, ignore_errors=True)
