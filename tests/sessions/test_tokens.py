"""The access token: any change refused, key rotation, algorithms and headers other than ours."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest
from ductwork.errors import SessionInvalidError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sessions_app import KEY_1, client, product

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# what a token is made of, plus separators, padding, other alphabets and non-ASCII
CHARS = B64 + ".=+/ \x00\n\u00e9\u20ac\u2028\U0001f600"


@pytest.fixture(scope="module")
def minted(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object]:
    """A genuine token and the keyring that opens it (no store needed to open a token)."""
    import os

    os.environ.setdefault("SESSION_KEY_1", KEY_1)
    folder = tmp_path_factory.mktemp("tokens")
    dw = client(product(f"sqlite:///{folder}/engine.db"), folder)

    async def start() -> str:
        async with dw:
            return (await dw.sessions.start("users", {"user_id": "u", "plan": "pro"})).token

    token = asyncio.run(start())
    return token, dw.sessions.keyring("users")


def _refused(keyring, token: str) -> None:
    with pytest.raises(SessionInvalidError) as caught:
        keyring.open(token, use="access", now=time.time())
    assert type(caught.value) is SessionInvalidError  # never another exception, nor Expired
    assert len(token) < 8 or token not in str(caught.value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_flipped_byte_is_refused(minted, data):
    token, keyring = minted
    i = data.draw(st.integers(0, len(token) - 1), label="position")
    new = data.draw(st.sampled_from(CHARS).filter(lambda c: c != token[i]))
    _refused(keyring, token[:i] + new + token[i + 1 :])


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_truncation_and_extension_is_refused(minted, data):
    token, keyring = minted
    cut = data.draw(st.integers(0, len(token) - 1), label="keep")
    _refused(keyring, token[:cut])
    tail = data.draw(st.text(CHARS, min_size=1, max_size=40), label="tail")
    _refused(keyring, token + tail)
    head = data.draw(st.text(CHARS, min_size=1, max_size=40), label="head")
    _refused(keyring, head + token)


@given(st.one_of(st.text(CHARS, max_size=300), st.binary(max_size=300), st.integers(), st.none()))
def test_arbitrary_input_is_refused(minted, garbage):
    _token, keyring = minted
    with pytest.raises(SessionInvalidError) as caught:
        keyring.open(garbage, use="access", now=time.time())
    assert type(caught.value) is SessionInvalidError


def test_the_genuine_token_opens(minted):
    token, keyring = minted
    assert keyring.open(token, use="access", now=time.time())["dat"]["user_id"] == "u"
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "dir", "enc": "A256GCM", "kid": "k1"}
    assert "pro" not in token and b"pro" not in base64.urlsafe_b64decode(token.split(".")[3] + "==")


def _raw(key: str) -> bytes:
    return base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "dir", "enc": "A128GCM", "kid": "k1"},
        {"alg": "dir", "enc": "A256CBC-HS512", "kid": "k1"},
        {"alg": "A256KW", "enc": "A256GCM", "kid": "k1"},
        {"alg": "dir", "enc": "A256GCM"},  # no kid
        {"alg": "dir", "enc": "A256GCM", "kid": "k9"},  # unknown kid
        {"alg": "dir", "enc": "A256GCM", "kid": "k1", "typ": "JWT"},
    ],
)
def test_other_algorithms_and_headers_are_refused(minted, header):
    from joserfc import jwe
    from joserfc.jwk import OctKey

    _token, keyring = minted
    genuine = keyring.open(_token, use="access", now=time.time())
    size = {"A128GCM": 16, "A256CBC-HS512": 64}.get(header["enc"], 32)
    raw = _raw(KEY_1)
    key = OctKey.import_key((raw * 2)[:size])
    body = json.dumps(genuine).encode()
    forged = jwe.encrypt_compact(header, body, key, algorithms=[header["alg"], header["enc"]])
    _refused(keyring, forged)


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "dir", "enc": "A256GCM", "kid": "k1", "zip": "DEF"},
        {"alg": "none", "enc": "A256GCM", "kid": "k1"},
        {"enc": "A256GCM", "kid": "k1", "alg": "dir"},  # same members, another spelling
    ],
)
def test_a_replaced_protected_header_is_refused(minted, header):
    token, keyring = minted
    raw = json.dumps(header, separators=(",", ":")).encode()
    head = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    _refused(keyring, ".".join([head, *token.split(".")[1:]]))


def test_same_key_and_header_but_claims_for_another_use_are_refused(minted):
    token, keyring = minted
    claims = keyring.open(token, use="access", now=time.time())
    stored = keyring.seal({**claims, "use": "store"})
    _refused(keyring, stored)  # sealed session data is not an access token


async def test_rotation_old_key_decrypts_while_listed(tmp_path: Path, monkeypatch):
    from sessions_app import KEY_2

    monkeypatch.setenv("SESSION_KEY_1", KEY_1)
    monkeypatch.setenv("SESSION_KEY_2", KEY_2)
    url = f"sqlite:///{tmp_path}/engine.db"
    async with client(product(url, keys=("k1",)), tmp_path) as old:
        started = await old.sessions.start("users", {"user_id": "rot", "plan": "pro"})
    async with client(product(url, keys=("k2", "k1")), tmp_path) as rotated:
        assert (await rotated.sessions.decrypt("users", started.token))["user_id"] == "rot"
        fresh = await rotated.sessions.refresh("users", started.refresh_token)
        assert json.loads(base64.urlsafe_b64decode(fresh.token.split(".")[0] + "=="))["kid"] == (
            "k2"
        )
    async with client(product(url, keys=("k2",)), tmp_path) as retired:
        with pytest.raises(SessionInvalidError) as caught:
            await retired.sessions.decrypt("users", started.token)
        assert type(caught.value) is SessionInvalidError
        # the refresh re-sealed the stored data under k2, so the session lives on without k1
        assert (await retired.sessions.decrypt("users", fresh.token))["plan"] == "pro"
        again = await retired.sessions.refresh("users", fresh.refresh_token)
        assert (await retired.sessions.decrypt("users", again.token))["user_id"] == "rot"
