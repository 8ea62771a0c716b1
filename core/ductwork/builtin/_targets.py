"""Where a webhook may be sent: http(s) URLs whose host resolves to public addresses only.

A webhook URL comes from data (a recipient), so it must not reach the services next to the
sender: every address the host resolves to is checked, and the connection is made to a checked
address (never resolved again in between, so DNS rebinding cannot switch it). Refused:
loopback, private (RFC 1918, unique-local ``fc00::/7``), link-local (``169.254/16``,
``fe80::/10``), multicast, unspecified, reserved and shared (CGNAT) ranges, and IPv6 forms that
embed such an IPv4 address (mapped ``::ffff:a.b.c.d``, 6to4, Teredo). A resource with
``allow_private: true`` skips the check (a receiver on the same network, tests).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore

from ductwork.errors import ConnectionFailedError, ValidationError

__all__ = ["CheckedBackend", "Target", "blocked", "resolve_checked", "target"]

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """A recipient URL, parsed: what to connect to and what to ask for."""

    where: str  # the notification field, e.g. "'to'[0]"
    url: str
    scheme: str
    host: str
    port: int
    target: str  # path and query

    @property
    def origin(self) -> str:
        """``scheme://host[:port]``: what messages show (a path may hold a token)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS[self.scheme] == self.port
        return f"{self.scheme}://{host}" + ("" if default else f":{self.port}")

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the origin without its scheme."""
        return self.origin.split("://", 1)[1]


def target(url: str, where: str) -> Target:
    """``url`` parsed as an http(s) webhook address, or :class:`ValidationError` naming it."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
        host = parts.hostname or ""
    except ValueError as exc:
        raise ValidationError(f"notification field {where} is not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValidationError(
            f"notification field {where}: a webhook URL starts with https:// or http://, "
            f"not {scheme + '://' if scheme else 'nothing'}"
        )
    if not host:
        raise ValidationError(f"notification field {where}: the webhook URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValidationError(
            f"notification field {where}: credentials in a webhook URL are not sent; put them "
            "in the notifier's headers (e.g. Authorization: ${secret:…})"
        )
    path = parts.path or "/"
    return Target(
        where=where,
        url=url,
        scheme=scheme,
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        target=f"{path}?{parts.query}" if parts.query else path,
    )


def blocked(ip: IP) -> str | None:
    """Why a webhook may not go to ``ip`` (``"loopback"``, ``"private"``, …), or ``None``."""
    if isinstance(ip, ipaddress.IPv6Address):
        teredo = ip.teredo
        embedded = ip.ipv4_mapped or ip.sixtofour or (teredo[1] if teredo else None)
        if embedded is not None:
            reason = blocked(embedded)
            return None if reason is None else f"{reason}, embedded in an IPv6 address"
    for reason, test in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if test:
            return reason
    return None if ip.is_global else "not a public address"


def _literal(host: str) -> IP | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve_checked(host: str, port: int, *, where: str, timeout: float) -> list[str]:
    """Every address ``host`` resolves to, each checked; :class:`ValidationError` on any refused.

    Raises:
        ValidationError: an address is not public (names the recipient and the address).
        ConnectionFailedError: the name does not resolve (or not within ``timeout``).
    """
    literal = _literal(host)
    if literal is not None:
        found: list[IP] = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise ConnectionFailedError(
                f"notification field {where}: cannot resolve {host!r} ({exc or 'timed out'})"
            ) from exc
        found = []
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if ip not in found:
                found.append(ip)
    for ip in found:
        reason = blocked(ip)
        if reason is not None:
            what = f"{ip} is" if literal is not None else f"{host} resolves to {ip},"
            raise ValidationError(
                f"notification field {where}: {what} {reason}; webhooks go "
                "to public addresses only (set allow_private: true on the notifier resource to "
                "send to its own network)"
            )
    return [str(ip) for ip in found]


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses ``resolve`` returned.

    ``resolve(host, port)`` gives the checked addresses (it raises for a refused one); the
    connection goes to the first of them that answers, so no second lookup can swap in another.
    """

    def __init__(self, resolve: Resolver | None) -> None:
        self._resolve = resolve
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._resolve is None:  # allow_private: whatever the name resolves to
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        addresses = await self._resolve(host, port)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # resolve_checked returns at least one address
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("webhooks do not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
