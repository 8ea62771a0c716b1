"""``ductwork.webhooks`` agrees with ``standardwebhooks`` (the spec's reference) both ways."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import standardwebhooks
from ductwork.errors import ValidationError, WebhookVerificationError
from ductwork.webhooks import generate_secret, secret_key, sign, verify
from hypothesis import given, settings
from hypothesis import strategies as st

SECRET = generate_secret()
OTHER = generate_secret()

_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=40)
_bodies = st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=20), max_size=5)


def _json(data) -> bytes:
    import json

    return json.dumps(data).encode()


@settings(max_examples=50, deadline=None)
@given(message_id=_ids, data=_bodies)
def test_standardwebhooks_verifies_what_ductwork_signs(message_id, data):
    body, stamp = _json(data), int(time.time())
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(message_id, stamp, body, [OTHER, SECRET]),
    }
    assert standardwebhooks.Webhook(SECRET).verify(body, headers) == data


@settings(max_examples=50, deadline=None)
@given(message_id=_ids, data=_bodies)
def test_ductwork_verifies_what_standardwebhooks_signs(message_id, data):
    body, now = _json(data), dt.datetime.now(dt.UTC)
    headers = {
        "Webhook-Id": message_id,  # any case
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": standardwebhooks.Webhook(SECRET).sign(message_id, now, body),
    }
    assert verify(body, headers, SECRET) == data
    assert verify(body, headers, [OTHER, SECRET]) == data  # during a rotation
    with pytest.raises(WebhookVerificationError, match="no webhook-signature matches"):
        verify(body, headers, OTHER)


def _signed(body: bytes = b'{"a":1}', stamp: int | None = None, secret: str = SECRET) -> dict:
    stamp = int(time.time()) if stamp is None else stamp
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign("msg_1", stamp, body, secret),
    }


def test_a_tampered_body_or_id_is_refused():
    headers = _signed()
    with pytest.raises(WebhookVerificationError):
        verify(b'{"a":2}', headers, SECRET)
    with pytest.raises(WebhookVerificationError):
        verify(b'{"a":1}', {**headers, "webhook-id": "msg_2"}, SECRET)


def test_timestamps_outside_the_tolerance_are_replays():
    now = 1_800_000_000
    headers = _signed(stamp=now - 301)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(b'{"a":1}', headers, SECRET, now=now)
    assert verify(b'{"a":1}', headers, SECRET, now=now, tolerance=600) == {"a": 1}
    with pytest.raises(WebhookVerificationError, match="future"):
        verify(b'{"a":1}', _signed(stamp=now + 301), SECRET, now=now)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"webhook-id": ""}, "webhook-id"),
        ({"webhook-signature": ""}, "webhook-signature"),
        ({"webhook-timestamp": "soon"}, "unix seconds"),
        ({"webhook-signature": "v2,abc"}, "no webhook-signature"),
    ],
)
def test_malformed_headers_are_refused_clearly(change, match):
    with pytest.raises(WebhookVerificationError, match=match):
        verify(b'{"a":1}', {**_signed(), **change}, SECRET)


def test_a_verification_error_is_a_validation_error():
    assert issubclass(WebhookVerificationError, ValidationError)


def test_secrets():
    made = generate_secret()
    assert made.startswith("whsec_") and len(secret_key(made, strict=True)) == 32
    assert secret_key(made) == secret_key(made.removeprefix("whsec_"))  # prefix optional
    for bad in ("whsec_", "whsec_!!", ""):
        with pytest.raises(ValidationError) as caught:
            secret_key(bad)
        assert "!!" not in str(caught.value)
    with pytest.raises(ValidationError):
        generate_secret(8)
