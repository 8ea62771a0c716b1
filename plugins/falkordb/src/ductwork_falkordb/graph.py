"""``falkordb`` graph: a FalkorDB server (Cypher over the Redis protocol), through ``falkordb``.

Features: Cypher with ``$name`` parameters; one graph (a FalkorDB key) per resource; a pool of
connections (``falkordb.asyncio`` on a ``redis.asyncio`` blocking pool, built once at open and
shared by every query). FalkorDB is schemaless (no ``schema`` capability) and runs each query
as its own atomic transaction: there are no multi-query transactions (no ``transactions``
capability; :meth:`FalkorDBGraph.transaction` raises :class:`UnsupportedError`). Nodes come
back as ``{"_id": int, "_labels": [...], …properties}``, relationships as ``{"_id", "_type",
"_src", "_dst", …properties}`` and paths as ``{"_nodes": [...], "_rels": [...]}``, at any depth.

Parameters: FalkorDB receives them in a ``CYPHER name=value`` header that the client writes,
quoting and escaping every string; the server parses them as literals, never as Cypher. To keep
that guarantee, values are checked first: ``None``, ``bool``, ``int``, ``float``, ``str``
(``bytes`` as UTF-8), lists and string-keyed maps of those; dates and times become ISO strings
(wrap them in ``date($d)`` / ``localdatetime($d)``). Anything else, and any string holding a NUL
character (FalkorDB's parser stops there), raises :class:`ValidationError` before sending.

Ordering: queries awaited one after another run in that order; concurrent queries use several
connections and FalkorDB orders them itself (one writer at a time per graph, readers in
parallel). Nothing is retried: a write whose connection fails may or may not have run (at most
once). ``open()`` pings the server, so a wrong address or password fails there.

Configuration: ``url`` (``falkor://``, ``falkors://``, ``redis://``, ``rediss://`` or
``unix://``) or ``host``/``port``; ``username``/``password`` (override the URL's); ``graph``
(default: the resource tag's last part, else ``ductwork``); ``max_connections`` (16);
``socket_timeout`` (30 s), ``socket_connect_timeout`` (5 s); ``query_timeout`` (seconds, enforced
by the server; none = its default).

Errors: refused, unreachable or timed out -> :class:`ConnectionFailedError`; bad credentials ->
:class:`AuthenticationError`; a Cypher or runtime error from the server -> :class:`ProviderError`,
all naming the resource, with the original chained and no credentials in the message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from ductwork.errors import (
    AuthenticationError,
    ConnectionFailedError,
    ProviderError,
    ValidationError,
)
from ductwork.providers.base import Options
from ductwork.providers.graph import Graph, GraphResult

# falkordb ships no type information (no py.typed): its names are Any to mypy.
from falkordb import Edge, Node, Path  # type: ignore[import-untyped]
from falkordb.asyncio import FalkorDB  # type: ignore[import-untyped]
from falkordb.asyncio.graph import AsyncGraph  # type: ignore[import-untyped]
from falkordb.exceptions import SchemaVersionMismatchException  # type: ignore[import-untyped]
from pydantic import Field, SecretStr, field_validator

__all__ = ["FalkorDBGraph", "FalkorDBGraphOptions"]

_SCALARS = (type(None), bool, int, float, str)
_SCHEMES = {"falkor": "redis", "falkors": "rediss", "redis": "redis", "rediss": "rediss"}
_AUTH_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM")
# What the client raises for a failed call; anything else is a bug and propagates as it is.
_ERRORS = (redis_errors.RedisError, OSError, SchemaVersionMismatchException, ValueError)


class FalkorDBGraphOptions(Options):
    """Options of the ``falkordb`` graph."""

    url: SecretStr | None = Field(None, description="falkor://, redis://, rediss://, unix:// URL")
    host: str = "localhost"
    port: int = Field(6379, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    graph: str | None = Field(None, min_length=1, description="default: the resource tag")
    max_connections: int = Field(16, ge=1)
    socket_timeout: float | None = Field(30.0, gt=0, description="seconds per reply")
    socket_connect_timeout: float = Field(5.0, gt=0)
    query_timeout: float | None = Field(None, gt=0, description="seconds, enforced by the server")

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            scheme, sep, _ = value.get_secret_value().partition("://")
            if not sep or (scheme not in _SCHEMES and scheme != "unix"):
                raise ValueError(
                    "url must start with falkor://, falkors://, redis://, rediss:// or unix://"
                )
        return value


def _bindable(name: str, value: Any) -> Any:
    """``value`` as something the client writes as a literal, or :class:`ValidationError`."""
    kind = type(value)
    if kind is str:
        if "\x00" in value:
            raise ValidationError(f"parameter {name!r}: FalkorDB strings cannot hold NUL")
        return value
    if kind in _SCALARS:
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):  # subclasses (IntEnum …) are written with int's own repr
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return _bindable(name, str(value))
    if isinstance(value, bytes | bytearray):
        try:
            return _bindable(name, bytes(value).decode())
        except UnicodeDecodeError:
            raise ValidationError(f"parameter {name!r}: bytes must be UTF-8 text") from None
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_bindable(name, v) for v in value]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key or "`" in key or "\x00" in key:
                raise ValidationError(
                    f"parameter {name!r}: map keys must be non-empty strings without "
                    f"backticks or NUL; got {key!r}"
                )
            out[key] = _bindable(name, item)
        return out
    raise ValidationError(
        f"parameter {name!r}: cannot bind a {kind.__name__} (use None, bool, int, float, str, "
        "bytes, date, datetime, list or dict)"
    )


def _params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not params:
        return None
    out: dict[str, Any] = {}
    for name, value in params.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValidationError(f"parameter names must be identifiers; got {name!r}")
        out[name] = _bindable(name, value)
    return out


def _entity_id(value: Any) -> Any:
    return value.id if isinstance(value, Node) else value


def _plain(value: Any) -> Any:
    """Nodes, relationships and paths as plain dicts, at any depth of lists and maps."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is Node:
        return {"_id": value.id, "_labels": list(value.labels or ()), **value.properties}
    if kind is Edge:
        return {
            "_id": value.id,
            "_type": value.relation,
            "_src": _entity_id(value.src_node),
            "_dst": _entity_id(value.dest_node),
            **value.properties,
        }
    if kind is Path:
        return {
            "_nodes": [_plain(n) for n in value.nodes()],
            "_rels": [_plain(e) for e in value.edges()],
        }
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):  # the client returns maps as OrderedDicts
        return {k: _plain(v) for k, v in value.items()}
    return value


