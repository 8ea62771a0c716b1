"""Signed webhooks, per the Standard Webhooks specification: sign, verify, make a secret.

Every delivery carries three headers: ``webhook-id`` (the message id, the same on each retry of
one message, so a receiver can drop duplicates), ``webhook-timestamp`` (unix seconds of this
attempt) and ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` over ``"{id}.{timestamp}.{body}"``
keyed with the secret, one such item per secret, separated by spaces (a rotation signs with the
old and the new secret at once). Secrets are written ``whsec_<base64 of 24 to 64 random bytes>``;
:func:`generate_secret` makes one.

Receivers call :func:`verify` with the raw body, the request's headers and their secret(s)::

    from ductwork.webhooks import verify
    from ductwork.errors import WebhookVerificationError

    try:
        event = verify(await request.body(), request.headers, secret)
    except WebhookVerificationError:
        return Response(status_code=400)

:func:`verify` compares in constant time, accepts the message when any ``v1`` signature matches
any of the secrets, and refuses a timestamp more than ``tolerance`` seconds from now (a replayed
delivery). Any Standard Webhooks library (``standardwebhooks`` on PyPI, npm, …) verifies what
ductwork sends, and :func:`verify` accepts what they sign.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets as _random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ductwork.errors import ValidationError, WebhookVerificationError

__all__ = ["generate_secret", "secret_key", "sign", "verify"]

PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300
_MIN_KEY, _MAX_KEY = 24, 64  # bytes, as the specification recommends


def generate_secret(size: int = 32) -> str:
    """A new secret in the ``whsec_<base64>`` form, ``size`` random bytes (24 to 64)."""
    if not _MIN_KEY <= size <= _MAX_KEY:
        raise ValidationError(f"a webhook secret has 24 to 64 bytes, not {size}")
    return PREFIX + base64.b64encode(_random.token_bytes(size)).decode()


def secret_key(secret: str, *, where: str = "webhook secret", strict: bool = False) -> bytes:
    """The HMAC key a secret stands for: ``whsec_`` (optional unless ``strict``) + base64.

    ``strict`` (what a sender's own options use) also asks for the prefix and 24 to 64 bytes.

    Raises:
        ValidationError: naming ``where``; the message never contains the secret.
    """
    text = secret.strip() if isinstance(secret, str) else ""
    if strict and not text.startswith(PREFIX):
        raise ValidationError(
            f"{where} must be written whsec_<base64> (make one with "
            "`python -c 'from ductwork.webhooks import generate_secret; print(generate_secret())'`)"
        )
    body = text.removeprefix(PREFIX)
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"{where} is not base64 after 'whsec_'") from None
    if not key:
        raise ValidationError(f"{where} is empty")
    if strict and not _MIN_KEY <= len(key) <= _MAX_KEY:
        raise ValidationError(f"{where} holds {len(key)} bytes; use 24 to 64 (generate_secret())")
    return key


def _keys(secret: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    given = [secret] if isinstance(secret, str | bytes) else list(secret)
    if not given:
        raise ValidationError("no webhook secret given")
    return [s if isinstance(s, bytes) else secret_key(s) for s in given]


def _payload(payload: bytes | str) -> bytes:
    if isinstance(payload, str):
        return payload.encode()
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    raise ValidationError("a webhook payload is the raw body: bytes or str")


def _mac(key: bytes, message_id: str, timestamp: int, payload: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + payload
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sign(
    message_id: str,
    timestamp: int,
    payload: bytes | str,
    secret: str | bytes | Sequence[str | bytes],
) -> str:
    """The ``webhook-signature`` value: one ``v1,<base64>`` per secret, space-separated.

    ``secret`` is a ``whsec_…`` string, raw key bytes, or several of them (rotation).
    """
    body = _payload(payload)
    return " ".join(_mac(key, message_id, int(timestamp), body) for key in _keys(secret))


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str | bytes | Sequence[str | bytes],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> Any:
    """The JSON body of a genuine, fresh delivery; else :class:`WebhookVerificationError`.

    Args:
        payload: the request body exactly as received (bytes; a str is taken as UTF-8).
        headers: the request's headers (any mapping; names are matched case-insensitively).
        secret: the receiver's secret(s): several are accepted during a rotation.
        tolerance: seconds a timestamp may be from ``now`` (older = a replay, refused).
        now: unix seconds to compare with (default: the clock), for tests.

    Raises:
        WebhookVerificationError: a header is missing or malformed, the timestamp is outside
            the tolerance, no signature matches, or the verified body is not JSON.
        ValidationError: ``secret`` itself is not a webhook secret (a receiver's config error).
    """
    keys = _keys(secret)
    body = _payload(payload)
    found = {name.lower(): value for name, value in headers.items()}
    missing = [
        h for h in ("webhook-id", "webhook-timestamp", "webhook-signature") if not found.get(h)
    ]
    if missing:
        raise WebhookVerificationError(f"webhook delivery lacks the header(s) {', '.join(missing)}")
    message_id, stamp = found["webhook-id"], found["webhook-timestamp"].strip()
    if not stamp.isdigit():
        raise WebhookVerificationError(f"webhook-timestamp is not unix seconds: {stamp[:40]!r}")
    timestamp = int(stamp)
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > tolerance:
        age = "old" if timestamp < clock else "far in the future"
        raise WebhookVerificationError(
            f"webhook-timestamp {timestamp} is too {age} ({abs(clock - timestamp):.0f}s away, "
            f"tolerance {tolerance:.0f}s): a replayed delivery, or the sender's clock is off"
        )
    given = [item.encode() for item in found["webhook-signature"].split() if item.startswith("v1,")]
    matched = False
    for key in keys:
        expected = _mac(key, message_id, timestamp, body).encode()
        for item in given:  # every comparison runs: no early exit to time
            matched |= hmac.compare_digest(expected, item)
    if not matched:
        raise WebhookVerificationError(
            "no webhook-signature matches: the body was changed, or it was signed with another "
            "secret"
        )
    try:
        return json.loads(body)
    except ValueError:
        raise WebhookVerificationError("the webhook body is signed but is not JSON") from None
