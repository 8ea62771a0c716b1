"""librdkafka's log lines for the ``kafka`` broker, quiet during an outage."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from ductwork.providers.base import Provider

__all__ = ["ClientLog"]

log = logging.getLogger("ductwork.kafka")


class ClientLog:
    """librdkafka's log lines, with connection failures said once per outage.

    librdkafka logs a ``FAIL`` line for every connection attempt while a broker is down (hundreds
    a minute); the first is a WARNING naming the resource, the rest are DEBUG until
    ``QUIET_FOR`` seconds pass without one (the outage is over).
    """

    QUIET_FOR = 30.0

    def __init__(self, broker: Provider) -> None:
        self._broker = broker
        self._last_fail = -math.inf

    def log(self, level: int, fmt: str, *args: Any) -> None:
        """What librdkafka calls (``logging.Logger.log``'s signature)."""
        facility = args[0] if args else ""
        if facility == "FAIL":
            now = time.monotonic()
            quiet = now - self._last_fail > self.QUIET_FOR
            self._last_fail = now
            if quiet:
                ctx = self._broker.context
                log.warning(
                    "kafka: connection lost: resource=%s env=%s endpoint=%s: %s",
                    ctx.resource,
                    ctx.env,
                    self._broker.endpoint,
                    args[-1],
                )
            else:
                log.debug(fmt, *args)
            return
        log.log(level, fmt, *args)
