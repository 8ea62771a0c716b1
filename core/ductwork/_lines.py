"""Header-safe text: one line without control characters, so no header can be injected.

Used wherever a caller's string becomes a header (notification subjects, recipients and
headers; event headers): the email library, SMTP, NATS and HTTP all split headers on line
breaks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ductwork.errors import ValidationError

__all__ = ["check_headers", "check_line"]

# C0/C1 controls but tab, and everything str.splitlines() breaks on.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# Header field names (RFC 5322 ftext: printable ASCII without ':' or space).
_FIELD_NAME = re.compile(r"[!-9;-~]+")


def check_line(value: Any, what: str) -> str:
    """``value`` if it is a string of one line; else :class:`ValidationError` naming ``what``."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, not {type(value).__name__}")
    bad = _CONTROL.search(value)
    if bad is not None:
        raise ValidationError(
            f"{what} must be one line without control characters; it contains {bad[0]!r} at "
            f"position {bad.start()} (header injection is refused)"
        )
    return value


def check_headers(headers: Any, what: str) -> dict[str, str]:
    """``headers`` as a dict of field names to one-line values, or :class:`ValidationError`."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ValidationError(f"{what} must be a mapping of names to strings")
    for name, value in headers.items():
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise ValidationError(
                f"{what}[{name!r}]: a header name is printable ASCII without ':' or spaces"
            )
        check_line(value, f"{what}[{name!r}]")
    return dict(headers)
