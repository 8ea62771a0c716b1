"""Send an app action's request with httpx: auth, retries, timeouts, logging, result.

One :class:`AppClient` per (app, env) holds a pooled ``httpx.AsyncClient`` on the env's base
URL, the env's :class:`~ductwork.apps.auth.Credentials` and the compiled actions. Every attempt
is logged on ``ductwork.apps`` (app, action, env, status, latency, attempt), through the
redacting filter.

Errors: a status >= 400 after retries raises :class:`~ductwork.errors.HTTPStatusError` (status
and a redacted excerpt of the body); a refused, reset or timed-out connection raises
:class:`~ductwork.errors.ConnectionFailedError`; a 401 with an expiring token fetches a new
token and tries once more before that.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import importlib.util
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from ductwork._hints import did_you_mean
from ductwork._redact import get_logger, redact
from ductwork.apps.auth import Credentials
from ductwork.apps.body import Opened, read_body, read_excerpt
from ductwork.apps.inputs import CompiledAction, Prepared, compile_action, prepare
from ductwork.apps.models import PLACEHOLDER, ActionAuth, AppEnv, AppResource
from ductwork.apps.retry import backoff_delay, retry_delay
from ductwork.apps.schema import check
from ductwork.errors import (
    AuthenticationError,
    ConnectionFailedError,
    HTTPStatusError,
    MissingDependencyError,
    NotFoundError,
    ProviderError,
)

__all__ = ["ActionResult", "AppClient", "Saved"]

_log = get_logger("ductwork.apps")
_EXCERPT = 500


@dataclass(frozen=True)
class Saved:
    """Where a body saved with ``save_to`` went: storage tag, key, decoded bytes, etag."""

    storage: str
    key: str
    size: int
    content_type: str | None = None
    etag: str | None = None


@dataclass(frozen=True)
class ActionResult:
    """What an action call returned: status, headers, parsed body, timing.

    With ``save_to``, ``body`` is ``None`` and ``saved`` says where the body went.
    """

    status: int
    headers: dict[str, str]
    body: Any
    elapsed: float
    attempts: int = 1
    cached: bool = False
    saved: Saved | None = None

    @property
    def ok(self) -> bool:
        """Whether the status is below 400."""
        return self.status < 400

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe form (a bytes body is base64 under ``{"$bytes": …}``)."""
        body = self.body
        if isinstance(body, bytes):
            body = {"$bytes": base64.b64encode(body).decode()}
        found: dict[str, Any] = {
            "status": self.status,
            "headers": self.headers,
            "body": body,
            "elapsed": self.elapsed,
            "attempts": self.attempts,
        }
        if self.saved is not None:
            found["saved"] = dataclasses.asdict(self.saved)
        return found

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, cached: bool = False) -> ActionResult:
        """The inverse of :meth:`to_dict`."""
        body = data["body"]
        if isinstance(body, dict) and set(body) == {"$bytes"}:
            body = base64.b64decode(body["$bytes"])
        saved = data.get("saved")
        return cls(
            data["status"],
            dict(data["headers"]),
            body,
            data["elapsed"],
            data.get("attempts", 1),
            cached,
            None if saved is None else Saved(**saved),
        )


