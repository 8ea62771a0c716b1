"""``redis`` cache: values in Redis strings, with TTLs and atomic increments.

Features: ``get``/``set``/``delete``/``exists``/``add`` are one Redis command each (``GET``,
``SET … PX``, ``DEL``, ``EXISTS``, ``SET … NX PX``) on a held connection pool. A TTL in seconds
(float) becomes ``PX`` milliseconds, rounded up to at least 1 ms; a TTL of 0 or less is refused.
``incr`` is ``INCRBY``, or, with a TTL, a small Lua script that runs ``EXISTS``, ``INCRBY`` and
``PEXPIRE`` atomically so the TTL is set only when this call created the key. ``scan`` is
``SCAN … MATCH <prefix>*`` (the prefix's glob characters escaped), repeated until a page is
full or the scan ends; Redis may list a key twice across pages. Every key is stored under
``key_prefix`` + key.

Configuration (see :class:`~ductwork_redis._common.RedisOptions`): ``url`` *or*
``host``/``port``/``db``/``username``/``password``/``ssl``; ``key_prefix``;
``socket_timeout``/``socket_connect_timeout`` (5 s); ``max_connections`` (50) and
``pool_timeout`` (5 s, how long a call waits for a free connection); ``retries`` (1 reconnect
after a dropped connection, never after a timeout); TLS with ``ssl: true`` or ``rediss://``, and
``ca_file``/``cert_file``/``key_file``/``key_password`` (:mod:`ductwork.providers.tls`).

Errors: refused/unreachable/timed out, or a failed TLS handshake (untrusted certificate, name
mismatch, client certificate refused) -> :class:`~ductwork.errors.ConnectionFailedError`; a TLS
file that cannot be read -> :class:`~ductwork.errors.ConfigError` when the cache is built; bad
credentials -> :class:`~ductwork.errors.AuthenticationError`; ``incr`` on a value that is not an
integer (or would overflow 64 bits) -> :class:`~ductwork.errors.ValidationError`, value kept;
anything else the server refuses -> :class:`~ductwork.errors.ProviderError`. Messages name the
resource, env, provider and endpoint (never credentials).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from ductwork.errors import ProviderError, ValidationError
from ductwork.providers.base import Options, ProviderContext
from ductwork.providers.cache import Cache, KeyPage
from redis import exceptions as rex
from redis.asyncio import Redis

from ductwork_redis._common import (
    RedisOptions,
    build_pool,
    endpoint_of,
    tls_context,
    translate,
)

__all__ = ["RedisCache", "RedisCacheOptions"]

# The TTL applies only when this call creates the key; EXISTS is read-only, so a failing INCRBY
# (not an integer) leaves nothing changed.
_INCR_WITH_TTL = """
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if created then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
"""
_NOT_AN_INTEGER = ("not an integer", "overflow", "WRONGTYPE")
_FAILURES = (rex.RedisError, OSError)
# In the class body ``Options`` names the options class; this is the base, for __init__.
_AnyOptions = Options


class RedisCacheOptions(RedisOptions):
    """Options of the ``redis`` cache (the shared Redis connection options)."""


def _px(ttl: float) -> int:
    if not ttl > 0:  # also refuses NaN
        raise ValidationError(f"cache ttl must be positive seconds or None, not {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


class RedisCache(Cache[RedisCacheOptions]):
    """Bytes under keys in Redis, on a held connection pool."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"scan", "add"})

    def __init__(
        self, options: _AnyOptions | None = None, *, context: ProviderContext | None = None
    ) -> None:
        super().__init__(options, context=context)
        # Read on every call: plain attributes, no property or options lookup on the hot path.
        self._prefix = self.options.key_prefix
        self._endpoint = endpoint_of(self.options)
        # Read once, here: a TLS file that cannot be read fails before anything connects.
        self._tls = tls_context(self.options, self.context)
        self._connect()

    def _connect(self) -> None:
        # A fresh pool per open(): its connections and locks belong to the loop that opens it.
        self._redis: Redis = Redis.from_pool(build_pool(self.options, self._tls))
        self._incr_ttl = self._redis.register_script(_INCR_WITH_TTL)

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def native(self) -> Redis:
        """The ``redis.asyncio.Redis`` client (keys are not prefixed there)."""
        return self._redis

    def _fail(self, exc: BaseException, doing: str) -> ProviderError:
        return translate(self, exc, doing)

    async def open(self) -> None:
        self._connect()
        await self.ping()

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except _FAILURES as exc:
            raise self._fail(exc, "ping") from exc

    async def close(self) -> None:
        try:
            await self._redis.aclose()
        except _FAILURES as exc:
            raise self._fail(exc, "close") from exc

    async def get(self, key: str) -> bytes | None:
        try:
            value: Any = await self._redis.get(self._prefix + key)
        except _FAILURES as exc:
            raise self._fail(exc, "GET") from exc
        return value  # type: ignore[no-any-return] # bytes: the pool never decodes responses

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        if type(value) is not bytes:  # bytearray, memoryview: what redis-py would refuse
            value = bytes(value)
        try:
            if ttl is None:
                await self._redis.set(self._prefix + key, value)
            else:
                await self._redis.set(self._prefix + key, value, px=_px(ttl))
        except _FAILURES as exc:
            raise self._fail(exc, "SET") from exc

    async def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        try:
            px = None if ttl is None else _px(ttl)
            return bool(await self._redis.set(self._prefix + key, bytes(value), px=px, nx=True))
        except _FAILURES as exc:
            raise self._fail(exc, "SET NX") from exc

    async def delete(self, key: str) -> bool:
        try:
            return bool(await self._redis.delete(self._prefix + key))
        except _FAILURES as exc:
            raise self._fail(exc, "DEL") from exc

    async def exists(self, key: str) -> bool:
        try:
            return bool(await self._redis.exists(self._prefix + key))
        except _FAILURES as exc:
            raise self._fail(exc, "EXISTS") from exc

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        full = self._prefix + key
        try:
            if ttl is None:
                return int(await self._redis.incrby(full, amount))
            return int(await self._incr_ttl(keys=[full], args=[amount, _px(ttl)]))
        except rex.ResponseError as exc:
            if any(reason in str(exc) for reason in _NOT_AN_INTEGER):
                raise ValidationError(
                    f"cache key {key!r} does not hold an integer (or {amount} would overflow it)"
                ) from None
            raise self._fail(exc, "INCRBY") from exc
        except _FAILURES as exc:
            raise self._fail(exc, "INCRBY") from exc

    async def scan(self, prefix: str, *, cursor: str | None = None, limit: int = 100) -> KeyPage:
        match = _glob_escape(self._prefix + prefix) + "*"
        position, keys = int(cursor or 0), list[str]()
        try:
            while True:
                position, found = await self._redis.scan(position, match=match, count=limit)
                names: list[bytes] = found  # type: ignore[assignment] # the pool never decodes
                keys.extend(k.decode(errors="replace")[len(self._prefix) :] for k in names)
                if position == 0 or len(keys) >= limit:
                    break
        except _FAILURES as exc:
            raise self._fail(exc, "SCAN") from exc
        return KeyPage(keys, str(position) if position else None)


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\^-" else c for c in text)
