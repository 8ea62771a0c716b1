"""What each channel accepts: recipients, and the limits a message must fit before it is sent.

Recipients, by channel (the error names the field and the recipient's index, ``'to'[2]``):

- ``email``: an address (``ada@example.com`` or ``Ada <ada@example.com>``), checked with
  email-validator's syntax rules (no DNS: deliverability is not checked; ``user@host`` without a
  dot is accepted for internal mail);
- ``sms``: a phone number in E.164 form (``+14155550100``: ``+``, country code, number, no
  spaces), of a length possible for its country (phonenumbers);
- ``callback``: an ``http://`` or ``https://`` URL with a host (the webhook notifier refuses
  private addresses itself);
- ``push``: a device token, one line.

Limits (:class:`Limits`, set per notifier in config): an SMS body of at most ``sms_max_segments``
segments (GSM-7: 160 characters in one, 153 per segment of a longer message, ``^{}[]~|€``,
backslash and form feed counting twice; anything outside GSM-7 makes it UCS-2: 70 characters,
then 67 per segment); a push payload (``{"title", "body", "data"}`` as compact UTF-8 JSON) of
at most ``push_max_bytes`` (4096, as APNs and FCM); each attachment at most
``max_attachment_size``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ductwork._redact import redact
from ductwork.errors import ValidationError

if TYPE_CHECKING:
    from ductwork.providers.notifier import Notification

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "check_email_address",
    "check_limits",
    "check_recipient",
    "human_size",
    "push_payload_size",
    "sms_segments",
]

# GSM 03.38: the basic set (one septet each) and the extension table (escape + one septet).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


@dataclass(frozen=True)
class Limits:
    """How large a message may be on each channel (a notifier's ``limits`` in config)."""

    sms_max_segments: int = 10
    push_max_bytes: int = 4096
    max_attachment_size: int = 10 * 1024 * 1024


DEFAULT_LIMITS = Limits()


def human_size(size: int) -> str:
    """``size`` bytes for a person: ``512 B``, ``4.0 KiB``, ``10.0 MiB``."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def _packed(units: list[int], single: int, each: int) -> int:
    """Segments holding ``units`` (each unit's width kept whole in one segment)."""
    if sum(units) <= single:
        return 1
    segments, used = 1, 0
    for width in units:
        if used + width > each:
            segments, used = segments + 1, 0
        used += width
    return segments


def sms_segments(text: str) -> tuple[str, int]:
    """``(encoding, segments)`` an SMS of ``text`` takes: ``("GSM-7", n)`` or ``("UCS-2", n)``."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text):
        return "GSM-7", _packed([2 if c in _GSM_EXTENDED else 1 for c in text], 160, 153)
    # UTF-16 code units; a character outside the BMP is a surrogate pair, never split
    return "UCS-2", _packed([2 if ord(c) > 0xFFFF else 1 for c in text], 70, 67)


def push_payload_size(notification: Notification) -> int:
    """Bytes of the push payload: title, body and data as compact UTF-8 JSON."""
    payload = {"title": notification.subject, "body": notification.body, "data": notification.data}
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode())


def check_email_address(where: str, addr: str, value: str) -> None:
    """Refuse ``addr`` (the address part of ``value``) unless it is an email address."""
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(
            addr,
            check_deliverability=False,
            globally_deliverable=False,
            test_environment=True,
        )
    except EmailNotValidError as exc:
        raise ValidationError(
            f"notification field {where} is not an email address: {value!r} "
            f"({str(exc).rstrip('.')}; expected "
            "'user@example.com' or 'Name <user@example.com>')"
        ) from None


def _phone(where: str, number: str) -> None:
    import phonenumbers

    hint = "a phone number in E.164 form: '+', country code and number, no spaces"
    if not _E164.fullmatch(number):
        raise ValidationError(
            f"notification field {where} is not {hint} (e.g. '+14155550100'): {number!r}"
        )
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(f"notification field {where} is not {hint}: {exc}") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValidationError(
            f"notification field {where}: {number!r} has a length no number of country code "
            f"+{parsed.country_code} has"
        )


def _url(where: str, url: str) -> None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ValidationError(
            f"notification field {where} is not an http:// or https:// URL with a host: "
            f"{redact(url)!r}"
        )


def check_recipient(channel: str, where: str, recipient: str) -> None:
    """Refuse a recipient the channel cannot deliver to (emails are checked by the caller)."""
    if channel == "sms":
        _phone(where, recipient.strip())
    elif channel == "callback":
        _url(where, recipient.strip())


def check_limits(notification: Notification, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse a message larger than its channel takes, naming the field and the limit."""
    n = notification
    if n.channel == "sms":
        encoding, segments = sms_segments(n.body)
        if segments > limits.sms_max_segments:
            raise ValidationError(
                f"notification field 'body' needs {segments} SMS segments ({encoding}, "
                f"{len(n.body)} characters); the limit is {limits.sms_max_segments} "
                "(the notifier's limits.sms_max_segments): shorten the message"
            )
    elif n.channel == "push":
        size = push_payload_size(n)
        if size > limits.push_max_bytes:
            raise ValidationError(
                f"notification fields 'subject', 'body' and 'data' make a push payload of "
                f"{size} bytes; the limit is {limits.push_max_bytes} "
                "(the notifier's limits.push_max_bytes): send less data"
            )
    for i, att in enumerate(n.attachments):
        size = len(att.content)
        if size > limits.max_attachment_size:
            raise ValidationError(
                f"notification field 'attachments'[{i}] ({att.filename!r}) is "
                f"{human_size(size)} ({size} bytes); the limit is "
                f"{human_size(limits.max_attachment_size)} (the notifier's "
                "limits.max_attachment_size)"
            )