class AppClient:
    """An app in one env: pooled connections, credentials, compiled actions."""

    def __init__(self, tag: str, app: AppResource, env: str, settings: AppEnv) -> None:
        self.tag = tag
        self.app = app
        self.env = env
        self.settings = settings
        self.where: dict[str, Any] = {
            "resource": f"apps.{tag}",
            "env": env,
            "endpoint": settings.base_url,
        }
        if settings.http2 and importlib.util.find_spec("h2") is None:
            raise MissingDependencyError(
                f"app {tag!r} (env {env!r}) asks for http2, which needs the h2 package",
                install='pip install "httpx[http2]"',
            )
        connect = settings.connect_timeout if settings.connect_timeout is not None else None
        self.http = httpx.AsyncClient(
            base_url=settings.base_url,
            timeout=httpx.Timeout(settings.timeout, connect=connect or settings.timeout),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
            ),
            http2=settings.http2,
            verify=settings.verify,
            headers=settings.headers,
        )
        self.credentials = Credentials(
            settings, http=self.http, login=self._login, where=self.where
        )
        self._compiled: dict[str, CompiledAction] = {}

    def action(self, tag: str) -> CompiledAction:
        """The compiled action ``tag``; :class:`NotFoundError` names the known ones."""
        found = self._compiled.get(tag)
        if found is not None:
            return found
        spec = self.app.actions.get(tag)
        if spec is None:
            hint = did_you_mean(tag, self.app.actions)
            raise NotFoundError(
                f"app {self.tag!r} has no action {tag!r}{hint} "
                f"(actions: {', '.join(sorted(self.app.actions)) or 'none'})"
            )
        provided = self.credentials.provided if spec.auth else frozenset()
        found = self._compiled[tag] = compile_action(self.tag, tag, spec, provided)
        return found

    def limit(self, action: CompiledAction) -> int:
        """The largest body ``run`` reads whole for ``action``: its own limit, else the app's."""
        return int(action.spec.max_response_size or self.app.max_response_size)

    async def run(
        self,
        action: CompiledAction,
        prepared: Prepared,
        *,
        retries: int | None = None,
        use_auth: bool = True,
        max_size: int | None = None,
    ) -> ActionResult:
        """Send the request, retrying as the policy says; raise on a final status >= 400.

        The body is read whole only up to ``max_size`` (default :meth:`limit`) decoded bytes:
        a larger one raises :class:`ProviderError` (before reading, when it is announced).
        """
        start = time.perf_counter()
        limit = max_size or self.limit(action)
        response, attempt, content = await self._send(action, prepared, retries, use_auth, limit)
        elapsed = time.perf_counter() - start
        body = _parse(response, content)
        spec = action.spec
        if spec.check_response and spec.response is not None:
            problems: list[str] = []
            check(spec.response, body, "response", problems)
            if problems:
                raise ProviderError(
                    f"{action.describe()} answered a body that does not match its response "
                    f"schema: {'; '.join(problems)}",
                    **self.where,
                )
        return ActionResult(
            response.status_code, dict(response.headers.items()), body, elapsed, attempt
        )

    async def send(
        self, action: CompiledAction, prepared: Prepared, *, retries: int | None = None
    ) -> Opened:
        """A successful call's open response (body unread: close it), attempts, where."""
        response, attempt, _ = await self._send(action, prepared, retries, True, None)
        return response, attempt, self.where

    async def _send(
        self,
        action: CompiledAction,
        prepared: Prepared,
        retries: int | None,
        use_auth: bool,
        limit: int | None,
    ) -> tuple[httpx.Response, int, bytes | None]:
        """Attempts until a final answer; with ``limit``, its body read (or refused) too.

        A transport error while reading a body counts as a failed attempt; with ``limit``
        ``None`` the response is returned open, before any of its body was read.
        """
        spec = action.spec
        policy = self.app.retry.merged(spec.retry)
        if retries is not None:
            policy = policy.model_copy(update={"retries": max(0, retries)})
        use_auth = use_auth and spec.auth
        timeout: Any = httpx.USE_CLIENT_DEFAULT if spec.timeout is None else spec.timeout
        attempt = retried = 0
        refreshed = False
        while True:
            attempt += 1
            parts = Prepared(
                dict(prepared.params),
                dict(prepared.query),
                dict(prepared.headers),
                _copy(prepared.body),
            )
            token = await self.credentials.apply(parts) if use_auth else None
            request = self._request(action, parts, timeout)
            sent = time.perf_counter()
            response: httpx.Response | None = None
            try:
                response = await self.http.send(request, stream=True)
                status = response.status_code
                self._log(action, status, sent, attempt)
                if status == 401 and token is not None and not refreshed:
                    refreshed = True  # the token was refused: one more try with a new one
                    self.credentials.invalidate(token)
                    await response.aclose()
                    continue
                if status in policy.on_status and retried < policy.retries:
                    retried += 1
                    wait = retry_delay(policy, retried, response.headers.get("retry-after"))
                    await response.aclose()
                    await asyncio.sleep(wait)
                    continue
                if status >= 400:
                    excerpt = redact(await read_excerpt(response, _EXCERPT))
                    await response.aclose()
                    raise HTTPStatusError(
                        f"{action.describe()} {spec.method} {spec.path} answered {status} "
                        f"after {attempt} attempt(s): {excerpt}",
                        status=status,
                        body=excerpt,
                        attempts=attempt,
                        **self.where,
                    )
                if limit is None:
                    return response, attempt, None
                try:
                    content = await read_body(response, limit, action.describe(), self.where)
                finally:
                    await response.aclose()
                return response, attempt, content
            except httpx.TransportError as exc:
                if response is not None:
                    await response.aclose()
                timed_out = isinstance(exc, httpx.TimeoutException)
                self._log(action, f"error:{type(exc).__name__}", sent, attempt)
                allowed = policy.on_timeout if timed_out else policy.on_connection_error
                if allowed and retried < policy.retries:
                    retried += 1
                    await asyncio.sleep(backoff_delay(policy, retried))
                    continue
                what = "timed out" if timed_out else f"could not connect ({type(exc).__name__})"
                raise ConnectionFailedError(
                    f"{action.describe()} {spec.method} {spec.path} {what} "
                    f"after {attempt} attempt(s)",
                    **self.where,
                ) from exc

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self.http.aclose()

    # -- internals ------------------------------------------------------------------------

    def _log(self, action: CompiledAction, status: int | str, sent: float, attempt: int) -> None:
        if _log.isEnabledFor(20):
            _log.info(
                "app=%s action=%s env=%s status=%s latency_ms=%.1f attempt=%d",
                self.tag,
                action.tag,
                self.env,
                status,
                (time.perf_counter() - sent) * 1000,
                attempt,
            )

    async def _login(self, auth: ActionAuth) -> Any:
        action = self.action(auth.action)
        try:
            result = await self.run(action, prepare(action, auth.input, self.env), use_auth=False)
        except HTTPStatusError as exc:
            raise AuthenticationError(
                f"app {self.tag!r} login action {auth.action!r} answered {exc.status}",
                **self.where,
            ) from exc
        return result.body

    def _request(self, action: CompiledAction, parts: Prepared, timeout: Any) -> httpx.Request:
        spec = action.spec
        params = parts.params
        url = PLACEHOLDER.sub(lambda m: quote(_text(params.get(m[1], "")), safe=""), spec.path)
        kwargs: dict[str, Any] = {"timeout": timeout}
        if parts.query:
            kwargs["params"] = {k: v for k, v in parts.query.items() if v is not None}
        if parts.headers:
            kwargs["headers"] = {k: _text(v) for k, v in parts.headers.items()}
        body = parts.body
        if body is not None and (body != {} or spec.method not in ("GET", "HEAD", "DELETE")):
            if spec.request == "json":
                kwargs["json"] = body
            elif spec.request == "form":
                kwargs["data"] = {k: _text(v) for k, v in _items(body)}
            else:
                fields = action.fields["body"]
                files: list[tuple[str, Any]] = []
                data: dict[str, str] = {}
                for name, value in _items(body):
                    info = fields.get(name)
                    if (info is not None and info.binary) or isinstance(value, bytes):
                        files.append((name, _file(name, value)))
                    else:
                        data[name] = _text(value)
                kwargs["data"] = data
                if files:
                    kwargs["files"] = files
        return self.http.build_request(spec.method, url, **kwargs)


def _copy(body: Any) -> Any:
    return dict(body) if isinstance(body, dict) else body


def _items(body: Any) -> list[tuple[str, Any]]:
    return list(body.items()) if isinstance(body, Mapping) else []


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _file(name: str, value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return (name, bytes(value), "application/octet-stream")
    if isinstance(value, Mapping):
        return (
            value.get("filename", name),
            value["content"],
            value.get("content_type", "application/octet-stream"),
        )
    return value


def _parse(response: httpx.Response, content: bytes | None) -> Any:
    if not content:
        return None
    ctype = response.headers.get("content-type", "")
    if "json" in ctype:
        try:
            return json.loads(content)
        except ValueError:
            return _decode(response, content)
    if ctype.startswith("text/") or "xml" in ctype or "urlencoded" in ctype:
        return _decode(response, content)
    return content


def _decode(response: httpx.Response, content: bytes) -> str:
    return content.decode(response.charset_encoding or "utf-8", "replace")
