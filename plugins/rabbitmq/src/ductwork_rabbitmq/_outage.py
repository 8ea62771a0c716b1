"""aio-pika's per-attempt reconnect lines, lowered to DEBUG: ductwork says an outage once.

While RabbitMQ is down, aio-pika and aiormq log a few lines for every reconnect attempt (one a
``reconnect_interval``). The broker logs one WARNING when the connection is lost and one INFO
when it is back; these lines stay available at DEBUG.
"""

from __future__ import annotations

import logging

__all__ = ["quiet_reconnect_lines"]

_PER_ATTEMPT = (
    "Connection attempt to",
    "Reconnecting after",
    "error when creating transport",
    "Cancelling cause reader exited",
    "RobustChannel._on_close",
)
_LOGGERS = ("aio_pika.robust_connection", "aiormq.connection", "aio_pika.tools")


class _PerAttempt(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG and any(s in record.getMessage() for s in _PER_ATTEMPT):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info = record.exc_text = None
        return True


_FILTER = _PerAttempt()


def quiet_reconnect_lines() -> None:
    """Install the filter on aio-pika's loggers (once; later calls do nothing)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
