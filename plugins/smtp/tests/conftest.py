"""A real SMTP server (aiosmtpd) on a free loopback port, and what it received as notifications."""

from __future__ import annotations

import smtplib
import socket
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


def _wait_ready(port: int, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=1) as client:
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


def _start(**kwargs: Any) -> tuple[Controller, Server]:
    recorder = Recorder()
    port = free_port()
    with warnings.catch_warnings():
        # AUTH without TLS is what the auth server does on purpose, on loopback only.
        warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
        controller = Controller(recorder, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
    _wait_ready(port)
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
