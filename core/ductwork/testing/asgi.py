"""An ASGI app served by uvicorn on a free loopback port, in a thread (tests, benchmarks).

::

    with asgi_server(app) as server:                      # http://127.0.0.1:<port>
        ...server.url...
    with asgi_server(app, ssl_certfile="server.pem") as server:   # https
        ...server.port...

Readiness is polled, never slept for; the server is stopped on exit. Needs ``uvicorn`` (a dev
dependency of the ductwork workspace), imported only when called.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ductwork.testing.servers import HOST, free_port

__all__ = ["AsgiServer", "asgi_server"]


@dataclass(frozen=True)
class AsgiServer:
    """Where the app answers."""

    url: str
    port: int


@contextlib.contextmanager
def asgi_server(app: Any, *, timeout: float = 15.0, **options: Any) -> Iterator[AsgiServer]:
    """Serve ``app`` with uvicorn until the block ends; ``options`` go to ``uvicorn.Config``."""
    import uvicorn

    port = free_port()
    settings: dict[str, Any] = {
        "log_level": "warning",
        "lifespan": "off",
        "timeout_graceful_shutdown": 1,
        **options,
    }
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, **settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not server.started:  # polling readiness of the server thread
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {HOST}:{port}")
            time.sleep(0.01)
        scheme = "https" if settings.get("ssl_certfile") else "http"
        yield AsgiServer(f"{scheme}://{HOST}:{port}", port)
    finally:
        server.should_exit = True
        thread.join(10)