class FalkorDBGraph(Graph[FalkorDBGraphOptions]):
    """One graph on a FalkorDB server."""

    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings: FalkorDBGraphOptions = self.options
        resource = self.context.resource
        self.graph_name = self.settings.graph or (
            resource.rsplit(".", 1)[-1] if "." in resource else "ductwork"
        )
        self._timeout_ms = (
            max(1, round(self.settings.query_timeout * 1000))
            if self.settings.query_timeout
            else None
        )
        self._pool: aioredis.BlockingConnectionPool | None = None
        self._db: FalkorDB | None = None
        self._graph: AsyncGraph | None = None

    @property
    def endpoint(self) -> str:
        if self.settings.url is None:
            return f"falkor://{self.settings.host}:{self.settings.port}"
        parts = urlsplit(self.settings.url.get_secret_value())
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        host = parts.hostname or "localhost"
        return f"{parts.scheme}://{host}:{parts.port or 6379}"

    @property
    def native(self) -> FalkorDB:
        """The ``falkordb.asyncio.FalkorDB`` client (its pool is shared with this provider)."""
        if self._db is None:
            raise self.error("graph is not open")
        return self._db

    def _build_pool(self) -> aioredis.BlockingConnectionPool:
        s = self.settings
        common: dict[str, Any] = {
            "max_connections": s.max_connections,
            "socket_timeout": s.socket_timeout,
            "socket_connect_timeout": s.socket_connect_timeout,
            "decode_responses": True,
        }
        if s.username is not None:
            common["username"] = s.username
        if s.password is not None:
            common["password"] = s.password.get_secret_value()
        if s.url is None:
            return aioredis.BlockingConnectionPool(host=s.host, port=s.port, **common)
        scheme, _, rest = s.url.get_secret_value().partition("://")  # checked by the options
        url = f"{_SCHEMES.get(scheme, scheme)}://{rest}"
        pool = aioredis.BlockingConnectionPool.from_url(url, **common)
        assert isinstance(pool, aioredis.BlockingConnectionPool)
        return pool

    async def open(self) -> None:
        self._pool = self._build_pool()
        try:
            # Our pool's connections never retry, so a refused connection or bad password fails
            # at once here; then the client probes the server (cluster or not) with a blocking
            # call that would retry for seconds: off the loop, once the server has answered.
            await aioredis.Redis(connection_pool=self._pool).ping()
            db = await asyncio.to_thread(FalkorDB, connection_pool=self._pool)
        except _ERRORS as exc:
            await self.close()
            raise self._failure("cannot connect", exc) from exc
        except BaseException:
            await self.close()
            raise
        self._db, self._graph = db, db.select_graph(self.graph_name)

    async def close(self) -> None:
        pool, self._pool, self._db, self._graph = self._pool, None, None, None
        if pool is not None:
            await pool.aclose()

    async def ping(self) -> None:
        client = self.native.connection
        try:
            await client.ping()
        except _ERRORS as exc:
            raise self._failure("ping failed", exc) from exc

    async def query(self, cypher: str, params: Mapping[str, Any] | None = None) -> GraphResult:
        graph = self._graph
        if graph is None:
            raise self.error("graph is not open")
        bound = _params(params)
        try:
            try:
                result = await graph.query(cypher, bound, timeout=self._timeout_ms)
            except SchemaVersionMismatchException:  # the client refreshed its schema: once more
                result = await graph.query(cypher, bound, timeout=self._timeout_ms)
        except _ERRORS as exc:
            raise self._failure("query failed", exc) from exc
        columns = [str(column[1]) for column in result.header]
        records = [dict(zip(columns, map(_plain, row), strict=True)) for row in result.result_set]
        return GraphResult(records, columns)

    def _failure(self, message: str, exc: BaseException) -> ProviderError:
        """The :class:`ProviderError` (or subclass) a client exception becomes."""
        if isinstance(exc, redis_errors.AuthenticationError) or (
            isinstance(exc, redis_errors.ResponseError) and str(exc).startswith(_AUTH_REPLIES)
        ):
            return self.error(f"{message}: credentials refused", AuthenticationError)
        if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError | OSError):
            return self.error(f"{message}: {type(exc).__name__}: {exc}", ConnectionFailedError)
        if isinstance(exc, redis_errors.ResponseError):
            return self.error(f"{message}: {exc}")
        return self.error(f"{message}: {type(exc).__name__}: {exc}")
