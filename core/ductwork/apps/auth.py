"""Credentials of an app's environment, applied to each outgoing request.

Kinds (``auth.kind``): ``none``; ``token`` (a static token in a header, the query, the body or
a path parameter); ``basic``; ``bearer``; ``oauth2`` (client credentials: the token is fetched
from ``token_url`` and re-issued ``refresh_before`` it expires); ``action`` (the token comes
from running another action of the app, e.g. a login call).

Expiring tokens live in a :class:`TokenSource`: concurrent calls that find no valid token share
one fetch (single flight), and a 401 answer drops the token so the next attempt fetches anew.
Every token obtained is registered as a secret, so it is redacted from logs and errors.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from ductwork._redact import redact, register_secret
from ductwork.apps.inputs import Prepared
from ductwork.apps.models import (
    ActionAuth,
    AppEnv,
    BasicAuth,
    BearerAuth,
    OAuth2Auth,
    TokenAuth,
)
from ductwork.errors import AuthenticationError, ConnectionFailedError

__all__ = ["Credentials", "TokenSource", "dig"]

Fetch = Callable[[], Awaitable[tuple[str, float | None]]]
Login = Callable[[ActionAuth], Awaitable[Any]]


class TokenSource:
    """An expiring token, fetched once for all concurrent callers, re-issued before expiry."""

    def __init__(self, fetch: Fetch, refresh_before: float) -> None:
        self._fetch = fetch
        self.refresh_before = refresh_before
        self._token: str | None = None
        self._expires: float | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        self.fetches = 0

    def _fresh(self) -> bool:
        if self._token is None:
            return False
        return self._expires is None or time.monotonic() < self._expires - self.refresh_before

    async def get(self) -> str:
        """A valid token: the held one, else one fetch shared with every caller waiting."""
        if self._fresh():
            assert self._token is not None
            return self._token
        seen = self._generation
        async with self._lock:
            if self._generation != seen and self._token is not None:
                return self._token  # fetched while this call waited: share it
            token, lifetime = await self._fetch()
            self.fetches += 1
            self._token = token
            self._expires = None if lifetime is None else time.monotonic() + lifetime
            self._generation += 1
            return token

    def invalidate(self, token: str) -> None:
        """Drop ``token`` (the server refused it), unless a newer one replaced it already."""
        if self._token == token:
            self._token = None


def dig(data: Any, path: str) -> Any:
    """The value at dotted ``path`` in nested mappings, or ``None``."""
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


class Credentials:
    """One env's auth. ``apply`` adds it to a request's parts and returns the token used."""

    def __init__(
        self, settings: AppEnv, *, http: httpx.AsyncClient, login: Login, where: dict[str, Any]
    ) -> None:
        self.auth = settings.auth
        self._http = http
        self._login = login
        self._where = where
        self.source: TokenSource | None = None
        self._static: str | None = None
        auth = self.auth
        if isinstance(auth, OAuth2Auth):
            register_secret(auth.client_secret)
            self.source = TokenSource(self._oauth2, auth.refresh_before)
        elif isinstance(auth, ActionAuth):
            self.source = TokenSource(self._action, auth.refresh_before)
        elif isinstance(auth, BasicAuth):
            register_secret(auth.password)
            raw = f"{auth.username}:{auth.password}".encode()
            self._static = "Basic " + base64.b64encode(raw).decode()
            register_secret(self._static[6:])
        elif isinstance(auth, BearerAuth):
            register_secret(auth.token)
            self._static = f"Bearer {auth.token}"
        elif isinstance(auth, TokenAuth):
            register_secret(auth.token)
            self._static = f"{auth.prefix}{auth.token}"

    @property
    def provided(self) -> frozenset[tuple[str, str]]:
        """(part, name) pairs the auth fills, so callers need not give them."""
        auth = self.auth
        if isinstance(auth, TokenAuth | ActionAuth):
            part = {"header": "headers", "query": "query", "body": "body", "params": "params"}
            name = auth.name.lower() if auth.in_ == "header" else auth.name
            return frozenset({(part[auth.in_], name)})
        return frozenset()

    async def apply(self, parts: Prepared) -> str | None:
        """Add the credentials to ``parts``; the expiring token used, if any."""
        auth = self.auth
        if self.source is not None:
            token = await self.source.get()
            assert isinstance(auth, OAuth2Auth | ActionAuth)
            if isinstance(auth, OAuth2Auth):
                parts.headers["Authorization"] = f"Bearer {token}"
            else:
                _place(parts, auth.in_, auth.name, f"{auth.prefix}{token}")
            return token
        if self._static is not None:
            if isinstance(auth, TokenAuth):
                _place(parts, auth.in_, auth.name, self._static)
            else:
                parts.headers["Authorization"] = self._static
        return None

    def invalidate(self, token: str | None) -> None:
        """The server refused ``token``: fetch a new one next time."""
        if self.source is not None and token is not None:
            self.source.invalidate(token)

    async def _oauth2(self) -> tuple[str, float | None]:
        auth = self.auth
        assert isinstance(auth, OAuth2Auth)
        form = {"grant_type": "client_credentials"}
        if auth.scope:
            form["scope"] = auth.scope
        if auth.audience:
            form["audience"] = auth.audience
        basic: Any = httpx.USE_CLIENT_DEFAULT
        if auth.client_auth == "basic":
            basic = httpx.BasicAuth(auth.client_id, auth.client_secret)
        else:
            form.update(client_id=auth.client_id, client_secret=auth.client_secret)
        try:
            response = await self._http.post(
                auth.token_url, data=form, auth=basic, headers={"Accept": "application/json"}
            )
        except httpx.TransportError as exc:
            raise ConnectionFailedError(
                f"OAuth2 token request failed: {type(exc).__name__}", **self._where
            ) from exc
        if response.status_code >= 400:
            raise AuthenticationError(
                f"OAuth2 token request answered {response.status_code}: "
                f"{redact(response.text[:300])}",
                **self._where,
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        return self._token_from(data, "access_token", "expires_in", None)

    async def _action(self) -> tuple[str, float | None]:
        auth = self.auth
        assert isinstance(auth, ActionAuth)
        body = await self._login(auth)
        return self._token_from(body, auth.token_path, auth.expires_in_path, auth.expires_in)

    def _token_from(
        self, data: Any, token_path: str, expires_path: str | None, default: float | None
    ) -> tuple[str, float | None]:
        token = dig(data, token_path)
        if not isinstance(token, str) or not token:
            raise AuthenticationError(
                f"the token response has no {token_path!r} string", **self._where
            )
        register_secret(token)
        lifetime = dig(data, expires_path) if expires_path else None
        if isinstance(lifetime, str) and lifetime.isdigit():
            lifetime = float(lifetime)
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool):
            lifetime = default
        return token, None if lifetime is None else float(lifetime)


def _place(parts: Prepared, where: str, name: str, value: str) -> None:
    if where == "header":
        parts.headers[name] = value
    elif where == "query":
        parts.query[name] = value
    elif where == "params":
        parts.params[name] = value
    else:
        parts.body = {**(parts.body if isinstance(parts.body, dict) else {}), name: value}
