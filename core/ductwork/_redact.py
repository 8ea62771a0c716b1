"""Keep secret values out of every message, repr and log line.

Config loading registers each value that came from a ``${env:…}``, ``${file:…}`` or
``${secret:…}`` reference, and each value of a field typed as a secret; :func:`redact`
replaces any of them (and credentials embedded in URLs) with ``***``.
"""

from __future__ import annotations

import logging
import re
import threading

__all__ = ["MASK", "RedactingFilter", "get_logger", "redact", "register_secret"]

MASK = "***"
_MIN_LEN = 3  # shorter values would mask ordinary text; they are still hidden where typed Secret
_lock = threading.Lock()
_secrets: set[str] = set()
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@"
)


# A server's connection URL with no credentials, query or path beyond a database number or
# name is an address (what errors show as the endpoint), not a secret: ``redis://host:6379/0``.
_PLAIN_ADDRESS = re.compile(
    r"(?:redis|rediss|amqp|amqps|nats|tls|kafka|postgres|postgresql|mysql|mariadb)"
    r"(?:\+[a-z0-9]+)?://[A-Za-z0-9.\-\[\]:,]+(?:/[A-Za-z0-9_%\-]*)?"
)


def register_secret(value: str) -> None:
    """Remember ``value`` as secret so :func:`redact` hides it from now on.

    A credential-free server address (``redis://host:6379/0``) is not remembered: errors name
    it as the endpoint. A password in a URL is hidden by :func:`redact` wherever it appears.
    """
    if _PLAIN_ADDRESS.fullmatch(value):
        return
    credentials = _URL_CREDENTIALS.search(value)
    if credentials is not None and len(credentials["pw"]) >= _MIN_LEN:
        with _lock:  # the password alone, wherever else it turns up
            _secrets.add(credentials["pw"])
    if len(value) >= _MIN_LEN:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret and every URL password replaced by ``***``."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message through :func:`redact` (installed on ductwork's loggers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact, never drop."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_FILTER = RedactingFilter()


def get_logger(name: str) -> logging.Logger:
    """A ``ductwork.*`` logger whose records are redacted before any handler sees them."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
