"""``mailbox`` notifier: every notification written as a file a person can open.

Email becomes an RFC 5322 ``.eml`` file (open it in any mail client; text, HTML and attachments
intact); push, SMS and callback notifications become pretty-printed ``.json`` files. Files are
named ``<UTC time>-<channel>-<id>`` so ``ls`` shows them in order, and written atomically.

Configuration: ``path`` (default ``.ductwork/outbox``), ``sender`` (default
``ductwork@localhost``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, ClassVar

from ductwork.providers.base import Options
from ductwork.providers.notifier import Attachment, Notification, Notifier, Receipt

__all__ = ["MailboxNotifier", "read_outbox"]


class MailboxOptions(Options):
    """Options of the ``mailbox`` notifier."""

    path: str = ".ductwork/outbox"
    sender: str = "ductwork@localhost"


def build_email(notification: Notification, sender: str, message_id: str) -> EmailMessage:
    """The notification as an email message (shared by providers that speak email)."""
    msg = EmailMessage()
    msg["From"] = notification.sender or sender
    msg["To"] = ", ".join(notification.to)
    msg["Subject"] = notification.subject or ""
    msg["Message-ID"] = f"<{message_id}@ductwork>"
    msg["Date"] = dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    for name, value in notification.headers.items():
        msg[name] = value
    msg.set_content(notification.body or "")
    if notification.html:
        msg.add_alternative(notification.html, subtype="html")
    for att in notification.attachments:
        maintype, _, subtype = att.content_type.partition("/")
        msg.add_attachment(
            att.content,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=att.filename,
        )
    return msg


class MailboxNotifier(Notifier[MailboxOptions]):
    """Writes notifications to a folder."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"email", "push", "sms", "callback"})

    @property
    def folder(self) -> Path:
        """Where files are written."""
        return self.context.resolve(self.options.path)

    @property
    def endpoint(self) -> str:
        return str(self.folder)

    async def open(self) -> None:
        with self.translate(OSError, message="cannot create outbox"):
            await asyncio.to_thread(self.folder.mkdir, parents=True, exist_ok=True)

    async def deliver(self, notification: Notification) -> Receipt:
        message_id = notification.message_id()
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        if notification.channel == "email":
            content = build_email(notification, self.options.sender, message_id).as_bytes()
            name = f"{stamp}-email-{message_id}.eml"
        else:
            record = {
                "id": notification.receipt_id(message_id),
                "channel": notification.channel,
                "to": notification.to,
                "subject": notification.subject,
                "body": notification.body,
                "data": notification.data,
                "headers": notification.headers,
                "sent_at": stamp,
            }
            content = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
            name = f"{stamp}-{notification.channel}-{message_id}.json"
        with self.translate(OSError, message="cannot write to outbox"):
            await asyncio.to_thread(_write_atomic, self.folder, name, content)
        receipt_id = notification.receipt_id(message_id)
        return Receipt(id=receipt_id, channel=notification.channel, to=list(notification.to))


def _write_atomic(folder: Path, name: str, content: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, folder / name)


def read_outbox(folder: Path) -> list[Notification]:
    """Every notification in a mailbox folder, oldest first (for tests and the CLI)."""
    out: list[Notification] = []
    for file in sorted(folder.glob("*")):
        if file.name.startswith("."):
            continue
        if file.suffix == ".eml":
            msg = BytesParser(policy=policy.default).parsebytes(file.read_bytes())
            assert isinstance(msg, EmailMessage)
            text = msg.get_body(("plain",))
            html = msg.get_body(("html",))
            attachments = [
                Attachment(
                    part.get_filename() or "",
                    part.get_content()
                    if isinstance(part.get_content(), bytes)
                    else part.get_content().encode(),
                    part.get_content_type(),
                )
                for part in msg.iter_attachments()
            ]
            out.append(
                Notification(
                    channel="email",
                    to=[str(a) for a in msg["To"].addresses],  # a quoted name may hold a comma
                    subject=str(msg["Subject"]),
                    body=text.get_content() if text is not None else "",
                    html=html.get_content() if html is not None else None,
                    sender=str(msg["From"]),
                    attachments=attachments,
                )
            )
        elif file.suffix == ".json":
            data: dict[str, Any] = json.loads(file.read_text())
            out.append(
                Notification(
                    channel=data["channel"],
                    to=data["to"],
                    body=data.get("body", ""),
                    subject=data.get("subject"),
                    data=data.get("data", {}),
                    headers=data.get("headers", {}),
                )
            )
    return out
