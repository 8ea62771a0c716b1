"""TLS for tests: a private CA made at test time, and TLS terminated in front of a plain server.

Features: :func:`tls_files` makes a new CA with trustme (a dev dependency) and writes PEM files
for it, a server certificate for the loopback names and a client certificate (:class:`TlsFiles`);
:func:`tls_proxy` terminates real TLS on a free loopback port and forwards the bytes to a plain
TCP service, for a backend whose own TLS listener a test cannot configure::

    files = tls_files(tmp_path / "tls")
    with redis_server(tls=files) as r: ...                  # ductwork.testing.servers
    with tls_proxy(5672, files, verify_clients=True) as port: ...

Errors: without trustme, :func:`tls_files` raises ``RuntimeError`` saying what to install; a proxy
that cannot start raises ``RuntimeError`` with the reason.

Ordering: the proxy serves connections concurrently in its own thread and event loop; leaving the
``with`` block cuts the connections still open and joins the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ductwork.testing.servers import HOST, free_port

__all__ = ["TlsFiles", "tls_files", "tls_proxy"]


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a private CA made for one test run, in ``folder``.

    ``ca`` is what a client gives as ``ca_file``; ``server_cert``/``server_key`` are for the
    server (its names are the ``hosts`` given to :func:`tls_files`); ``client_cert``/
    ``client_key`` are a client certificate signed by the same CA, for mutual TLS.
    """

    folder: Path

    @property
    def ca(self) -> Path:
        """The CA certificate."""
        return self.folder / "ca.pem"

    @property
    def server_cert(self) -> Path:
        """The server's certificate chain."""
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        """The server's private key."""
        return self.folder / "server.key"

    @property
    def client_cert(self) -> Path:
        """A client certificate for mutual TLS."""
        return self.folder / "client.pem"

    @property
    def client_key(self) -> Path:
        """The client certificate's private key."""
        return self.folder / "client.key"

    def server_context(self, *, verify_clients: bool = False) -> ssl.SSLContext:
        """A server-side context with the server certificate (and client checks if asked)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        if verify_clients:
            ctx.load_verify_locations(cafile=self.ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client-side context trusting the CA and presenting the client certificate."""
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx

    def encrypted_client_key(self, folder: Path, password: bytes) -> Path:
        """The client key encrypted with ``password`` (PKCS#8 PEM), written into ``folder``."""
        from cryptography.hazmat.primitives import serialization  # comes with trustme

        key = serialization.load_pem_private_key(self.client_key.read_bytes(), None)
        path = folder / "client-encrypted.key"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(password),
            )
        )
        return path


def tls_files(
    folder: Path, *, hosts: tuple[str, ...] = (HOST, "localhost"), client: str = "ductwork-test"
) -> TlsFiles:
    """Make a new CA in ``folder`` with a server certificate for ``hosts`` and a client one.

    The client certificate names ``client`` (as its subject's CN and its alternative name).
    """
    try:
        import trustme  # a dev dependency, needed by TLS tests only
    except ImportError as exc:
        raise RuntimeError("trustme is not installed: pip install trustme (or uv sync)") from exc

    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(folder)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(files.ca))
    server = ca.issue_cert(*hosts)
    server.private_key_pem.write_to_path(str(files.server_key))
    files.server_cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    user = ca.issue_cert(client, common_name=client)  # Postgres ``cert`` auth reads the CN
    user.private_key_pem.write_to_path(str(files.client_key))
    files.client_cert.write_bytes(b"".join(blob.bytes() for blob in user.cert_chain_pems))
    return files


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass  # either side went away: the other is closed below
    finally:
        writer.close()


@contextlib.contextmanager
def tls_proxy(target_port: int, tls: TlsFiles, *, verify_clients: bool = False) -> Iterator[int]:
    """Terminate TLS on a free loopback port and forward the bytes to ``HOST:target_port``.

    For a backend whose own TLS listener the tests cannot configure (the machine's RabbitMQ):
    the client speaks real TLS to this proxy and its real protocol to the backend behind it.
    Yields the proxy's port; runs in a thread with its own event loop.
    """
    port = free_port()
    context = tls.server_context(verify_clients=verify_clients)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None
    failure: list[BaseException] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, target_port)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        except (OSError, asyncio.CancelledError):
            # Cancelled by the shutdown below: this task is the connection's last owner, and
            # asyncio's callback reports a cancelled handler task as an error.
            pass
        finally:
            writer.close()

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        server = await asyncio.start_server(handle, HOST, port, ssl=context)
        started.set()
        try:
            await stop.wait()
        finally:
            server.close()
            # Connections the test left open are cut, so the thread always ends.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # reported to the test below, not lost in the thread
            failure.append(exc)
            started.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="ductwork-tls-proxy", daemon=True)
    thread.start()
    if not started.wait(10) or failure:
        raise RuntimeError(f"the TLS proxy did not start on port {port}: {failure}")
    try:
        yield port
    finally:
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(10)
