"""What the contract servers of the push and email API plugins share.

There is no Expo, FCM or Postmark server to test against here, so each of those plugins tests
its request/response contract against a local server built from the vendor's published API
reference (Starlette under uvicorn, :func:`ductwork.testing.servers.asgi_server`). This module
holds the part every such server needs: a thread-safe record of the requests, a count of
requests in flight (to check bounded concurrency), and canned answers a test queues for the
next requests (a 429 with ``Retry-After``, a 503).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Canned", "ContractState", "Handler", "Request", "contract_app", "one_notifier"]


@dataclass(frozen=True)
class Request:
    """One request as the contract server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Canned:
    """An answer a test queued: ``status``, a JSON ``body`` and ``headers``."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class ContractState:
    """Requests received, requests in flight, and answers queued for the next requests."""

    def __init__(self) -> None:
        self.url = ""
        self._lock = threading.Condition()
        self._requests: list[Request] = []
        self._canned: deque[Canned] = deque()
        self.in_flight = 0
        self.max_in_flight = 0
        self.release: threading.Event | None = None  # when set by a test, requests wait for it

    def reset(self) -> None:
        """Forget everything (between tests; the server lives for the session)."""
        with self._lock:
            self._requests.clear()
            self._canned.clear()
            self.in_flight = self.max_in_flight = 0
            self.release = None

    def requests(self, path: str | None = None) -> list[Request]:
        """What arrived so far (on ``path`` only, when given)."""
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    def queue(self, *answers: Canned) -> None:
        """Answer the next requests with ``answers``, in order, instead of the contract."""
        with self._lock:
            self._canned.extend(answers)

    def enter(self, request: Request) -> Canned | None:
        """Record ``request`` as arrived and in flight; a queued answer to give, if any."""
        with self._lock:
            self._requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._lock.notify_all()
            return self._canned.popleft() if self._canned else None

    def wait_in_flight(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``count`` requests are in flight at once; ``False`` after ``timeout``."""
        with self._lock:
            return self._lock.wait_for(lambda: self.in_flight >= count, timeout)

    def leave(self) -> None:
        """The request is answered."""
        with self._lock:
            self.in_flight -= 1


#: A contract route: the recorded request -> what to answer.
Handler = Callable[[Request], Canned]


def contract_app(state: ContractState, routes: dict[str, Handler]) -> Any:
    """A Starlette app answering POSTs to each path in ``routes`` by its handler.

    Each request is recorded; a queued :class:`Canned` answer takes precedence; when the test
    set ``state.release``, the request waits (in a thread) until it is set, so the test can
    hold requests in flight.
    """
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import Request as HTTPRequest
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def serve(http: HTTPRequest) -> Response:
        raw = await http.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        request = Request(http.method, http.url.path, dict(http.headers), body)
        canned = state.enter(request)
        try:
            if state.release is not None:
                await anyio.to_thread.run_sync(state.release.wait, 10)
            answer = canned or routes[http.url.path](request)
        finally:
            state.leave()
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)

    return Starlette(routes=[Route(path, serve, methods=["POST"]) for path in routes])


def one_notifier(
    root: Any, tag: str, settings: dict[str, Any], *, messages: dict[str, Any] | None = None
) -> Any:
    """A product config with one notifier ``tag`` whose env ``prd`` has ``settings``.

    For a plugin's config tests (secrets hidden by ``config show``, messages sent through
    ``dw.notifications``): ``one_notifier(tmp_path, "push", {"provider": "expo", …})``.
    """
    from ductwork.config import Config

    resource: dict[str, Any] = {"prd": settings}
    if messages:
        resource["messages"] = messages
    data = {"product": "shop", "environments": ["prd"], "notifications": {tag: resource}}
    return Config.from_dict(data, root=root)
