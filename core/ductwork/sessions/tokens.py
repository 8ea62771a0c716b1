"""The cryptography of sessions, all through maintained libraries.

- Access tokens are compact JWE (RFC 7516) made and opened by joserfc: ``alg: dir`` (the
  256-bit key is the content key) and ``enc: A256GCM`` (authenticated encryption), with the key
  id as ``kid``. The protected header must be exactly ``{alg, enc, kid}``; any other algorithm,
  an unknown ``kid`` or one modified byte is refused. The claims (``aud`` = product/tag, ``sid``,
  ``use``, ``iat``, ``exp``, ``dat``) are inside the ciphertext, so nothing of the session is
  readable without the key.
- Refresh tokens are 256 bits from :mod:`secrets`; only their SHA-256 (:mod:`hashlib`), bound
  to product and tag, is stored. They are high-entropy, so a fast hash is enough.

Every failure to open a token is :class:`~ductwork.errors.SessionInvalidError` without the token
in its message; an authentic token past ``exp`` is :class:`~ductwork.errors.SessionExpiredError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ductwork.errors import ConfigError, SessionExpiredError, SessionInvalidError

__all__ = [
    "MAX_TOKEN",
    "Keyring",
    "hash_refresh",
    "hash_selector",
    "keygen",
    "new_refresh",
    "parse_key",
]

KEY_BYTES = 32
MAX_TOKEN = 16_384  # refuse longer input before parsing it
ALGORITHMS = ("dir", "A256GCM")
HEADER_KEYS = frozenset({"alg", "enc", "kid"})


def keygen() -> str:
    """A new 256-bit key, base64url without padding (what ``keys[].key`` takes)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).rstrip(b"=").decode()


def parse_key(text: str, *, path: str, file: str | None = None) -> bytes:
    """The 32 bytes of a base64url key; :class:`ConfigError` (never showing it) otherwise."""
    value = text.strip()
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES or not value.isascii():
        raise ConfigError(
            f"a session key must be {KEY_BYTES} random bytes, base64url-encoded "
            "(make one with 'ductwork sessions keygen')",
            file=file,
            path=path,
        )
    return raw


def new_refresh() -> str:
    """A fresh refresh token: 256 random bits, base64url."""
    return secrets.token_urlsafe(KEY_BYTES)


def hash_refresh(audience: str, token: str) -> str:
    """What the store keeps of a refresh token: SHA-256 of audience and token, hex."""
    return hashlib.sha256(f"{audience}\0{token}".encode()).hexdigest()


def hash_selector(audience: str, value: Any) -> str:
    """What the store keeps of the selector (user id): SHA-256, hex (pseudonymous, not secret)."""
    return hashlib.sha256(f"{audience}\0{value}".encode()).hexdigest()


@dataclass(frozen=True)
class Keyring:
    """The keys of one session tag: the first (``current``) encrypts, all decrypt."""

    audience: str  # "<product>/<tag>": a token of another product or tag is refused
    current: str
    keys: Mapping[str, Any] = field(repr=False)  # kid -> joserfc OctKey

    @classmethod
    def build(cls, audience: str, keys: list[tuple[str, bytes]]) -> Keyring:
        """From ``(kid, 32 bytes)`` pairs, first one current."""
        from joserfc.jwk import OctKey

        return cls(audience, keys[0][0], {kid: OctKey.import_key(raw) for kid, raw in keys})

    def seal(self, claims: Mapping[str, Any]) -> str:
        """``claims`` (with ``aud`` added) as a compact JWE under the current key."""
        from joserfc import jwe

        header = {"alg": "dir", "enc": "A256GCM", "kid": self.current}
        body = json.dumps({**claims, "aud": self.audience}, separators=(",", ":")).encode()
        return jwe.encrypt_compact(header, body, self.keys[self.current])

    def open(self, token: object, *, use: str, now: float | None) -> dict[str, Any]:
        """The claims of a token sealed for this audience and ``use``.

        ``now`` (epoch seconds) checks ``exp``; ``None`` skips it (stored data has none).

        Raises:
            SessionInvalidError: anything but an authentic token of this audience and use.
            SessionExpiredError: an authentic token whose ``exp`` is not after ``now``.
        """
        claims = self._open(token)
        if (
            not isinstance(claims, dict)
            or claims.get("aud") != self.audience
            or claims.get("use") != use
            or not isinstance(claims.get("sid"), str)
            or not isinstance(claims.get("dat"), dict)
        ):
            raise SessionInvalidError("the session token is not valid for this session tag")
        if now is not None:
            exp = claims.get("exp")
            if not isinstance(exp, int | float) or isinstance(exp, bool):
                raise SessionInvalidError("the session token has no expiry")
            if exp <= now:
                raise SessionExpiredError("the session token has expired; refresh it")
        return claims

    def is_current(self, token: str) -> bool:
        """Whether an (already opened) token was sealed under the current key."""
        head = token.split(".", 1)[0]
        try:
            header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        except ValueError:
            return False
        return isinstance(header, dict) and header.get("kid") == self.current

    def _open(self, token: object) -> Any:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
            raise SessionInvalidError("the session token is malformed")
        if not _canonical(token):
            raise SessionInvalidError("the session token is malformed")
        from joserfc import jwe

        def pick(obj: Any) -> Any:
            header = obj.headers()
            if set(header) != HEADER_KEYS or not isinstance(header.get("kid"), str):
                raise _Refused
            found = self.keys.get(header["kid"])
            if found is None:  # a key no longer listed (rotated out) or never ours
                raise _Refused
            return found

        try:
            opened = jwe.decrypt_compact(token, pick, algorithms=list(ALGORITHMS))
            return json.loads(opened.plaintext or b"")
        except Exception:
            # Refused input can fail anywhere in parsing (base64, JSON, header, key, tag):
            # every such failure means the same thing and must not echo the input.
            raise SessionInvalidError("the session token is malformed or forged") from None


def _canonical(token: str) -> bool:
    """Five segments, each the one base64url spelling of its bytes.

    Decoders ignore the spare bits of a segment's last character, so without this check a
    changed last character could still open: a token has exactly one accepted spelling.
    """
    parts = token.split(".")
    if len(parts) != 5:
        return False
    for part in parts:
        try:
            raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            return False
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != part:
            return False
    return True


class _Refused(Exception):
    """The header is not ``{alg, enc, kid}`` with a listed kid."""
