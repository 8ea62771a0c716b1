"""Connecting with nats-py: a client that never falls back to clear text, and its errors.

nats-py upgrades to TLS only when the server's INFO says ``tls_required``, whatever the URL's
scheme: a ``tls://`` URL pointing at a server without TLS would send CONNECT, credentials
included, in clear. :class:`TLSRequiringClient` checks INFO first and refuses the server
instead, on the first connection and on every reconnection.

:func:`telling_error` picks, among the errors a failed connect reported, the one that says why.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import nats.errors
from ductwork.providers.tls import tls_failure
from nats.aio.client import Client

__all__ = ["TLSRequiringClient", "is_refused_login", "telling_error"]


class TLSRequiringClient(Client):
    """A :class:`nats.aio.client.Client` that requires TLS when told to, or for ``tls://``."""

    def __init__(self, *, require_tls: bool) -> None:
        super().__init__()
        self.require_tls = require_tls

    async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:
        # Called with the server's INFO before the TLS upgrade and before CONNECT is written.
        server = self._current_server
        wanted = self.require_tls or (server is not None and server.uri.scheme == "tls")
        if initial_connection and wanted and not info.get("tls_required"):
            where = f"{server.uri.hostname}:{server.uri.port}" if server is not None else "server"
            raise nats.errors.Error(
                f"nats: {where} does not require TLS, so the connection would not be "
                "encrypted; refusing it (enable TLS on the server, or turn tls off)"
            )
        await super()._process_info(info, initial_connection)


def is_refused_login(exc: BaseException) -> bool:
    """Whether ``exc`` is the server refusing the credentials."""
    return isinstance(exc, nats.errors.AuthorizationError) or "authorization" in str(exc).lower()


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def telling_error(errors: Sequence[BaseException]) -> BaseException | None:
    """The error that says best why connecting failed.

    A refused login first, else a failed TLS handshake, else the last error. The server resets
    the socket right after refusing a login, and nats-py may report that reset with the refusal
    only in its ``__context__``, so the chains are searched too.
    """
    chained = [link for exc in errors for link in _chain(exc)]
    for exc in chained:
        if is_refused_login(exc):
            return exc
    for exc in errors:
        if tls_failure(exc) is not None:
            return exc
    return errors[-1] if errors else None
