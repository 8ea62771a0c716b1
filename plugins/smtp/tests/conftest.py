"""Real SMTP servers (aiosmtpd) on free loopback ports, and what they received as notifications.

Besides the plain ones, TLS servers use certificates of a private CA made at test time
(trustme, through :func:`ductwork.testing.servers.tls_files`): one offering STARTTLS (required,
AUTH only after it), one speaking TLS from the first byte (SMTPS), and one whose certificate
names another host.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
import warnings
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from ductwork.providers.notifier import Attachment, Notification
from ductwork.testing.tls import TlsFiles, tls_files

USER = "mailer"
PASSWORD = "s3cret-pa55word"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    peer: Any


@dataclass
class Recorder:
    """aiosmtpd handler keeping every message, and the server side of each session."""

    messages: list[Received] = field(default_factory=list)
    sessions: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content or envelope.content,
                    session.peer,
                )
            )
            self.sessions.append(server)
        return "250 Message accepted for delivery"

    def notifications(self) -> list[Notification]:
        with self.lock:
            return [_parse(m) for m in self.messages]


def _parse(received: Received) -> Notification:
    msg = BytesParser(policy=policy.default).parsebytes(received.content)
    assert isinstance(msg, EmailMessage)
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    attachments = []
    for part in msg.iter_attachments():
        content = part.get_content()
        attachments.append(
            Attachment(
                part.get_filename() or "",
                content if isinstance(content, bytes) else content.encode(),
                part.get_content_type(),
            )
        )
    return Notification(
        channel="email",
        to=list(received.rcpt_tos),
        subject=str(msg["Subject"]),
        body=text.get_content() if text is not None else "",
        html=html.get_content() if html is not None else None,
        sender=received.mail_from,
        attachments=attachments,
        headers={k: str(v) for k, v in msg.items()},
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int, smtps: ssl.SSLContext | None = None, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while True:
        try:
            if smtps is None:
                client = smtplib.SMTP("127.0.0.1", port, timeout=1)
            else:
                client = smtplib.SMTP_SSL("127.0.0.1", port, timeout=1, context=smtps)
            with client:
                client.noop()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.02)


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = (
        isinstance(data, LoginPassword)
        and data.login.decode() == USER
        and data.password.decode() == PASSWORD
    )
    return AuthResult(success=ok, handled=False)


@dataclass
class Server:
    port: int
    recorder: Recorder
    user: str = ""
    password: str = ""


def _start(smtps: ssl.SSLContext | None = None, **kwargs: Any) -> tuple[Controller, Server]:
    """Start a server; ``smtps`` is a client context to poll an implicit-TLS server with."""
    recorder = Recorder()
    port = free_port()
    with warnings.catch_warnings():
        # AUTH without TLS is what the auth server does on purpose, on loopback only.
        warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
        controller = Controller(recorder, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
    _wait_ready(port, smtps)
    return controller, Server(port, recorder)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


@pytest.fixture(scope="session")
def smtp_server():
    """An open SMTP server (no auth) for the whole session."""
    controller, server = _start()
    yield server
    controller.stop()


@pytest.fixture(scope="session")
def auth_smtp_server():
    """An SMTP server that requires AUTH (allowed without TLS on loopback)."""
    controller, server = _start(
        auth_required=True, auth_require_tls=False, authenticator=_authenticate
    )
    server.user, server.password = USER, PASSWORD
    yield server
    controller.stop()


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A private CA with a certificate for 127.0.0.1/localhost (and a client one)."""
    return tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def stranger_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Another CA, which signed nothing the servers present."""
    return tls_files(tmp_path_factory.mktemp("tls-stranger"))


@pytest.fixture(scope="session")
def starttls_server(tls: TlsFiles):
    """STARTTLS required before anything but EHLO/NOOP; AUTH required, and only over TLS."""
    controller, server = _start(
        tls_context=tls.server_context(),
        require_starttls=True,
        auth_required=True,
        authenticator=_authenticate,
    )
    server.user, server.password = USER, PASSWORD
    yield server
    controller.stop()


@pytest.fixture(scope="session")
def smtps_server(tls: TlsFiles):
    """TLS from the first byte (SMTPS); AUTH required.

    aiosmtpd counts only STARTTLS as TLS for ``auth_require_tls``, so it is off here: the whole
    session is encrypted anyway (and it warns about it on each session).
    """
    controller, server = _start(
        smtps=tls.client_context(),
        ssl_context=tls.server_context(),
        auth_required=True,
        auth_require_tls=False,
        authenticator=_authenticate,
    )
    server.user, server.password = USER, PASSWORD
    yield server
    controller.stop()


@pytest.fixture(scope="session")
def mutual_tls_server(tls: TlsFiles):
    """SMTPS that asks for a client certificate signed by the private CA."""
    controller, server = _start(
        smtps=tls.client_context(), ssl_context=tls.server_context(verify_clients=True)
    )
    yield server
    controller.stop()


@pytest.fixture(scope="session")
def misnamed_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA whose server certificate names mail.example.com only, not the loopback address."""
    return tls_files(tmp_path_factory.mktemp("tls-misnamed"), hosts=("mail.example.com",))


@pytest.fixture(scope="session")
def misnamed_server(misnamed_tls: TlsFiles):
    """STARTTLS with a certificate for another host name."""
    controller, server = _start(tls_context=misnamed_tls.server_context(), require_starttls=True)
    yield server
    controller.stop()
